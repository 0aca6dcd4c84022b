"""Read MatConvNet model files: ``simplenn`` and ``DagNN`` networks in MATLAB v5/v7 (scipy.io) and v7.3 (HDF5).

:func:`read_matconvnet` gives the chain of layers (name, kind, parameters in MATLAB's index order, strides, pads,
pooling and LRN settings) and the release's normalisation (``meta.normalization``, or the older top-level
``normalization``). Arrays keep MATLAB's indexing: a filter bank is ``(H, W, Cin, Cout)``, ``filters[h, w, c, k]``
as MATLAB's ``filters(h+1, w+1, c+1, k+1)`` (scipy.io keeps the indices; HDF5 stores the dimensions reversed,
which the v7.3 reader undoes). Nothing here imports torch; :mod:`~au_transfer.backbones.convert` turns the layers
into a backbone's state dict.

Structures read (MatConvNet's own):

* simplenn: ``layers`` a cell array of structs with ``name``, ``type`` (conv, relu, normalize / lrn, pool, softmax,
  dropout), conv ``weights`` = {filters, biases} (or the older ``filters`` / ``biases`` fields), ``stride``,
  ``pad``; pool ``method``, ``pool``, ``stride``, ``pad``; normalize ``param`` = [N kappa alpha beta].
* DagNN (``net.saveobj()``): ``layers`` a struct array with ``name``, ``type`` (dagnn.Conv, dagnn.ReLU, dagnn.LRN,
  dagnn.Pooling, ...), ``inputs``, ``outputs``, ``params`` (names) and ``block`` (size, pad, stride, poolSize,
  method, param); ``params`` a struct array of ``name`` / ``value``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class MatConvNetError(ValueError):
    """A file that is not a MatConvNet network this reader understands; the message names the file and layer."""


@dataclass
class MatLayer:
    """One layer of a MatConvNet chain, in the file's terms."""

    name: str
    kind: str                                   # conv | relu | lrn | pool | softmax | dropout | <other type>
    type: str                                   # the file's own type string
    params: list[np.ndarray] = field(default_factory=list)  # conv: [filters (H, W, Cin, Cout), biases (Cout,)]
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right
    pool: tuple[int, int] = (1, 1)
    method: str = "max"
    lrn: tuple[float, float, float, float] | None = None  # N, kappa, alpha, beta: x / (kappa + alpha sum x^2)^beta
    leak: float = 0.0


@dataclass
class MatNet:
    """A MatConvNet network read from a file."""

    path: str
    format: str                                 # "simplenn" | "dagnn"
    mat_version: str                            # "v5" (v5/v6/v7, scipy.io) | "v7.3" (HDF5)
    layers: list[MatLayer]
    normalization: dict[str, Any]               # averageImage, imageSize, interpolation, border, keepAspect
    sha256: str


_KINDS = {"conv": "conv", "dagnn.conv": "conv", "relu": "relu", "dagnn.relu": "relu", "normalize": "lrn",
          "lrn": "lrn", "dagnn.lrn": "lrn", "pool": "pool", "dagnn.pooling": "pool", "softmax": "softmax",
          "dagnn.softmax": "softmax", "dropout": "dropout", "dagnn.dropout": "dropout", "bnorm": "bnorm",
          "dagnn.batchnorm": "bnorm", "convt": "convt", "dagnn.convtranspose": "convt"}


# ------------------------------------------------------------------------------------------- MATLAB files
def _from_scipy(v: Any) -> Any:
    """scipy.io's arrays (loaded with struct_as_record=True, squeeze_me=False) -> dict / list / str / ndarray."""
    if isinstance(v, np.ndarray):
        if v.dtype.names:  # a struct (array): a dict, or a list of dicts in MATLAB's (column-major) order
            items = [{n: _from_scipy(el[n]) for n in v.dtype.names} for el in v.flatten(order="F")]
            return items[0] if v.size == 1 else items
        if v.dtype == object:  # a cell array
            return [_from_scipy(el) for el in v.flatten(order="F")]
        if v.dtype.kind == "U":
            return "".join(str(x) for x in v.flatten(order="F"))
        return v
    if isinstance(v, str):
        return v
    if type(v).__name__ == "MatlabOpaque":
        raise MatConvNetError("a MATLAB object (e.g. a dagnn.DagNN saved as an object): save it with "
                              "net = net.saveobj() first")
    return v


def _h5_class(obj: Any) -> str:
    cls = obj.attrs.get("MATLAB_class", b"")
    return cls.decode() if isinstance(cls, bytes) else str(cls)


def _from_h5(fh: Any, obj: Any) -> Any:
    """A MATLAB v7.3 (HDF5) value -> dict / list / str / ndarray (dimensions back in MATLAB's order)."""
    import h5py

    if isinstance(obj, h5py.Group):
        fields = {k: obj[k] for k in obj.keys() if not k.startswith("#")}
        # a struct array stores each field as references (one per element) without a MATLAB_class of its own
        if fields and all(isinstance(d, h5py.Dataset) and d.dtype == h5py.ref_dtype and not _h5_class(d)
                          for d in fields.values()):
            refs = {k: d[()].flatten() for k, d in fields.items()}
            n = len(next(iter(refs.values())))
            items = [{k: _from_h5(fh, fh[r[i]]) for k, r in refs.items()} for i in range(n)]
            return items[0] if n == 1 else items
        return {k: _from_h5(fh, d) for k, d in fields.items()}
    cls = _h5_class(obj)
    data = obj[()]
    if obj.attrs.get("MATLAB_empty", 0):
        return "" if cls == "char" else ([] if cls == "cell" else np.zeros((0, 0)))
    if cls == "cell" or obj.dtype == h5py.ref_dtype:
        return [_from_h5(fh, fh[r]) for r in np.asarray(data).flatten()]  # C order of reversed dims = MATLAB's
    if cls == "char":
        return "".join(chr(int(c)) for c in np.asarray(data).T.flatten(order="F"))
    arr = np.asarray(data).T  # HDF5 holds MATLAB's dimensions reversed
    return arr.astype(bool) if cls == "logical" else arr


def load_mat(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """The variables of a .mat file (v5/v7 via scipy.io, v7.3 via h5py) and which of the two it is."""
    p = Path(path)
    if not p.is_file():
        raise MatConvNetError(f"{p}: no such file")
    import h5py

    if h5py.is_hdf5(str(p)):
        with h5py.File(p, "r") as fh:
            return {k: _from_h5(fh, fh[k]) for k in fh.keys() if not k.startswith("#")}, "v7.3"
    import scipy.io

    try:
        raw = scipy.io.loadmat(str(p), squeeze_me=False, struct_as_record=True, chars_as_strings=True)
    except Exception as exc:  # noqa: BLE001 - not a MATLAB file, truncated, ...
        raise MatConvNetError(f"{p}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from exc
    try:
        return {k: _from_scipy(v) for k, v in raw.items() if not k.startswith("__")}, "v5"
    except MatConvNetError as exc:
        raise MatConvNetError(f"{p}: {exc}") from None


# --------------------------------------------------------------------------------------------- networks
def _ints(v: Any, n: int, what: str) -> tuple[int, ...]:
    """A MATLAB scalar or vector of ``n`` (1 -> repeated; 2 for a 4-tuple: [a b] -> a a b b)."""
    a = np.asarray(v, dtype=float).flatten(order="F")
    if a.size == 0:
        a = np.zeros(1)
    if a.size == 1:
        a = np.repeat(a, n)
    elif a.size == 2 and n == 4:
        a = np.array([a[0], a[0], a[1], a[1]])
    if a.size != n or not np.all(a == np.round(a)):
        raise MatConvNetError(f"{what}: expected {n} integers, got {a.tolist()}")
    return tuple(int(x) for x in a)


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ("".join(v) if isinstance(v, list) and all(isinstance(x, str) for x in v)
                                         else str(v))


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _layer(name: str, ltype: str, opts: dict[str, Any], params: list[np.ndarray], where: str) -> MatLayer:
    kind = _KINDS.get(ltype.lower(), ltype)
    layer = MatLayer(name=name, kind=kind, type=ltype, params=[np.asarray(p) for p in params])
    if kind in ("conv", "pool"):
        layer.stride = _ints(opts.get("stride", 1), 2, f"{where} stride")  # type: ignore[assignment]
        layer.pad = _ints(opts.get("pad", 0), 4, f"{where} pad")  # type: ignore[assignment]
    if kind == "pool":
        layer.pool = _ints(opts.get("pool", opts.get("poolSize", 1)), 2, f"{where} pool size")  # type: ignore[assignment]
        layer.method = _str(opts.get("method", "max")).lower()
    if kind == "lrn":
        param = np.asarray(opts.get("param", []), dtype=float).flatten()
        if param.size != 4:
            raise MatConvNetError(f"{where}: normalize param should be [N kappa alpha beta], got {param.tolist()}")
        layer.lrn = tuple(float(x) for x in param)  # type: ignore[assignment]
    if kind == "relu":
        leak = np.asarray(opts.get("leak", 0), dtype=float).flatten()
        layer.leak = float(leak[0]) if leak.size else 0.0
    return layer


def _simplenn_layers(layers: list[Any], path: str) -> list[MatLayer]:
    out = []
    for i, raw in enumerate(layers, 1):
        if not isinstance(raw, dict):
            raise MatConvNetError(f"{path}: layers{{{i}}} is not a struct")
        name = _str(raw.get("name", f"layer{i}")) or f"layer{i}"
        where = f"{path}: layer {i} ({name!r})"
        ltype = _str(raw.get("type", ""))
        params: list[np.ndarray] = []
        if "weights" in raw:
            params = [np.asarray(p) for p in _as_list(raw["weights"]) if np.asarray(p).size]
        elif "filters" in raw:  # the format before MatConvNet beta-12
            params = [np.asarray(raw["filters"])] + ([np.asarray(raw["biases"])] if np.asarray(
                raw.get("biases", [])).size else [])
        out.append(_layer(name, ltype, raw, params, where))
    return out


def _dagnn_layers(net: dict[str, Any], path: str) -> list[MatLayer]:
    values = {_str(p["name"]): np.asarray(p["value"]) for p in _as_list(net.get("params", []))}
    raws = _as_list(net["layers"])
    layers, consumers = [], {}
    for i, raw in enumerate(raws, 1):
        name = _str(raw.get("name", f"layer{i}"))
        where = f"{path}: DagNN layer {i} ({name!r})"
        inputs = [_str(x) for x in _as_list(raw.get("inputs", []))]
        outputs = [_str(x) for x in _as_list(raw.get("outputs", []))]
        if len(inputs) != 1 or len(outputs) != 1:
            raise MatConvNetError(f"{where}: {len(inputs)} inputs and {len(outputs)} outputs; only chains of "
                                  "one-input, one-output layers are converted")
        names = [_str(x) for x in _as_list(raw.get("params", [])) if _str(x)]
        missing = [n for n in names if n not in values]
        if missing:
            raise MatConvNetError(f"{where}: parameters {missing} are not in the file's params")
        block = raw.get("block") if isinstance(raw.get("block"), dict) else {}
        layer = _layer(name, _str(raw.get("type", "")), block, [values[n] for n in names if values[n].size], where)
        layers.append((inputs[0], outputs[0], layer))
        if inputs[0] in consumers:
            raise MatConvNetError(f"{where}: variable {inputs[0]!r} feeds two layers; not a chain")
        consumers[inputs[0]] = len(layers) - 1
    produced = {o for _, o, _ in layers}
    starts = [i for i, (inp, _, _) in enumerate(layers) if inp not in produced]
    if len(starts) != 1:
        raise MatConvNetError(f"{path}: the DagNN has {len(starts)} input layers; only chains are converted")
    chain, i = [], starts[0]
    while i is not None and len(chain) <= len(layers):
        chain.append(layers[i][2])
        i = consumers.get(layers[i][1])
    return chain


def read_matconvnet(path: str | os.PathLike[str]) -> MatNet:
    """Read a MatConvNet network (simplenn or DagNN, MATLAB v5/v7 or v7.3) from ``path``."""
    p = os.fspath(path)
    data, version = load_mat(p)
    net = data.get("net") if isinstance(data.get("net"), dict) else data  # a file saved as struct `net`
    if "layers" not in net:
        raise MatConvNetError(f"{p}: no 'layers' variable: not a MatConvNet network (variables: {sorted(data)})")
    raws = _as_list(net["layers"])
    dagnn = "params" in net and raws and isinstance(raws[0], dict) and "block" in raws[0]
    layers = _dagnn_layers(net, p) if dagnn else _simplenn_layers(raws, p)
    meta = net.get("meta") if isinstance(net.get("meta"), dict) else {}
    norm = meta.get("normalization", net.get("normalization", {}))
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return MatNet(path=p, format="dagnn" if dagnn else "simplenn", mat_version=version, layers=layers,
                  normalization=norm if isinstance(norm, dict) else {}, sha256=h.hexdigest())


def release_normalization(norm: dict[str, Any], where: str) -> tuple[dict[str, Any], np.ndarray | None]:
    """The release's normalisation as recorded in a converted file, and its full mean image (or None).

    ``averageImage``: 3 values (a mean pixel, any shape) or an (H, W, 3) image (RGB, 0-255; its channel means are
    the recorded ``mean_pixel``); ``imageSize``: [H W (C)]."""
    out: dict[str, Any] = {}
    image = None
    avg = np.asarray(norm.get("averageImage", []), dtype=np.float64)
    if avg.size == 3:
        out["mean_pixel"] = [float(x) for x in avg.flatten(order="F")]
        out["average_image"] = "mean pixel"
    elif avg.size:
        if avg.ndim != 3 or avg.shape[2] != 3:
            raise MatConvNetError(f"{where}: normalization.averageImage of shape {avg.shape} is neither a mean "
                                  "pixel nor an H x W x 3 image")
        image = avg.astype(np.float32)
        out["mean_pixel"] = [float(x) for x in avg.mean(axis=(0, 1))]
        out["average_image"] = f"{avg.shape[0]}x{avg.shape[1]}x3 image"
    size = np.asarray(norm.get("imageSize", []), dtype=float).flatten()
    if size.size >= 2:
        out["image_size"] = [int(x) for x in size[:3]]
    for key, name in (("interpolation", "interpolation"), ("keepAspect", "keep_aspect"), ("border", "border")):
        if key in norm:
            v = norm[key]
            out[name] = v if isinstance(v, str) else np.asarray(v).flatten().tolist()
    return out, image
