"""``au-transfer convert-weights``: a MatConvNet release -> a backbone's native state dict, checked and recorded.

The layers with weights of the file (in the chain's order) go to the network's ``Conv2d`` / ``Linear`` modules in
their order. MatConvNet's filters are ``(H, W, Cin, Cout)`` in MATLAB's indexing; PyTorch's are ``(Cout, Cin, H,
W)``: ``filters.transpose(3, 2, 0, 1)``. A fully connected layer is stored as a convolution whose support covers
its whole input (fc6 of CNN-F: 6 x 6 x 256 x 4096): its output k is ``sum_{h,w,c} x[h, w, c] * F[h, w, c, k]``,
and ``torch.flatten`` of the (C, H, W) input puts ``x[c, h, w]`` at ``c * H * W + h * W + w``, so the linear
weight is the same transposition reshaped to ``(Cout, Cin * H * W)`` (tests/test_convert_weights.py checks it
against a NumPy forward of the MATLAB arrays). Nothing is flipped: MatConvNet networks take RGB input.

Before writing, the file's chain (convolutions with their stride and padding, ReLUs, LRNs with their parameters,
poolings with their window, stride and output size, and the fully connected layers' input size) is compared
with the network's, layer by layer, so that a release of another network, or a layer the network computes
differently, stops the conversion with the layer named. The output records the release's normalisation (mean
pixel or mean image, image size), the source file's name and sha256; :func:`create_backbone` then uses that
normalisation (:func:`~au_transfer.backbones.weights.release_spec`) and the feature files record it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import _REGISTRY
from .matconvnet import MatConvNetError, MatLayer, MatNet, read_matconvnet, release_normalization
from .weights import AVERAGE_IMAGE_KEY, META_KEY, WeightsError, release_spec

#: Version of the conversion record written into converted files.
RECORD_VERSION = 1


class ConversionError(WeightsError):
    """A MatConvNet file that does not fit the backbone (the message names the layer and what differs)."""


def native_factory(name: str) -> Any:
    """The factory of the backbone's native module (backbones built by ``native_builder``)."""
    from .registry import _resolve

    _resolve(name)
    make = getattr(_REGISTRY[name][1], "native", None) if name in _REGISTRY else None
    if make is None:
        raise ConversionError(f"backbone {name!r} has no native network to convert MatConvNet weights into "
                              "(convert-weights covers networks defined by this package: cnn_f, cnn_m, cnn_s, zfnet, "
                              "vgg_face, ...)")
    return make


def _leaves(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in module.named_modules():
        if not list(m.children()):
            yield name, m


def _out(n: int, k: int, s: int, p0: int, p1: int, ceil: bool = False) -> int:
    span = n + p0 + p1 - k
    if span < 0:
        return 0
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= n + p0 else out  # PyTorch: the last window starts inside the input


def _native_chain(native: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(kind, module name, module) of the native network's layers that compute something MatConvNet has."""
    out = []
    for name, m in _leaves(native):
        if isinstance(m, nn.Conv2d):
            out.append(("conv", name, m))
        elif isinstance(m, nn.Linear):
            out.append(("fc", name, m))
        elif isinstance(m, nn.ReLU):
            out.append(("relu", name, m))
        elif isinstance(m, nn.LocalResponseNorm):
            out.append(("lrn", name, m))
        elif isinstance(m, nn.MaxPool2d):
            out.append(("pool", name, m))
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten, nn.Identity)):
            continue  # identity at inference (an adaptive pool at its own output size: checked by the fc sizes)
        else:
            out.append((type(m).__name__, name, m))
    return out


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _compare(net: MatNet, native: nn.Module, backbone: str, size: int) -> list[tuple[MatLayer, str, nn.Module]]:
    """Walk the file's chain and the network's side by side; raise naming the first layer that differs.
    Returns the (file layer, module name, module) pairs of the layers with weights."""
    where = f"{net.path}"
    file_chain = [L for L in net.layers if L.kind not in ("softmax", "dropout")]
    unsupported = [L for L in file_chain if L.kind in ("bnorm", "convt")]
    if unsupported:
        raise ConversionError(f"{where}: layer {unsupported[0].name!r} of type {unsupported[0].type!r} has no "
                              f"counterpart in backbone {backbone!r}")
    ours = _native_chain(native)
    if len(file_chain) != len(ours):
        raise ConversionError(
            f"{where}: the file's network has {len(file_chain)} layers ({', '.join(L.name for L in file_chain)}), "
            f"backbone {backbone!r} has {len(ours)} ({', '.join(n for _, n, _ in ours)}): a release of another network?")
    pairs = []
    h = w = size
    ch = 3
    for L, (kind, mname, m) in zip(file_chain, ours, strict=True):
        here = f"{where}: layer {L.name!r} ({L.type}) vs {backbone} {mname}"
        want = "conv" if kind == "fc" else kind
        if L.kind != want:
            raise ConversionError(f"{here}: the file has a {L.kind} layer where the network has {kind}")
        if L.kind == "conv":
            if len(L.params) not in (1, 2):
                raise ConversionError(f"{here}: expected filters and biases, found {len(L.params)} arrays")
            f = L.params[0]
            f = f.reshape(f.shape + (1,) * (4 - f.ndim)) if f.ndim < 4 else f  # MATLAB drops trailing 1s
            if f.ndim != 4:
                raise ConversionError(f"{here}: filters of shape {f.shape}, expected H x W x Cin x Cout")
            fh, fw, cin, cout = f.shape
            if cin != ch:
                raise ConversionError(f"{here}: filters of shape {f.shape} take {cin} input channels, the layer "
                                      f"before gives {ch}")
            if kind == "conv":
                k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
                shape = (m.out_channels, m.in_channels, *k)
                if (cout, cin, fh, fw) != shape:
                    raise ConversionError(f"{here}: filters {fh}x{fw}x{cin}x{cout} (H x W x Cin x Cout) vs "
                                          f"network weight {shape} (Cout, Cin, H, W)")
                if L.stride != s or L.pad != (p[0], p[0], p[1], p[1]):
                    raise ConversionError(f"{here}: stride {list(L.stride)} pad {list(L.pad)} in the file, stride "
                                          f"{list(s)} pad {list(p)} in the network")
                h, w = _out(h, fh, s[0], p[0], p[0]), _out(w, fw, s[1], p[1], p[1])
            else:
                if (fh, fw) != (h, w) or any(L.pad):
                    raise ConversionError(f"{here}: a fully connected layer must cover its whole {h}x{w} input "
                                          f"without padding; the file's filters are {fh}x{fw}, pad {list(L.pad)}")
                if (cout, fh * fw * cin) != (m.out_features, m.in_features):
                    raise ConversionError(f"{here}: filters {fh}x{fw}x{cin}x{cout} give a linear weight "
                                          f"({cout}, {fh * fw * cin}), the network has ({m.out_features}, "
                                          f"{m.in_features})")
                h = w = 1
            b = L.params[1].reshape(-1) if len(L.params) == 2 else None
            if b is not None and b.size != cout:
                raise ConversionError(f"{here}: {b.size} biases for {cout} filters")
            ch = cout
            pairs.append((L, mname, m))
        elif L.kind == "relu" and L.leak:
            raise ConversionError(f"{here}: a leaky ReLU (leak {L.leak}) where the network has a ReLU")
        elif L.kind == "lrn":
            n, kappa, alpha, beta = L.lrn or (0, 0, 0, 0)
            ours_lrn = (m.size, m.k, m.alpha / m.size, m.beta)
            if int(n) != m.size or not np.allclose((kappa, alpha, beta), ours_lrn[1:], rtol=1e-4, atol=0):
                raise ConversionError(f"{here}: LRN [N kappa alpha beta] = {[n, kappa, alpha, beta]} in the file, "
                                      f"{list(ours_lrn)} in the network")
        elif L.kind == "pool":
            k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
            fo = (_out(h, L.pool[0], L.stride[0], L.pad[0], L.pad[1]), _out(w, L.pool[1], L.stride[1], L.pad[2],
                                                                              L.pad[3]))
            no = (_out(h, k[0], s[0], p[0], p[0], m.ceil_mode), _out(w, k[1], s[1], p[1], p[1], m.ceil_mode))
            if L.method != "max" or L.pool != k or L.stride != s or fo != no:
                raise ConversionError(f"{here}: {L.method} pool {list(L.pool)} stride {list(L.stride)} pad "
                                      f"{list(L.pad)} gives {fo[0]}x{fo[1]} from {h}x{w} in the file; the network's "
                                      f"max pool {list(k)} stride {list(s)} gives {no[0]}x{no[1]}")
            h, w = no
    return pairs


def to_state_dict(net: MatNet, backbone: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The backbone's native state dict from a MatConvNet network (checked layer by layer, see module doc), and
    the file's names of the layers it came from."""
    from .registry import get_spec

    make = native_factory(backbone)
    spec = get_spec(backbone)
    with torch.device("meta"):
        native = make()
    pairs = _compare(net, native, backbone, spec.input_size)
    sd: dict[str, torch.Tensor] = {}
    for L, mname, m in pairs:
        f = np.asarray(L.params[0], dtype=np.float32)
        f = f.reshape(f.shape + (1,) * (4 - f.ndim)) if f.ndim < 4 else f
        weight = np.ascontiguousarray(f.transpose(3, 2, 0, 1))  # (H, W, Cin, Cout) -> (Cout, Cin, H, W)
        if isinstance(m, nn.Linear):
            weight = weight.reshape(weight.shape[0], -1)  # (Cout, Cin * H * W): torch.flatten's (C, H, W) order
        sd[f"{mname}.weight"] = torch.from_numpy(weight)
        if m.bias is not None:
            if len(L.params) < 2:
                raise ConversionError(f"{net.path}: layer {L.name!r} has no biases; {backbone} {mname} has a bias")
            sd[f"{mname}.bias"] = torch.from_numpy(np.ascontiguousarray(L.params[1], dtype=np.float32).reshape(-1))
    target = native.state_dict()
    missing = sorted(set(target) - set(sd))
    if missing:
        raise ConversionError(f"{net.path}: backbone {backbone!r} has parameters the file does not give: {missing}")
    return sd, [L.name for L, _, _ in pairs]


def conversion_record(net: MatNet, backbone: str, layers: list[str]) -> tuple[dict[str, Any], np.ndarray | None]:
    """What a converted file records about its source (and the release's full mean image, if it has one)."""
    from .. import __version__

    norm, image = release_normalization(net.normalization, net.path)
    record = {"version": RECORD_VERSION, "backbone": backbone, "source": os.path.basename(net.path),
              "source_sha256": net.sha256, "source_format": f"MatConvNet {net.format} (MATLAB {net.mat_version})",
              "layers": layers, "normalization": norm, "converter": f"au-transfer {__version__}"}
    return record, image


def write_weights(dst: str | os.PathLike[str], sd: dict[str, torch.Tensor], record: dict[str, Any],
                  image: np.ndarray | None) -> None:
    """Write a converted file atomically: a torch file ``{"state_dict", "au_transfer", "average_image"}`` (read
    with ``weights_only=True``) or, for a ``.safetensors`` name, the tensors with the record as metadata."""
    from ..io import atomic_path

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        if dst.suffix == ".safetensors":
            from safetensors.torch import save_file

            tensors = dict(sd)
            if image is not None:
                tensors[f"{META_KEY}.{AVERAGE_IMAGE_KEY}"] = torch.from_numpy(np.ascontiguousarray(image))
            save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(record)})
        else:
            obj: dict[str, Any] = {"state_dict": sd, META_KEY: record}
            if image is not None:
                obj[AVERAGE_IMAGE_KEY] = torch.from_numpy(np.ascontiguousarray(image))
            with open(tmp, "wb") as fh:
                torch.save(obj, fh)


def convert_weights(src: str | os.PathLike[str], dst: str | os.PathLike[str], backbone: str) -> dict[str, Any]:
    """Convert the MatConvNet file ``src`` into ``dst`` for ``backbone``; load the result with
    :func:`create_backbone` as a check. Returns the conversion record (plus ``dst``)."""
    from .registry import create_backbone

    try:
        net = read_matconvnet(src)
        sd, layers = to_state_dict(net, backbone)
        record, image = conversion_record(net, backbone, layers)
    except MatConvNetError as exc:
        raise ConversionError(str(exc)) from None
    from .registry import get_spec

    try:  # the release's image size and mean image must fit the network (as create_backbone will check)
        release_spec(get_spec(backbone), {**record, AVERAGE_IMAGE_KEY: image}, os.fspath(src))
    except WeightsError as exc:
        raise ConversionError(str(exc)) from None
    write_weights(dst, sd, record, image)
    try:
        create_backbone(backbone, dst)
    except Exception:
        Path(dst).unlink(missing_ok=True)
        raise
    return {**record, "dst": os.fspath(dst)}
