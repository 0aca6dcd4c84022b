"""Fitted models stored as arrays + JSON, never as pickles: loading a file someone else wrote runs no code.

A model file (``results/models/{split}/{model}/AU{au}.npz``, :data:`MODEL_EXT`) is a NumPy ``.npz`` archive: its
entry ``__header__`` is the UTF-8 JSON of the bundle's tree (dicts, lists, numbers, strings), in which every array
is a reference ``{"__array__": "a3"}`` to another entry of the archive, and every fitted estimator is
``{"__object__": "StandardScaler", "state": {...}}``: a class of the allow-list :data:`CLASSES` and the instance's
attributes (what a pickle would hold, as data). Loading reads the archive with ``allow_pickle=False`` (an object
array, which only a pickle can hold, is refused), builds only allow-listed classes and sets their attributes, so the
estimators are the fitted ones bit for bit (same ``coef_``, ``intercept_``, scaler ``mean_``/``scale_``, same
dtypes: same decision values) and nothing in the file is ever executed.

Files written before this format (joblib pickles, ``AU{au}.joblib``, :data:`LEGACY_MODEL_EXT`) load only when the
user says they trust them (:func:`trust_legacy_pickles`, the ``--trust-legacy-pickles`` option or
``AU_TRANSFER_TRUST_LEGACY_PICKLES=1``); ``au-transfer convert-models RESULTS`` rewrites them in this format.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pickle  # only its exception type: nothing here unpickles
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_path
from .layout import LEGACY_MODEL_EXT, MODEL_EXT

log = logging.getLogger(__name__)

__all__ = ["CLASSES", "LEGACY_MODEL_EXT", "MODEL_EXT", "MODEL_FORMAT", "TRUST_ENV", "ModelFileError",
           "UnsafeModelError", "is_pickle", "load", "load_legacy", "save", "torch_load", "trust_legacy_pickles"]

MODEL_FORMAT = "au_transfer.model/1"
TRUST_ENV = "AU_TRANSFER_TRUST_LEGACY_PICKLES"
HEADER = "__header__"

#: The only classes a model file may name: stable name -> (module, class). Nothing else is ever built.
CLASSES: dict[str, tuple[str, str]] = {
    "Pipeline": ("sklearn.pipeline", "Pipeline"),
    "StandardScaler": ("sklearn.preprocessing", "StandardScaler"),
    "LinearDiscriminantAnalysis": ("sklearn.discriminant_analysis", "LinearDiscriminantAnalysis"),
    "LinearSVC": ("sklearn.svm", "LinearSVC"),
    "ScatterLDA": ("au_transfer.classifiers.lean", "ScatterLDA"),
    "NewtonLinearSVC": ("au_transfer.classifiers.lean", "NewtonLinearSVC"),
    "IntensityRegressor": ("au_transfer.intensity.linear", "IntensityRegressor"),
    "LSTMClassifier": ("au_transfer.classifiers.lstm", "LSTMClassifier"),
}
_ARRAY_KINDS = set("biufc?US")


class ModelFileError(ValueError):
    """A model file cannot be read or written; the message names the file and what to do."""


class UnsafeModelError(ModelFileError):
    """A file would execute code when loaded (a pickle) and the user has not said they trust it."""


_trust = False


def trust_legacy_pickles(value: bool | None = None) -> bool:
    """Whether legacy pickled model files may be loaded (set ``value`` to change it for this process; also true
    when the environment variable ``AU_TRANSFER_TRUST_LEGACY_PICKLES`` is 1/true/yes)."""
    global _trust
    if value is not None:
        _trust = bool(value)
        if _trust:
            os.environ[TRUST_ENV] = "1"  # worker processes inherit the user's choice
        else:
            os.environ.pop(TRUST_ENV, None)
    return _trust or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def _class_name(obj: Any) -> str | None:
    for name, (module, cls) in CLASSES.items():
        if type(obj).__name__ == cls and type(obj).__module__.startswith(module):
            return name
    return None


# ------------------------------------------------------------------------------------------------ encode
def _encode(obj: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)) and type(obj) in (int, float):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ARRAY_KINDS or obj.dtype.hasobject:
            raise ModelFileError(f"{where}: cannot store an array of dtype {obj.dtype} (only numbers and text)")
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in "biuf?":
            return _encode(np.asarray(obj), arrays, where) | {"scalar": True}
        return {"__scalar__": obj.dtype.str, "value": obj.item()}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, arrays, f"{where}[{k!r}]") for k, v in obj.items()}
        return {"__items__": [[_encode(k, arrays, where), _encode(v, arrays, f"{where}[{k!r}]")]
                              for k, v in obj.items()]}
    name = _class_name(obj)
    if name is None:
        raise ModelFileError(f"{where}: cannot store a {type(obj).__module__}.{type(obj).__qualname__} (not one of "
                             f"the model classes {sorted(CLASSES)})")
    state = obj.__getstate__() if hasattr(obj, "__getstate__") else None
    state = dict(vars(obj) if state is None else state)
    return {"__object__": name, "state": _encode(state, arrays, f"{where}.{name}")}


def dumps(tree: Any, *, fmt: str = MODEL_FORMAT) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(header, arrays)`` of a tree of dicts, lists, numbers, strings, arrays and allow-listed estimators."""
    arrays: dict[str, np.ndarray] = {}
    header = {"format": fmt, "versions": _versions(), "tree": _encode(tree, arrays, "bundle")}
    return header, arrays


def _versions() -> dict[str, str]:
    import sklearn

    from . import __version__

    return {"au_transfer": __version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__}


def save(tree: Any, path: str | os.PathLike[str], *, fmt: str = MODEL_FORMAT) -> None:
    """Write ``tree`` as arrays + JSON header (an ``.npz``) atomically."""
    header, arrays = dumps(tree, fmt=fmt)
    blob = np.frombuffer(json.dumps(header, allow_nan=True).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, allow_pickle=False, **{HEADER: blob}, **arrays)


# ------------------------------------------------------------------------------------------------ decode
def _build(name: str, state: dict[str, Any], where: str) -> Any:
    if name not in CLASSES:
        raise ModelFileError(f"{where}: names the class {name!r}, which is not a model class ({sorted(CLASSES)})")
    module, cls_name = CLASSES[name]
    cls = getattr(importlib.import_module(module), cls_name)
    obj = cls.__new__(cls)
    if hasattr(cls, "__setstate__"):
        obj.__setstate__(state)  # scikit-learn's: warns when the file was written by another version
    else:
        obj.__dict__.update(state)
    return obj


def _decode(obj: Any, arrays: Any, where: str) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        key = str(obj["__array__"])
        if key not in arrays.files:
            raise ModelFileError(f"{where}: refers to array {key!r}, which the file does not hold")
        value = np.array(arrays[key])  # read with allow_pickle=False: an object array raises
        return value[()] if obj.get("scalar") else value
    if "__scalar__" in obj:
        return np.dtype(str(obj["__scalar__"])).type(obj["value"])
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays, where) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, arrays, where): _decode(v, arrays, where) for k, v in obj["__items__"]}
    if "__object__" in obj:
        return _build(str(obj["__object__"]), _decode(obj["state"], arrays, where), where)
    return {k: _decode(v, arrays, where) for k, v in obj.items()}


def rerun_hint(path: str | os.PathLike[str]) -> str:
    return (f"delete it and rerun the workflow job that writes it (snakemake {path}), or export the models "
            "again")


def _head(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(6)
    except OSError:
        return b""


def _check_size(path: Path, what: str) -> None:
    """A :class:`ModelFileError` naming ``path`` (the ``what`` file) when it cannot be read or is empty (an
    interrupted job)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None
    if size == 0:
        raise ModelFileError(f"{path}: the {what} file is empty (0 bytes: its job was interrupted?); "
                             f"{rerun_hint(path)}")


def is_pickle(path: str | os.PathLike[str]) -> bool:
    """Whether a file is a pickle (protocol 2 or later: joblib's files, torch's legacy format, plain pickles)."""
    return _head(path).startswith(b"\x80")


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def load(path: str | os.PathLike[str], *, fmt: str = MODEL_FORMAT) -> Any:
    """Read a tree written by :func:`save`; never unpickles. Raises :class:`ModelFileError` naming the file (empty,
    truncated, not this format) and :class:`UnsafeModelError` for a pickle."""
    path = Path(path)
    _check_size(path, "model")
    if is_pickle(path):
        raise UnsafeModelError(f"{path}: is a pickle, not arrays + JSON; loading it would run any code it holds, so "
                               "it is refused")
    if not _head(path).startswith(ZIP_MAGIC):
        raise ModelFileError(f"{path}: not an au-transfer model file (an {MODEL_EXT} of arrays + JSON); "
                             f"{rerun_hint(path)}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files") or HEADER not in npz.files:
                raise ModelFileError(f"{path}: not an au-transfer model file ({fmt}: no {HEADER}); "
                                     f"{rerun_hint(path)}")
            header = json.loads(bytes(npz[HEADER]).decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != fmt:
                raise ModelFileError(f"{path}: not an au-transfer model file ({fmt}); {rerun_hint(path)}")
            return _decode(header.get("tree"), npz, str(path))
    except ModelFileError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UnsafeModelError(f"{path}: holds pickled (object) data; loading it would run code, so it is "
                                   "refused") from None
        raise ModelFileError(f"{path}: cannot read the model file ({_one_line(exc)}); {rerun_hint(path)}") from None
    except (OSError, EOFError, KeyError, IndexError, AttributeError, zipfile.BadZipFile, UnicodeDecodeError,
            TypeError) as exc:
        raise ModelFileError(f"{path}: cannot read the model file (truncated or damaged: {_one_line(exc)}); "
                             f"{rerun_hint(path)}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_legacy(path: str | os.PathLike[str]) -> Any:
    """A joblib pickle written before :data:`MODEL_FORMAT`, only if the user trusts it (:func:`trust_legacy_pickles`)."""
    if not trust_legacy_pickles():
        raise UnsafeModelError(
            f"{path}: is a pickled model (joblib) from before au-transfer stored models as arrays + JSON; loading "
            "it would run any code it holds. If it is your own, convert your results once with `au-transfer "
            "convert-models RESULTS --trust-legacy-pickles` (or pass --trust-legacy-pickles / set "
            f"{TRUST_ENV}=1); if it came from someone else, do not: rerun the workflow or ask for an exported bundle")
    import joblib

    log.warning("%s: loading a legacy pickle because you said you trust it (--trust-legacy-pickles)", path)
    try:
        return joblib.load(path)
    except Exception as exc:  # noqa: BLE001  (any unreadable file: named)
        raise ModelFileError(f"{path}: cannot read the pickled model ({_one_line(exc)}); {rerun_hint(path)}") from None


# ------------------------------------------------------------------------------------------------ torch files
def torch_load(path: str | os.PathLike[str], *, mmap: bool = False, what: str = "network") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU: tensors and plain data only, never code (a file that names
    any other class is refused, one line naming it). ``torch.__version__`` strings, which bundles written before
    held, are allowed (a ``str``). ``what`` names the file's role in messages."""
    import torch
    from torch.torch_version import TorchVersion

    path = Path(path)
    _check_size(path, what)
    if not _head(path).startswith(ZIP_MAGIC):
        if is_pickle(path):
            raise UnsafeModelError(f"{path}: the {what} is a pickle (torch's legacy format); only torch's zip format "
                                   "is read, with weights_only (tensors and plain data), so it is refused")
        raise ModelFileError(f"{path}: the {what} is not a torch file; {rerun_hint(path)}")
    try:
        with torch.serialization.safe_globals([TorchVersion]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln or "WeightsUnpickler" in ln),
                      _one_line(exc))
        raise UnsafeModelError(f"{path}: the {what} holds more than tensors and plain data, which loading would run "
                               f"as code, so it is refused ({detail[:200]})") from None
    except Exception as exc:  # noqa: BLE001  (truncated zip, bad records: one line naming the file)
        raise ModelFileError(f"{path}: cannot read the {what} (truncated or damaged: {_one_line(exc)}); "
                             f"{rerun_hint(path)}") from None


def convert_legacy(results: str | os.PathLike[str], *, keep: bool = False) -> list[tuple[Path, Path]]:
    """Rewrite every pickled per-AU model of a results folder (``models/*/*/AU*.joblib``) as arrays + JSON beside
    it (``AU*.npz``, the same bundle); needs :func:`trust_legacy_pickles` (the pickles are loaded, so run it on your
    own results only). The pickles are removed unless ``keep``. Returns ``(pickle, new file)`` pairs."""
    from .layout import Layout

    if not trust_legacy_pickles():
        raise UnsafeModelError(f"convert-models loads the pickles under {results}, which runs any code they hold: "
                               "run it on your own results only, with --trust-legacy-pickles")
    layout = Layout.of(results)
    done = []
    for old in sorted(Path(layout.models_root()).glob(f"*/*/{Layout.model_pattern(LEGACY_MODEL_EXT)}")):
        new = old.with_suffix(MODEL_EXT)
        save(load_legacy(old), new)
        load(new)  # read back: a file that cannot be is an error now, not at predict time
        if not keep:
            old.unlink()
        done.append((old, new))
    return done
