"""Many inputs in one run: ``au-transfer predict INPUT... -o OUTDIR/``.

* :func:`expand_inputs`: the inputs of the command line (video and image files, folders, quoted globs). A folder's
  images are one input (a sequence of frames, as a single folder input always was); each video in a folder is an
  input of its own; other files are named as skipped.
* :func:`output_names`: one CSV per input in the output folder, named after it (``clip.mp4`` -> ``clip.csv``);
  names that would collide get the input's extension, then its parent folders, then a number.
* :func:`predict_many`: one :class:`~au_transfer.predict.Predictor` (networks loaded once) for every input, the
  face front end of ``predictor.workers`` inputs running side by side in their processes while the networks take
  their chunks in turn; one progress bar over all frames and one line per input. An input that fails is one line
  naming it, and the others go on; the result lists the failures.
* Resume: beside each CSV (written atomically), ``NAME.csv.json`` records the input (path, size and modification
  time of the file or of every file of a folder), the model (its id, regressor, split and the size and time of
  every trained file the predictor read) and the options that change the rows. An input whose CSV and record
  match is skipped on a rerun; a changed input, model or option is redone; ``overwrite`` redoes everything.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..faces.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from ..io import atomic_path
from .manifest import PredictError

log = logging.getLogger(__name__)

#: the record of a finished CSV: ``{csv}`` + this suffix
RECORD_SUFFIX = ".json"
RECORD_FORMAT = "au-transfer-predict-record/1"


# ---------------------------------------------------------------------------------------------- inputs
def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _folder_inputs(folder: Path) -> tuple[list[Path], list[Path]]:
    """A folder's inputs (itself when it holds images, then each of its videos) and the files it skips."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    videos = [p for p in files if _is_video(p)]
    skipped = [p for p in files if p not in images and p not in videos]
    return ([folder] if images else []) + videos, skipped


def expand_inputs(items: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """The inputs named by ``items`` (in order, each once) and a note per thing skipped or not found.

    A file is an input (a video, or an image); a folder gives itself when it holds images (one input: its images
    are the frames) and each video it holds; a pattern with ``*?[`` that names no existing path is expanded (for
    globs the shell did not expand, e.g. quoted). Nothing found at all is an error."""
    out: list[Path] = []
    notes: list[str] = []
    for item in items:
        text = str(item)
        paths = [Path(text)]
        if not Path(text).exists() and any(c in text for c in "*?["):
            paths = [Path(p) for p in sorted(glob.glob(text))]
            if not paths:
                notes.append(f"{text}: no file matches")
        for p in paths:
            if p.is_dir():
                found, skipped = _folder_inputs(p)
                if not found:
                    notes.append(f"{p}: no video or image files in the folder")
                if skipped:
                    notes.append(f"{p}: skipped {len(skipped)} file(s) that are neither videos nor images: "
                                 + ", ".join(s.name for s in skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
                out.extend(found)
            elif p.is_file():
                out.append(p)
            elif p == Path(text):
                notes.append(f"{p}: does not exist")
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, notes


def output_names(inputs: Sequence[Path], outdir: str | os.PathLike[str]) -> tuple[dict[Path, Path], list[str]]:
    """One CSV path in ``outdir`` per input, named after it, and a line per input whose name was disambiguated.

    ``clip.mp4`` -> ``clip.csv``; when two inputs would share a name, each of them gets its extension
    (``clip_mp4.csv``), then as many parent folders as tell them apart (``day1_clip_mp4.csv``), then a number."""
    outdir = Path(outdir)

    def name(p: Path, level: int) -> str:
        if level == 0:
            return p.stem if p.is_file() else p.name
        base = f"{p.stem}_{p.suffix.lstrip('.')}" if p.is_file() and p.suffix else p.name
        parents = [q.name for q in p.resolve().parents][: level - 1][::-1]
        return "_".join([*[q for q in parents if q], base])

    level = dict.fromkeys(inputs, 0)
    depth = max((len(p.resolve().parents) for p in inputs), default=0) + 1
    for _ in range(depth + 1):
        groups: dict[str, list[Path]] = {}
        for p in inputs:
            groups.setdefault(name(p, level[p]).lower(), []).append(p)
        clashes = [g for g in groups.values() if len(g) > 1]
        if not clashes:
            break
        for g in clashes:
            for p in g:
                level[p] += 1
    names: dict[Path, str] = {}
    used: set[str] = set()
    for p in inputs:
        n, k = name(p, level[p]), 2
        while n.lower() in used:  # the same name at every level (e.g. a path given twice by different links)
            n, k = f"{name(p, level[p])}-{k}", k + 1
        used.add(n.lower())
        names[p] = n
    mapping = {p: outdir / f"{names[p]}.csv" for p in inputs}
    renamed = [f"{p} -> {mapping[p]}" for p in inputs if level[p] > 0 or names[p] != name(p, level[p])]
    return mapping, renamed


# ---------------------------------------------------------------------------------------------- resume
def _stat(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _digest(paths: Iterable[Path], root: Path | None = None) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = _stat(p)
        h.update(f"{p.relative_to(root) if root else p}\t{st['size']}\t{st['mtime_ns']}\n".encode())
    return h.hexdigest()


def input_record(src: Path) -> dict[str, Any]:
    """What identifies an input's content: a file's size and modification time; a folder's, a digest of the size
    and time of each of its files."""
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.is_file())
        return {"path": str(src.resolve()), "files": len(files), "digest": _digest(files, src)}
    return {"path": str(src.resolve()), **_stat(src)}


def model_record(predictor: Any) -> dict[str, Any]:
    """What identifies the predictor's models: ids, split and a digest of the size and time of its files."""
    files = predictor.files()
    return {"model": predictor.model, "regressor": predictor.regressor if predictor.reg_aus else None,
            "split": predictor.split, "aus": list(predictor.aus), "landmarks": str(predictor.face.landmarks),
            "files": len(files), "digest": _digest(files)}


def record_path(csv: str | os.PathLike[str]) -> Path:
    return Path(f"{csv}{RECORD_SUFFIX}")


def is_complete(csv: Path, record: Mapping[str, Any]) -> bool:
    """Whether ``csv`` exists with a record of the same input, model and options."""
    rec = record_path(csv)
    if not csv.is_file() or not rec.is_file():
        return False
    try:
        old = json.loads(rec.read_text())
    except (OSError, ValueError):
        return False
    return all(old.get(k) == record.get(k) for k in ("format", "input", "model", "options"))


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class BatchResult:
    """What :func:`predict_many` did: per input its CSV and counts, the inputs skipped as complete, the failed
    ones with their error."""

    done: dict[Path, dict[str, Any]] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)


@dataclass
class _Active:
    src: Path
    out: Path
    stack: ExitStack
    parts: Any
    fh: Any
    started: float
    stats: dict[str, int] = field(default_factory=lambda: {"frames": 0, "rows": 0, "faces": 0})
    faces: dict = field(default_factory=dict)


def _expected_frames(src: Path, every: int, fps: float | None) -> int:
    from ..faces.video import video_info

    if not src.is_file() or src.suffix.lower() in IMAGE_EXTENSIONS:
        return 1 if src.is_file() else sum(1 for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    try:
        info = video_info(src)
    except Exception:  # noqa: BLE001  (the run says why it cannot be read)
        return 0
    step = max(1.0, info.fps / fps) if fps and info.fps > 0 else every
    return int(-(-info.n_frames // step))


def predict_many(predictor: Any, jobs: Mapping[Path, Path], *, options: Mapping[str, Any] | None = None,
                 chunk_size: int = 128, overwrite: bool = False, resume: bool = True, plot: bool = False,
                 overlay: bool = False, progress: bool = True,
                 echo: Callable[[str], Any] | None = None) -> BatchResult:
    """Predict every input of ``jobs`` (input -> CSV) with one loaded ``predictor``.

    ``options``: :func:`~au_transfer.predict.run.iter_predictions`'s (``largest_only``, ``detect_every``,
    ``every``, ``fps``), recorded for resume. ``resume``: skip an input whose CSV is complete (module docstring;
    ``overwrite`` redoes it) and write its record; False (``-o FILE.csv``): write the CSV only. ``plot`` /
    ``overlay``: also write ``NAME.png`` / ``NAME.overlay.mp4`` beside the CSV (:mod:`~.pictures`). ``echo``
    prints a line (default: above the progress bar)."""
    from tqdm.auto import tqdm

    from .run import iter_predictions

    opts = dict(options or {})
    result = BatchResult()
    models = model_record(predictor) if resume else {}
    records: dict[Path, dict[str, Any]] = {}
    todo: list[Path] = []
    for src, out in jobs.items():
        if resume:
            try:
                records[src] = {"format": RECORD_FORMAT, "input": input_record(src), "model": models,
                                "options": opts}
            except OSError as exc:
                records[src] = {}
                log.debug("%s: %s", src, exc)
            if not overwrite and records[src] and is_complete(out, records[src]):
                result.skipped.append(src)
                continue
        todo.append(src)
    total = sum(_expected_frames(s, int(opts.get("every", 1)), opts.get("fps")) for s in todo)
    bar = tqdm(total=total or None, desc=f"predict {len(todo)} input(s)", unit="frame", disable=not progress,
               mininterval=1.0)
    say = echo or (lambda line: tqdm.write(line) if progress else print(line, flush=True))
    for src in result.skipped:
        say(f"{src}: skipped, {jobs[src]} is complete (same input, model and options; --overwrite redoes it)")
    n = len(jobs)
    order = {src: i for i, src in enumerate(jobs, start=1)}
    pending = list(todo)
    active: dict[int, _Active] = {}
    predictor.start_workers(min(len(todo), predictor.workers))

    def start(slot: int, src: Path) -> None:
        out = jobs[src]
        stack = ExitStack()
        try:
            if resume:
                record_path(out).unlink(missing_ok=True)  # a CSV without its record is never trusted
            tmp = stack.enter_context(atomic_path(out))
            fh = stack.enter_context(open(tmp, "w", newline=""))
            state = _Active(src, out, stack, None, fh, time.perf_counter())
            on_faces = ((lambda fr, s=state: s.faces.__setitem__(fr.no, [(i, f.points) for i, f in fr.faces]))
                        if overlay else None)
            state.parts = iter_predictions(src, predictor, chunk_size=chunk_size, progress=False, slot=slot,
                                           on_frame=lambda: bar.update(1), on_faces=on_faces, **opts)
            active[slot] = state
        except Exception as exc:  # noqa: BLE001  (one input's failure is reported, the others go on)
            stack.__exit__(type(exc), exc, exc.__traceback__)
            fail(src, exc)

    def fail(src: Path, exc: BaseException) -> None:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result.failed[src] = msg
        say(f"[{order[src]}/{n}] {src}: FAILED: {msg}")

    def finish(slot: int) -> None:
        state = active.pop(slot)
        try:
            state.stack.close()  # the CSV takes its name
            secs = time.perf_counter() - state.started
            stats = dict(state.stats, seconds=round(secs, 3))
            if resume:
                with atomic_path(record_path(state.out)) as tmp:
                    Path(tmp).write_text(json.dumps({**records[state.src], "stats": stats}, indent=1) + "\n")
            extra = _pictures(state, predictor, plot, overlay, opts)
        except Exception as exc:  # noqa: BLE001
            fail(state.src, exc)
            return
        result.done[state.src] = {"csv": state.out, **stats, **extra}
        s = state.stats
        say(f"[{order[state.src]}/{n}] {state.src} -> {state.out}: {s['frames']} frames, {s['rows']} rows, "
            f"{s['faces']} with a face ({secs:.1f} s)" + "".join(f", {v}" for v in extra.values()))

    try:
        while pending or active:
            for slot in range(predictor.workers):
                if slot not in active and pending:
                    start(slot, pending.pop(0))
            for slot in list(active):
                state = active[slot]
                try:
                    part = next(state.parts)
                except StopIteration:
                    finish(slot)
                    continue
                except Exception as exc:  # noqa: BLE001  (a broken input never stops the others)
                    del active[slot]
                    state.parts.close()
                    state.stack.__exit__(type(exc), exc, exc.__traceback__)  # no CSV under the final name
                    fail(state.src, exc)
                    continue
                part.to_csv(state.fh, header=state.stats["rows"] == 0, index=False, float_format="%.6g")
                state.stats["frames"] += int(part["frame"].nunique())
                state.stats["rows"] += len(part)
                state.stats["faces"] += int(part["success"].sum())
    finally:
        for state in active.values():  # interrupted: no half-written CSV takes its name
            state.parts.close()
            state.stack.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)
        bar.close()
    return result


def _pictures(state: _Active, predictor: Any, plot: bool, overlay: bool, opts: Mapping[str, Any]) -> dict[str, str]:
    """The PNG and the annotated video of a finished input (beside its CSV)."""
    out: dict[str, str] = {}
    if not (plot or overlay):
        return out
    import pandas as pd

    from .pictures import overlay_path, plot_path, plot_predictions, write_overlay

    table = pd.read_csv(state.out, low_memory=False)
    if plot:
        out["plot"] = str(plot_predictions(table, plot_path(state.out), title=f"{state.src.name} ({predictor.model})"))
    if overlay:
        out["overlay"] = str(write_overlay(state.src, table, state.faces, overlay_path(state.out),
                                           every=int(opts.get("every", 1)), fps=opts.get("fps")))
    return out


def default_workers(n_inputs: int) -> int:
    """Front ends side by side: one per input, at most the cores left beside the networks' process (one core for
    it), at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n_inputs, cores - 1))


def check_outdir(path: str | os.PathLike[str]) -> Path:
    """The output folder of many inputs (created when missing; refused when it is a file or cannot be written)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise PredictError(f"output {out} is a file; with several inputs name a folder (e.g. {out.parent}/out/)")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise PredictError(f"output folder {out} cannot be written (permission denied)")
    return out


def input_names(items: Iterable[str | os.PathLike[str]]) -> dict[str, Path]:
    """The workflow target's inputs: output name (the CSV's stem, as :func:`output_names` names it) -> input."""
    inputs, notes = expand_inputs(items)
    for note in notes:
        log.warning("predict: %s", note)
    mapping, _ = output_names(inputs, ".")
    return {mapping[p].stem: p for p in inputs}


def predict_inputs(jobs: Mapping[Path, Path], *, results: str | os.PathLike[str], split: str,
                   model: str | None = None, regressor: str = "auto", device: str = "auto", batch_size: int = 32,
                   options: Mapping[str, Any] | None = None, plot: bool = False, overlay: bool = False) -> BatchResult:
    """The workflow's ``predict_video`` job: ``jobs`` (input -> CSV) predicted with a run's trained models (``model``
    None: the best on validation, :func:`~au_transfer.predict.predictor.default_model`); an input that fails is
    an error naming it (after the others)."""
    from .predictor import Predictor, default_model

    if model is None:
        model, f1 = default_model(results, split)
        log.info("model %s (split %s): the best mean F1 on validation frames (%.1f %%)", model, split, 100 * f1)
    with Predictor(model, results=results, split=split, device=device, batch_size=batch_size,
                   regressor=None if regressor == "none" else regressor,
                   workers=default_workers(len(jobs))) as predictor:
        result = predict_many(predictor, jobs, options=options, resume=False, plot=plot, overlay=overlay,
                              progress=False, echo=log.info)
    if result.failed:
        raise PredictError("; ".join(f"{src}: {msg}" for src, msg in result.failed.items()))
    return result
