"""Small synthetic corpora in the BP4D, DISFA+ and generic layouts, made from rendered demo subjects.

A demo subject in the DISFA layout (:func:`.layout.generate_subject`: a video and 12 AU intensity files) is cut into
two sequences (the first and second half of its video) and written in another corpus's layout, so that the readers
and the workflow run on every layout without the real databases. Everything is deterministic (the demo is seeded,
JPEG/PNG encoding is deterministic). :func:`make_corpus` renders the demo subjects and converts them in one call.

What each layout exercises (see the functions): BP4D (:func:`write_bp4d`): tasks T1/T2, zero-padded image names for
one subject and unpadded for the other, T2's image numbers starting at 101 (not at 1), a coded range that starts at
the 4th image and ends before the last, a few 9s (unknown), ``1``-style and ``AU1``-style headers, the intensity
files of AU6, 12 and 17 (the BP4D intensity AUs that the demo renders). The demo renders DISFA's AUs, so BP4D's AUs
7, 10, 14, 23 and 24 are coded 0 in every frame (and have no intensity files): a workflow on this corpus has no
positives for them. Occurrence is ``demo intensity >= threshold`` (default 2, as the DISFA protocol's threshold).
DISFA+ (:func:`write_disfa_plus`): trials as 0-based 3-digit images, label files with header lines for the first
subject, comma-separated lines for the second. Generic (:func:`write_generic`): one subject with its video (no
sequence name), one with two image folders, a few empty (unknown) cells.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ... import DISFA_AUS
from .. import disfa
from ..bp4d import BP4D_AUS, BP4D_INTENSITY_AUS

#: demo subject -> BP4D id; the second is written with unpadded image names.
BP4D_SUBJECTS: dict[str, str] = {"SN001": "F001", "SN002": "M001"}
DISFA_PLUS_TRIALS: tuple[str, str] = ("A1_AU1_TrailNo_1", "P1_AU6-12_TrailNo_1")
#: what make_corpus renders: small and fast
DEMO_DEFAULTS: dict[str, Any] = dict(n_frames=40, width=160, height=120, fps=20.0, seed=0)


def _frames(demo_root: Path, subject: str) -> list[np.ndarray]:
    """The decoded BGR frames of a demo subject's (left camera) video."""
    import cv2

    cap = cv2.VideoCapture(str(disfa.video_path(demo_root, subject, "left")))
    out = []
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            out.append(img)
    finally:
        cap.release()
    return out


def _halves(n: int) -> list[range]:
    """0-based frame ranges of the two sequences cut from an ``n``-frame video."""
    return [range(0, n // 2), range(n // 2, n)]


def _write_images(folder: Path, frames: Sequence[np.ndarray], names: Sequence[str]) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for img, name in zip(frames, names, strict=True):
        if not cv2.imwrite(str(folder / name), img):
            raise RuntimeError(f"{folder / name}: OpenCV cannot write the image")


def _demo(demo_root: Path, subject: str) -> tuple[list[np.ndarray], pd.DataFrame]:
    frames = _frames(demo_root, subject)
    labels = disfa.read_labels(demo_root, subject)
    n = min(len(frames), len(labels))
    return frames[:n], labels.iloc[:n].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------- BP4D
def write_bp4d(demo_root: str | Path, out_root: str | Path, subjects: Mapping[str, str] = BP4D_SUBJECTS, *,
               threshold: int = 2, old_release: bool = False) -> dict[str, Any]:
    """Write ``subjects`` (demo id -> BP4D id) in the BP4D layout under ``out_root`` (module docstring).

    ``old_release``: images in ``Sequences(2D+3D)``, occurrence in ``AUCoding/F001_T1.csv`` and intensity in
    ``AU_INT/AU06/`` (else ``BP4D-training``, ``AUCoding/AU_OCC/`` and ``AUCoding/AU_INT/``). Returns what the
    tests need: root, options, subjects, recordings, aus, and per recording the coded image numbers and 9 cells."""
    demo_root, out = Path(demo_root), Path(out_root)
    images_dir = "Sequences(2D+3D)" if old_release else "BP4D-training"
    occ_dir = out / "AUCoding" if old_release else out / "AUCoding" / "AU_OCC"
    int_dir = out / "AU_INT" if old_release else out / "AUCoding" / "AU_INT"
    rendered = [a for a in BP4D_INTENSITY_AUS if a in DISFA_AUS]
    info: dict[str, Any] = {"root": out, "options": {"images_dir": images_dir}, "subjects": [],
                            "recordings": [], "aus": list(BP4D_AUS), "intensity_aus": rendered, "coded": {},
                            "unknown": {}}
    for k, (demo_id, bp4d_id) in enumerate(subjects.items()):
        frames, labels = _demo(demo_root, demo_id)
        if len(frames) < 10:
            raise ValueError(f"demo subject {demo_id}: {len(frames)} frames; the BP4D layout needs at least 10 "
                             "(two tasks with 3 uncoded frames before and 1 after the coded range)")
        padded = k % 2 == 0
        info["subjects"].append(bp4d_id)
        for t, cut in enumerate(_halves(len(frames))):
            task = f"T{t + 1}"
            first = 1 if t == 0 else 101
            numbers = [first + i for i in range(len(cut))]
            names = [f"{n:04d}.jpg" if padded else f"{n}.jpg" for n in numbers]
            _write_images(out / images_dir / bp4d_id / task, [frames[i] for i in cut], names)
            coded = list(range(3, len(cut) - 1))  # positions (0-based) of the coded frames
            rows = labels.iloc[[cut[i] for i in coded]]
            occ = {a: (rows[f"AU{a}"].to_numpy() >= threshold).astype(int) if a in DISFA_AUS
                   else np.zeros(len(rows), dtype=int) for a in BP4D_AUS}
            last = len(rows) - 1
            unknown = sorted({(1, 0), (1, min(1, last))}) if t == 0 else [(4, last)]  # (AU, row) coded 9
            for a, r in unknown:
                occ[a][r] = 9
            header = (["frame", *map(str, BP4D_AUS)] if padded else ["", *(f"AU{a}" for a in BP4D_AUS)])
            lines = [",".join(header)]
            lines += [",".join([str(numbers[p]), *(str(occ[a][r]) for a in BP4D_AUS)])
                      for r, p in enumerate(coded)]
            occ_dir.mkdir(parents=True, exist_ok=True)
            (occ_dir / f"{bp4d_id}_{task}.csv").write_text("\n".join(lines) + "\n")
            for a in rendered:
                values = rows[f"AU{a}"].to_numpy().astype(int)
                if a == 12:
                    values[0] = 9
                folder = int_dir / f"AU{a:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{bp4d_id}_{task}_AU{a:02d}.csv").write_text(
                    "".join(f"{numbers[p]},{v}\n" for p, v in zip(coded, values, strict=True)))
            rid = f"{bp4d_id}.{task}"
            info["recordings"].append(rid)
            info["coded"][rid] = [numbers[p] for p in coded]
            info["unknown"][rid] = [(a, numbers[coded[r]]) for a, r in unknown]
    return info


# ------------------------------------------------------------------------------------------------------ DISFA+
def write_disfa_plus(demo_root: str | Path, out_root: str | Path, subjects: Sequence[str] = ("SN001", "SN002"),
                     trials: Sequence[str] = DISFA_PLUS_TRIALS) -> dict[str, Any]:
    """Write ``subjects`` in the DISFA+ layout under ``out_root``: each half of a demo video is one trial."""
    demo_root, out = Path(demo_root), Path(out_root)
    info: dict[str, Any] = {"root": out, "options": {}, "subjects": list(subjects), "recordings": [],
                            "aus": list(DISFA_AUS)}
    for k, subject in enumerate(subjects):
        frames, labels = _demo(demo_root, subject)
        for trial, cut in zip(trials, _halves(len(frames)), strict=True):
            names = [f"{i:03d}.jpg" for i in range(len(cut))]
            _write_images(out / "Images" / subject / trial, [frames[i] for i in cut], names)
            folder = out / "Labels" / subject / trial
            folder.mkdir(parents=True, exist_ok=True)
            for a in DISFA_AUS:
                values = labels[f"AU{a}"].to_numpy()[list(cut)]
                head = f"AU{a} intensity\nframes: {len(cut)}\n" if k == 0 else ""
                sep = "    " if k == 0 else ","
                (folder / f"AU{a}.txt").write_text(
                    head + "".join(f"{n}{sep}{v}\n" for n, v in zip(names, values, strict=True)))
            info["recordings"].append(f"{subject}.{trial}")
    return info


# ----------------------------------------------------------------------------------------------------- generic
def write_generic(demo_root: str | Path, out_root: str | Path, video_subject: tuple[str, str] = ("SN001", "P01"),
                  image_subject: tuple[str, str] = ("SN002", "P02"), *, kind: str = "occurrence",
                  threshold: int = 2) -> dict[str, Any]:
    """Write a generic corpus under ``out_root``: the first demo subject's video as ``P01`` (no sequence name), the
    second's two halves as image folders ``P02.a`` / ``P02.b`` (``frame_0001.png``...; the label ``frame`` is the
    image number). Labels are ``kind`` (occurrence: ``intensity >= threshold``); two cells of each file are empty."""
    demo_root, out = Path(demo_root), Path(out_root)
    (out / "labels").mkdir(parents=True, exist_ok=True)

    def label_csv(path: Path, numbers: Sequence[int], rows: pd.DataFrame) -> None:
        cols = [f"AU{a}" for a in DISFA_AUS]
        v = rows[cols].to_numpy().astype(int)
        if kind == "occurrence":
            v = (v >= threshold).astype(int)
        cells = v.astype(str)
        cells[1, 0] = cells[2, 3] = ""  # unknown
        path.write_text("frame," + ",".join(cols) + "\n"
                        + "".join(f"{n}," + ",".join(c) + "\n" for n, c in zip(numbers, cells, strict=True)))

    demo_id, pid = video_subject
    video = disfa.video_path(demo_root, demo_id, "left")
    (out / "videos").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(video, out / "videos" / f"{pid}.avi")
    _, labels = _demo(demo_root, demo_id)
    label_csv(out / "labels" / f"{pid}.csv", labels["frame"].tolist(), labels)
    index = ["subject,sequence,source,labels", f"{pid},,videos/{pid}.avi,labels/{pid}.csv"]
    demo_id, pid = image_subject
    frames, labels = _demo(demo_root, demo_id)
    recordings = [pid]
    for seq, cut in zip("ab", _halves(len(frames)), strict=True):
        numbers = [i + 1 for i in range(len(cut))]
        _write_images(out / "frames" / f"{pid}_{seq}", [frames[i] for i in cut],
                      [f"frame_{n:04d}.png" for n in numbers])
        label_csv(out / "labels" / f"{pid}_{seq}.csv", numbers, labels.iloc[list(cut)])
        index.append(f"{pid},{seq},frames/{pid}_{seq},labels/{pid}_{seq}.csv")
        recordings.append(f"{pid}.{seq}")
    (out / "recordings.csv").write_text("\n".join(index) + "\n")
    return {"root": out, "options": {"labels": kind}, "subjects": [video_subject[1], pid],
            "recordings": [video_subject[1], *recordings[1:]], "aus": list(DISFA_AUS)}


# --------------------------------------------------------------------------------------------------------- all
def make_corpus(layout: str, out_root: str | Path, *, demo_root: str | Path | None = None,
                write: dict[str, Any] | None = None, **demo: Any) -> dict[str, Any]:
    """Render the two demo subjects SN001, SN002 (:data:`DEMO_DEFAULTS`, overridable; into ``demo_root``, default
    a temporary folder that is removed) and write them in ``layout`` (``bp4d``, ``bp4d_old``, ``disfa_plus`` or
    ``generic``) under ``out_root`` (``write``: the writer's keyword arguments, e.g. ``{"kind": "intensity"}`` for
    ``generic``); returns the writer's info."""
    from .layout import generate_corpus

    writers = {"bp4d": write_bp4d, "bp4d_old": lambda d, o, **kw: write_bp4d(d, o, old_release=True, **kw),
               "disfa_plus": write_disfa_plus, "generic": write_generic}
    if layout not in writers:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(writers)}")
    kw = {**DEMO_DEFAULTS, **demo}
    tmp = None if demo_root is not None else tempfile.mkdtemp(prefix="demo_render_")
    root = Path(demo_root if demo_root is not None else tmp)  # type: ignore[arg-type]
    try:
        if not all(disfa.label_dir(root, s).is_dir() for s in ("SN001", "SN002")):
            generate_corpus(root, ("SN001", "SN002"), **kw)
        return writers[layout](root, out_root, **(write or {}))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
