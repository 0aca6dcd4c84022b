"""Model bundles that are safe to share: what the predictor needs from a results folder, packed with the sha256 of
every file (``au-transfer export-models``), and checked before use (``au-transfer predict --models BUNDLE``).

A bundle is a folder (or a ``.tar`` of it) laid out as a results folder (:class:`au_transfer.layout.Layout`): the
split's ``predictor.json``, the per-AU models (``models/{split}/{model}/AU{au}.npz``, arrays + JSON), ensembles'
JSON, fine-tuned networks (``finetune/{split}/.../AU{au}.pt``), mean images (``mean_image/{split}/...npy``), the
regressor ensembles' JSON, and ``bundle.json``: the format, the split, the default model and regressor (chosen on
validation frames at export: the bundle carries no predictions or labels) and every file's size and sha256.

Before a bundle is used, :func:`verify_bundle` checks every file against ``bundle.json`` (a missing, changed or
unlisted file, a link, a path outside the folder: refused) and refuses any file that only a pickle loader can read
(``.joblib``, ``.pkl``, a pickle under another name). The loaders themselves never unpickle either
(:mod:`au_transfer.persist`: ``allow_pickle=False``, ``torch.load(weights_only=True)``). The sha256s protect against
damage in transit, not against a sender who rewrites ``bundle.json``: safety comes from the formats.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..ensemble import ENSEMBLE_PREFIX
from ..io import atomic_path
from ..layout import FT_SUFFIX, LEGACY_MODEL_EXT, MODEL_EXT, Layout
from .manifest import MANIFEST, PredictError

log = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "au_transfer.bundle/1"
#: what a bundle may hold, by extension, and the first bytes each must start with (nothing a pickle loader reads)
SAFE_KINDS: dict[str, tuple[bytes, ...]] = {MODEL_EXT: (b"PK\x03\x04", b"PK\x05\x06"), ".pt": (b"PK\x03\x04",),
                                            ".npy": (b"\x93NUMPY",), ".json": ()}


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ export
def _model_files(layout: Layout, split: str, model: str, aus: Sequence[int], *, intensity: bool = False
                 ) -> tuple[list[Path], list[str]]:
    """The files of ``model`` and the model ids it reads (ensemble members)."""
    from ..config import parse_model_id
    from ..models import model_file

    path = model_file(layout, split, model, aus[0] if aus else 0, intensity=intensity)
    if model.startswith(ENSEMBLE_PREFIX):
        if not path.is_file():
            raise PredictError(f"export: ensemble {model} has no file {path}")
        return [path], [str(m) for m in json.loads(path.read_text()).get("members", [])]
    backbone, region, classifier = parse_model_id(model)
    files = [p for p in (model_file(layout, split, model, au) for au in aus) if p.is_file()]
    if any(p.suffix == LEGACY_MODEL_EXT for p in files):
        raise PredictError(f"export: model {model} is stored as pickles ({LEGACY_MODEL_EXT}), which a bundle never "
                           f"holds; convert your results first: au-transfer convert-models {layout.root} "
                           "--trust-legacy-pickles")
    if not files:
        raise PredictError(f"export: model {model} has no trained files in split {split} (e.g. {path})")
    if backbone.endswith(FT_SUFFIX) and classifier != "softmax":  # features of the split's fine-tuned networks
        files += [p for au in aus if (p := Path(layout.finetune_net(split, backbone.removesuffix(FT_SUFFIX), region,
                                                                    au))).is_file()]
    return files, []


def _mean_images(layout: Layout, split: str, manifest: dict[str, Any], models: Sequence[str]) -> list[Path]:
    from ..config import parse_model_id

    used = {parse_model_id(m)[0] for m in models if not m.startswith(ENSEMBLE_PREFIX)}
    out: list[Path] = []
    for backbone, opts in (manifest.get("backbones") or {}).items():
        if backbone in used and (opts or {}).get("mean_image"):
            folder = Path(layout.mean_image(split, backbone, "x")).parent
            out += sorted(folder.glob("*.npy"))
    return out


def export_models(results: str | os.PathLike[str], split: str, out: str | os.PathLike[str], *,
                  models: Sequence[str] | None = None, regressors: Sequence[str] | None = None) -> dict[str, Any]:
    """Pack what the predictor needs for ``models`` (default: every trained model of the split) and
    ``regressors`` (default: every regressor and regressor ensemble) into ``out``: a folder, or a ``.tar`` when
    ``out`` ends so. Returns the bundle's ``bundle.json``."""
    from .predictor import default_model, default_regressor, trained_models

    layout = Layout.of(results)
    manifest_path = Path(layout.manifest(split))
    if not manifest_path.is_file():
        raise PredictError(f"export: {manifest_path} does not exist; run the workflow for split {split} first")
    manifest = json.loads(manifest_path.read_text())
    aus = [int(a) for a in manifest.get("aus") or []]
    everything = trained_models(layout, split)
    reg_dir = Path(layout.intensity_ensemble_params(split, "x")).parent
    reg_ens = sorted(p.stem for p in reg_dir.glob(f"{ENSEMBLE_PREFIX}*.json")) if reg_dir.is_dir() else []
    chosen = list(models) if models else everything
    unknown = [m for m in chosen if m not in everything]
    if unknown:
        raise PredictError(f"export: no trained model {unknown} in split {split}; the split has {everything}")
    regs = list(regressors) if regressors is not None else [
        m for m in everything if _is_regressor(m)] + reg_ens
    files: set[Path] = {manifest_path}
    todo = [(m, False) for m in chosen] + [(r, True) for r in regs]
    seen: set[tuple[str, bool]] = set()
    while todo:
        m, intensity = todo.pop()
        if (m, intensity) in seen:
            continue
        seen.add((m, intensity))
        fs, members = _model_files(layout, split, m, aus, intensity=intensity and m.startswith(ENSEMBLE_PREFIX))
        files.update(fs)
        todo += [(x, False) for x in members]
    names = sorted({m for m, _ in seen})
    files.update(_mean_images(layout, split, manifest, names))
    try:
        default = models[0] if models else default_model(results, split)[0]
    except (PredictError, ValueError, OSError):
        default = None
    try:
        default_reg = default_regressor(results, split)
    except (ValueError, OSError):
        default_reg = None
    if default_reg is not None and default_reg not in regs:
        default_reg = regs[0] if regs else None
    root = Path(results)
    entries = []
    for f in sorted(files):
        rel = f.relative_to(root).as_posix()
        if f.suffix not in SAFE_KINDS:
            raise PredictError(f"export: {f} is not a file a bundle may hold ({sorted(SAFE_KINDS)})")
        entries.append({"path": rel, "size": f.stat().st_size, "sha256": file_sha256(f)})
    from .. import __version__

    meta = {"format": BUNDLE_FORMAT, "split": split, "models": names, "default_model": default,
            "default_regressor": default_reg, "regressors": regs, "aus": aus, "corpus": manifest.get("corpus", ""),
            "backbones": manifest.get("backbones", {}), "au_transfer": __version__, "files": entries}
    out = Path(out)
    if out.suffix == ".tar":
        _write_tar(root, entries, meta, out)
    else:
        if out.exists() and any(out.iterdir()):
            raise PredictError(f"export: {out} exists and is not empty; name a new folder (or a .tar)")
        for e in entries:
            dest = out / e["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest) as tmp:
                shutil.copyfile(root / e["path"], tmp)
        with atomic_path(out / BUNDLE_FILE) as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
    return meta


def _is_regressor(model: str) -> bool:
    from ..config import parse_model_id
    from ..intensity.linear import LSTM_REGRESSOR, REGRESSORS
    from ..models.base import split_median

    if model.startswith(ENSEMBLE_PREFIX):
        return False
    classifier = parse_model_id(model)[2]
    return classifier == LSTM_REGRESSOR or split_median(classifier)[0] in REGRESSORS


def _write_tar(root: Path, entries: list[dict[str, Any]], meta: dict[str, Any], out: Path) -> None:
    import io

    with atomic_path(out) as tmp, tarfile.open(tmp, "w") as tar:
        blob = json.dumps(meta, indent=1).encode()
        info = tarfile.TarInfo(BUNDLE_FILE)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
        for e in entries:
            tar.add(root / e["path"], arcname=e["path"], recursive=False)


# ------------------------------------------------------------------------------------------------ use
@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder (a results folder for :class:`~au_transfer.predict.Predictor`) and
    ``bundle.json``."""

    root: Path
    meta: dict[str, Any]

    @property
    def split(self) -> str:
        return str(self.meta["split"])


def is_bundle(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p / BUNDLE_FILE).is_file() or (p.is_file() and tarfile.is_tarfile(p))


_SAFE_PATH = re.compile(r"^[A-Za-z0-9_.+=-]+(/[A-Za-z0-9_.+=-]+)*$")


def verify_bundle(root: str | os.PathLike[str]) -> Bundle:
    """Check a bundle folder before anything in it is read (see the module docstring); raises
    :class:`~au_transfer.predict.PredictError` naming the first problem."""
    root = Path(root)
    meta_path = root / BUNDLE_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise PredictError(f"{meta_path}: cannot read the bundle's index ({exc}); export the models again") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT or not isinstance(meta.get("files"), list):
        raise PredictError(f"{meta_path}: not a model bundle ({BUNDLE_FORMAT})")
    listed: dict[str, dict[str, Any]] = {}
    for e in meta["files"]:
        rel = str(e.get("path", "")) if isinstance(e, dict) else ""
        if not _SAFE_PATH.match(rel) or ".." in rel.split("/"):
            raise PredictError(f"{meta_path}: lists a file outside the bundle or with an odd name: {rel!r}")
        listed[rel] = e
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            raise PredictError(f"{root}: {rel} is a link; a bundle holds plain files only")
        if p.is_file() and rel != BUNDLE_FILE and rel not in listed:
            raise PredictError(f"{root}: {rel} is not listed in {BUNDLE_FILE} (added after export?); refused")
    for rel, e in listed.items():
        p = root / rel
        kind = SAFE_KINDS.get(p.suffix)
        if kind is None:
            what = "a pickle, which would run code when loaded" if p.suffix in (LEGACY_MODEL_EXT, ".pkl", ".pickle") \
                else "not a file a bundle may hold"
            raise PredictError(f"{root}: {rel} is {what}; the bundle is refused")
        if not p.is_file():
            raise PredictError(f"{root}: {rel} is missing; export the models again")
        with open(p, "rb") as fh:
            head = fh.read(8)
        if kind and not head.startswith(kind):
            raise PredictError(f"{root}: {rel} is not a {p.suffix} file in a safe format (a pickle?); the bundle is "
                               "refused")
        if p.stat().st_size != e.get("size") or file_sha256(p) != e.get("sha256"):
            raise PredictError(f"{root}: {rel} does not match its sha256 in {BUNDLE_FILE} (damaged or changed); "
                               "export the models again")
    if Path(Layout.of(root).manifest(str(meta.get("split")))).relative_to(root).as_posix() not in listed:
        raise PredictError(f"{meta_path}: the bundle has no {MANIFEST} for split {meta.get('split')!r}")
    log.info("bundle %s: %d files verified (sha256), split %s", root, len(listed), meta.get("split"))
    return Bundle(root, meta)


@contextlib.contextmanager
def open_bundle(path: str | os.PathLike[str]) -> Iterator[Bundle]:
    """A verified bundle from a folder or a ``.tar`` (unpacked into a temporary folder, removed afterwards)."""
    p = Path(path)
    if p.is_dir():
        yield verify_bundle(p)
        return
    with tempfile.TemporaryDirectory(prefix="au-transfer-bundle-") as tmp:
        try:
            with tarfile.open(p) as tar:
                for m in tar.getmembers():
                    name = m.name.removeprefix("./").rstrip("/")
                    if not (m.isfile() or m.isdir()) or not _SAFE_PATH.match(name) or ".." in name.split("/"):
                        raise PredictError(f"{p}: holds {m.name!r}, which is not a plain file inside the bundle; "
                                           "refused")
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise PredictError(f"{p}: cannot unpack the bundle ({exc}); export it again") from None
        yield verify_bundle(tmp)


# ------------------------------------------------------------------------------------------------ the predictor's
@dataclass(frozen=True)
class Trained:
    """Where ``au-transfer predict`` takes its trained models from, and which model and regressor it runs."""

    results: Path
    split: str
    model: str
    regressor: str | None
    note: str


@contextlib.contextmanager
def trained_source(models: str | None, results: str | None, split: str | None, model: str | None,
                   regressor: str | None = "auto") -> Iterator[Trained]:
    """The trained models of ``predict``: a bundle (``--models BUNDLE``, verified first), a split's models folder
    (``--models results/models/<split>``) or a results folder and split; the model (default: the best on
    validation, recorded in a bundle) and the regressor (``auto``: the best on validation; ``none``: none)."""
    from .predictor import default_model, default_split, resolve_models_dir

    regressor = None if regressor == "none" else regressor
    if models is not None and is_bundle(models):
        from ..persist import trust_legacy_pickles

        if trust_legacy_pickles():
            log.warning("--trust-legacy-pickles does not apply to a bundle: a bundle never holds pickles")
            trust_legacy_pickles(False)
        with open_bundle(models) as bundle:
            if split is not None and split != bundle.split:
                raise PredictError(f"--split {split}: the bundle {models} holds split {bundle.split} only")
            name, note = model, f"model {model} (bundle {models}, split {bundle.split})"
            if name is None:
                name = bundle.meta.get("default_model")
                if not name:
                    raise PredictError(f"bundle {models} records no default model; choose one with --model (it has "
                                       f"{bundle.meta.get('models')})")
                note = (f"model {name} (bundle {models}, split {bundle.split}): the bundle's default, chosen on "
                        "out-of-sample validation frames; choose another with --model")
            if regressor == "auto":
                regressor = bundle.meta.get("default_regressor")
            yield Trained(bundle.root, bundle.split, str(name), regressor, note)
        return
    if models is not None:
        _models, root, split = resolve_models_dir(None, split, models)
    else:
        root = Path(results or "results")
        split = split or default_split(root)
    if model is None:
        model, f1 = default_model(root, split)
        note = (f"model {model} (split {split}): the best mean F1 on validation frames ({100 * f1:.1f} %) among the "
                "models whose validation predictions are out of sample (not ranked: ensembles that fit calibration, "
                "weights or stacking on those frames, models refitted on them); choose another with --model")
    else:
        note = f"model {model} (split {split})"
    yield Trained(Path(root), split, model, regressor, note)
