"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

The network is the ``anet_type`` of dlib's ``examples/dnn_face_recognition_ex.cpp``: a 29-convolution ResNet on a
150x150 RGB face chip (``dlib.get_face_chip(img, shape, size=150, padding=0.25)``), with affine layers (frozen batch
norm) after every convolution, a global average pool to 256-D and a 128-D ``fc_no_bias`` whose raw output is the
face descriptor that ``dlib.face_recognition_model_v1.compute_face_descriptor`` returns (dlib does not
L2-normalise it).

This module holds three things:

- :func:`read_dlib_dnn`: a reader for dlib's binary serialisation of such a network (``serialize(net, out)``):
  written from dlib's public format description (``serialize.h``, ``dnn/core.h``, ``dnn/layers.h``,
  ``cuda/tensor.h``), no dlib code needed.
- :class:`DlibResNetTrunk`: the network as ordinary ``nn.Conv2d`` / :class:`Affine` / ``nn.Linear`` modules with
  trainable parameters, so it fine-tunes like any other backbone.
- :class:`DlibResNet` and :func:`build`: the registry-facing :class:`Backbone` with ``body``/``fc``/``tail`` for
  each exposed feature layer (see :data:`LAYERS`), registered on import as ``dlib_resnet``, ``dlib_resnet.pool``
  and ``dlib_resnet.level1``.

Preprocessing is dlib's ``input_rgb_image_sized``: ``(pixel - mean_rgb) / 256`` with
``mean_rgb = (122.782, 117.001, 104.298)``, i.e. ``mean = mean_rgb / 255`` and ``std = 256 / 255`` on [0, 1]
images.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Backbone, BackboneError, BackboneSpec, register_backbone
from .weights import (
    DOCS,
    KeyMap,
    WeightsError,
    apply_key_map,
    file_sha256,
    load_into,
    load_state_dict_file,
    random_tag,
)

log = logging.getLogger(__name__)

#: File name of the pretrained network in the ``face_recognition_models`` package.
DLIB_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: Input size of the network (dlib's ``input_rgb_image_sized<150>``).
INPUT_SIZE = 150
#: dlib's per-channel RGB means (0-255 scale) of ``input_rgb_image_sized``; the scale divides by 256.
DLIB_MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
DLIB_SCALE = 256.0
#: The same normalisation on images scaled to [0, 1]: ``(x - mean) / std``.
MEAN = tuple(m / 255.0 for m in DLIB_MEAN_RGB)
STD = (DLIB_SCALE / 255.0,) * 3

#: Exposed feature layers: registry name -> (feature dimension, description).
LAYERS: dict[str, tuple[int, str]] = {
    "dlib_resnet": (128, "the 128-D face descriptor (raw output of dlib's fc_no_bias, not L2-normalised)"),
    "dlib_resnet.pool": (256, "the 256-D global-average-pooled vector before the fc (after alevel0)"),
    "dlib_resnet.level1": (4096, "output of dlib's alevel1 (256 channels x 4 x 4), flattened"),
}


class DlibFormatError(ValueError):
    """A dlib .dat file cannot be read as the expected network; the message names the file and the offset."""


# =============================================================================================== the reader
@dataclass
class DlibLayer:
    """One computational layer from a dlib network file, in file order (from the input up)."""

    kind: str                       # con, affine, relu, max_pool, avg_pool, add_prev, fc
    version: str                    # the version string found in the file, e.g. ``con_4``
    attrs: dict[str, Any] = field(default_factory=dict)
    offset: int = 0                 # byte offset of the layer's version string in the file

    def describe(self) -> str:
        shown = {k: v for k, v in self.attrs.items() if not isinstance(v, np.ndarray)}
        return f"{self.version} {shown}"


@dataclass
class DlibNet:
    """A dlib network file: its loss, input layer and the layers from the input up."""

    path: Path
    loss: dict[str, Any]
    input: dict[str, Any]
    layers: list[DlibLayer]


class _Reader:
    """Sequential reader of dlib's serialisation primitives."""

    def __init__(self, data: bytes, path: Path):
        self.data = data
        self.pos = 0
        self.path = path

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.path}: at byte {self.pos}: {what}")

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of file")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def int(self) -> int:
        """dlib's packed integer: a control byte (size in the low 4 bits, 0x80 = negative) then LE bytes."""
        start = self.pos
        ctrl = self._byte()
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            self.pos = start
            raise self.fail(f"bad integer control byte 0x{ctrl:02x}")
        if self.pos + size > len(self.data):
            raise self.fail("unexpected end of file inside an integer")
        value = int.from_bytes(self.data[self.pos:self.pos + size], "little")
        self.pos += size
        return -value if ctrl & 0x80 else value

    def peek_int(self) -> int:
        pos = self.pos
        try:
            return self.int()
        finally:
            self.pos = pos

    def float(self) -> float:
        """dlib's portable float: int64 mantissa and int16 exponent (``float_details``)."""
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        ch = self._byte()
        if ch not in (ord("0"), ord("1")):
            self.pos -= 1
            raise self.fail(f"bad boolean byte 0x{ch:02x}")
        return ch == ord("1")

    def string(self) -> str:
        n = self.int()
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"bad string length {n}")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as err:
            raise self.fail(f"string {raw[:40]!r} is not ASCII") from err

    def tensor(self) -> np.ndarray:
        """A dlib ``resizable_tensor`` (version 2: four dims then little-endian float32 values)."""
        version = self.int()
        if version != 2:
            raise self.fail(f"tensor version {version}, expected 2")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        nbytes = 4 * count
        if min(shape) < 0 or self.pos + nbytes > len(self.data):
            raise self.fail(f"bad tensor shape {shape}")
        arr = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos += nbytes
        return arr

    def alias(self) -> tuple[int, int, int, int]:
        """A dlib ``alias_tensor``: only its shape is stored."""
        version = self.int()
        if version != 1:
            raise self.fail(f"alias_tensor version {version}, expected 1")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


def _read_layer(r: _Reader) -> DlibLayer:
    """Read one layer's details (its version string first)."""
    offset = r.pos
    version = r.string()
    a: dict[str, Any] = {}
    if version in ("con_4", "con_5", "con_6"):
        params = r.tensor().ravel()
        a["num_filters"] = r.int()
        a["kernel"] = (r.int(), r.int())
        a["stride"] = (r.int(), r.int())
        a["padding"] = (r.int(), r.int())
        fshape = r.alias()
        bshape = r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        use_bias = r.bool() if version in ("con_5", "con_6") else True
        if version == "con_6":
            r.bool()  # use_relu (fused relu flag, unused by this network)
        nf = int(np.prod(fshape))
        a["weight"] = params[:nf].reshape(fshape)
        nb = int(np.prod(bshape)) if use_bias else 0
        a["bias"] = params[nf:nf + nb].copy() if nb else None
        if nf + nb != params.size:
            raise DlibFormatError(f"{r.path}: at byte {offset}: {version} holds {params.size} parameters, "
                                  f"expected {nf} filter + {nb} bias values")
        return DlibLayer("con", version, a, offset)
    if version in ("affine_", "affine_2"):
        params = r.tensor().ravel()
        gshape = r.alias()
        bshape = r.alias()
        a["mode"] = r.int()
        if version == "affine_2":
            a["disabled"] = r.bool()
        ng, nb = int(np.prod(gshape)), int(np.prod(bshape))
        if ng + nb != params.size:
            raise DlibFormatError(f"{r.path}: at byte {offset}: affine holds {params.size} values, expected {ng + nb}")
        a["gamma"] = params[:ng].reshape(gshape)
        a["beta"] = params[ng:].reshape(bshape)
        return DlibLayer("affine", version, a, offset)
    if version in ("relu_", "relu_2"):
        if version == "relu_2":
            a["disabled"] = r.bool()
        return DlibLayer("relu", version, a, offset)
    if version in ("max_pool_2", "avg_pool_2"):
        a["kernel"] = (r.int(), r.int())
        a["stride"] = (r.int(), r.int())
        a["padding"] = (r.int(), r.int())
        return DlibLayer(version[:-2], version, a, offset)
    if version == "add_prev_":
        return DlibLayer("add_prev", version, a, offset)
    if version in ("fc_2", "fc_3"):
        a["num_outputs"] = r.int()
        a["num_inputs"] = r.int()
        params = r.tensor().ravel()
        wshape = r.alias()
        bshape = r.alias()
        a["bias_mode"] = r.int()  # 0 = has bias, 1 = fc_no_bias
        for _ in range(4):
            r.float()
        use_bias = r.bool() if version == "fc_3" else True
        nw = int(np.prod(wshape))
        a["weight"] = params[:nw].reshape(wshape[0], wshape[1])  # (num_inputs, num_outputs)
        has_bias = a["bias_mode"] == 0 and use_bias
        a["bias"] = params[nw:nw + int(np.prod(bshape))].copy() if has_bias else None
        return DlibLayer("fc", version, a, offset)
    r.pos = offset
    raise r.fail(f"layer type {version!r} is not supported by this reader")


def read_dlib_dnn(path: str | Path) -> DlibNet:
    """Parse a dlib DNN file written by ``dlib::serialize(net, out)`` (a ``loss_metric`` network of plain layers).

    The file nests every layer around the one below it: the add_layer/tag/skip version numbers come first (top
    down), then the input layer, then each computational layer's details from the bottom up, each followed by its
    add_layer bookkeeping (three flags and cached tensors). Tags and skips store nothing but a version, so the
    wiring is not in the file: :class:`DlibResNetTrunk` supplies it and checks every layer against it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DlibFormatError(f"cannot read dlib network file {path}: {err}") from err
    r = _Reader(data, path)
    if r.int() != 1:
        raise r.fail("not a dlib network file (expected add_loss_layer version 1)")
    loss_version = r.string()
    if loss_version == "loss_metric_2":
        loss = {"type": "loss_metric", "margin": r.float(), "distance_threshold": r.float()}
    elif loss_version == "loss_metric_":
        loss = {"type": "loss_metric", "margin": 0.1, "distance_threshold": 0.75}
    else:
        raise r.fail(f"loss layer {loss_version!r} is not supported (expected loss_metric)")
    # Version numbers of the nested add_layer (2), tag and skip (1) wrappers, top down. A string length (the input
    # layer's name) ends them: dlib's wrapper versions are <= 3, the names are longer.
    versions: list[int] = []
    while r.peek_int() <= 3:
        versions.append(r.int())
    if not versions:
        raise r.fail("no layers found")
    input_wrapper = versions.pop()
    if input_wrapper not in (2, 3):
        raise r.fail(f"input add_layer version {input_wrapper} is not supported")
    n_layers = sum(v == 2 for v in versions) + 1
    if any(v not in (1, 2) for v in versions):
        raise r.fail(f"unexpected wrapper versions {sorted(set(versions))}")
    input_name = r.string()
    if input_name != "input_rgb_image_sized":
        raise r.fail(f"input layer {input_name!r} is not supported (expected input_rgb_image_sized)")
    inp = {"mean_rgb": (r.float(), r.float(), r.float()), "size": (r.int(), r.int())}

    layers: list[DlibLayer] = []
    for i in range(n_layers):
        layers.append(_read_layer(r))
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, get_output_and_gradient_input_disabled
            r.bool()
        r.tensor()  # x_grad
        r.tensor()  # cached_output
        r.tensor()  # params_grad (grad_final for the add_layer on the input)
        if i == 0 and input_wrapper == 3:
            r.int()  # _sample_expansion_factor
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} trailing bytes after {n_layers} layers")
    log.debug("read %d layers from %s", len(layers), path)
    return DlibNet(path, loss, inp, layers)


# ============================================================================================== the network
class Affine(nn.Module):
    """dlib's ``affine`` layer (a batch norm frozen into ``x * gamma + beta`` per channel); trainable."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


def conv_affine(conv: nn.Conv2d, aff: Affine, x: Tensor) -> Tensor:
    """``aff(conv(x))`` as one convolution with the affine folded into its weights and bias.

    Identical in value (up to float rounding) and in gradients (the fold is differentiable: both ``conv`` and
    ``aff`` parameters train), but it saves a full pass over the activations.
    """
    g = aff.weight
    w = conv.weight * g.view(-1, 1, 1, 1)
    b = aff.bias if conv.bias is None else torch.addcmul(aff.bias, conv.bias, g)
    return F.conv2d(x, w, b, conv.stride, conv.padding)


def add_prev(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev``: an element-wise sum whose output takes the larger size in every dimension; the
    smaller tensor counts as zero outside its extent (top-left aligned). Used where a stride-2 block (floor
    sizes) meets its 2x2 average-pooled shortcut, and where the channel count grows."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape, strict=True)]

    def grow(t: Tensor) -> Tensor:
        pad = (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1])
        return F.pad(t, pad) if any(pad) else t

    return grow(a) + grow(b)


class ResBlock(nn.Module):
    """dlib's ``ares`` / ``ares_down``: relu(add_prev(affine(con(relu(affine(con(x))))), shortcut(x)))."""

    def __init__(self, in_ch: int, out_ch: int, down: bool):
        super().__init__()
        stride = 2 if down else 1
        # dlib's default padding: kernel // 2 for stride 1, none for larger strides.
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=0 if down else 1)
        self.aff1 = Affine(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1)
        self.aff2 = Affine(out_ch)
        self.down = down

    def forward(self, x: Tensor) -> Tensor:
        y = conv_affine(self.conv2, self.aff2, F.relu(conv_affine(self.conv1, self.aff1, x), inplace=True))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_prev(y, shortcut), inplace=True)

    def dlib_layers(self) -> Iterator[tuple[str, nn.Module | None, dict]]:
        yield "con", self.conv1, {}
        yield "affine", self.aff1, {}
        yield "relu", None, {}
        yield "con", self.conv2, {}
        yield "affine", self.aff2, {}
        if self.down:
            yield "avg_pool", None, {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)}
        yield "add_prev", None, {}
        yield "relu", None, {}


class Stem(nn.Module):
    """con 7x7/2 (32) -> affine -> relu -> max_pool 3x3/2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.aff = Affine(32)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.relu(conv_affine(self.conv, self.aff, x), inplace=True), 3, 2)

    def dlib_layers(self) -> Iterator[tuple[str, nn.Module | None, dict]]:
        yield "con", self.conv, {}
        yield "affine", self.aff, {}
        yield "relu", None, {}
        yield "max_pool", None, {"kernel": (3, 3), "stride": (2, 2), "padding": (0, 0)}


def _level(in_ch: int, out_ch: int, n: int, down: bool) -> nn.Sequential:
    blocks = [ResBlock(in_ch, out_ch, down)] + [ResBlock(out_ch, out_ch, False) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


class DlibResNetTrunk(nn.Module):
    """The whole ``anet_type`` as named stages (dlib's level names; alevel4 is the shallowest)::

        stem    3x150x150 -> 32x35x35
        level4  3 blocks, 32 ch            35x35
        level3  4 blocks, 64 ch, first /2  17x17
        level2  3 blocks, 128 ch, first /2  8x8
        level1  3 blocks, 256 ch, first /2  4x4   (a 3x3 block output plus its 4x4 pooled shortcut)
        level0  1 block, 256 ch, /2         2x2
        pool    global average -> 256
        fc      Linear(256, 128, bias=False): the descriptor
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = Stem()
        self.level4 = _level(32, 32, 3, down=False)
        self.level3 = _level(32, 64, 4, down=True)
        self.level2 = _level(64, 128, 3, down=True)
        self.level1 = _level(128, 256, 3, down=True)
        self.level0 = _level(256, 256, 1, down=True)
        self.fc = nn.Linear(256, 128, bias=False)

    def stages(self) -> list[nn.Module]:
        return [self.stem, self.level4, self.level3, self.level2, self.level1, self.level0]

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages():
            x = stage(x)
        return self.fc(x.mean(dim=(2, 3)))

    def dlib_layers(self) -> Iterator[tuple[str, nn.Module | None, dict]]:
        """The computational layers in dlib file order, with the hyper-parameters a file must match."""
        for stage in self.stages():
            for block in ([stage] if isinstance(stage, Stem) else list(stage)):
                yield from block.dlib_layers()
        yield "avg_pool", None, {"kernel": (0, 0)}  # avg_pool_everything
        yield "fc", self.fc, {}

    @torch.no_grad()
    def load_dlib(self, net: DlibNet) -> None:
        """Copy a parsed dlib file into this network, checking every layer's type and shape."""
        expected = list(self.dlib_layers())
        where = net.path
        if len(expected) != len(net.layers):
            kinds = [layer.kind for layer in net.layers]
            raise DlibFormatError(f"{where}: {len(net.layers)} layers, expected {len(expected)} of dlib's face "
                                  f"recognition ResNet; found {kinds[:12]}...")
        for i, ((kind, module, hyper), layer) in enumerate(zip(expected, net.layers, strict=True)):
            ctx = f"{where}: layer {i} at byte {layer.offset} ({layer.describe()})"
            if layer.kind != kind:
                raise DlibFormatError(f"{ctx}: expected a {kind} layer")
            for key, value in hyper.items():
                if tuple(layer.attrs[key]) != tuple(value):
                    raise DlibFormatError(f"{ctx}: {key} {layer.attrs[key]}, expected {value}")
            if kind == "con":
                assert isinstance(module, nn.Conv2d)
                w = layer.attrs["weight"]
                if tuple(w.shape) != tuple(module.weight.shape):
                    raise DlibFormatError(f"{ctx}: filters {w.shape}, expected {tuple(module.weight.shape)}")
                if tuple(layer.attrs["stride"]) != tuple(module.stride) or \
                        tuple(layer.attrs["padding"]) != tuple(module.padding):
                    raise DlibFormatError(f"{ctx}: stride/padding differ from stride {module.stride}, "
                                          f"padding {module.padding}")
                module.weight.copy_(torch.from_numpy(w.copy()))
                if module.bias is not None:
                    b = layer.attrs["bias"]
                    module.bias.copy_(torch.from_numpy(b.copy()) if b is not None else torch.zeros_like(module.bias))
            elif kind == "affine":
                assert isinstance(module, Affine)
                g, b = layer.attrs["gamma"].ravel(), layer.attrs["beta"].ravel()
                if layer.attrs["mode"] != 0 or g.size != module.weight.numel():
                    raise DlibFormatError(f"{ctx}: expected a per-channel affine of {module.weight.numel()} channels")
                module.weight.copy_(torch.from_numpy(g.copy()))
                module.bias.copy_(torch.from_numpy(b.copy()))
            elif kind == "fc":
                assert isinstance(module, nn.Linear)
                w = layer.attrs["weight"]  # (in, out)
                if w.shape != (module.in_features, module.out_features) or layer.attrs["bias"] is not None:
                    raise DlibFormatError(f"{ctx}: expected fc_no_bias {module.in_features}->{module.out_features}")
                module.weight.copy_(torch.from_numpy(w.T.copy()))
            elif kind == "relu" and layer.attrs.get("disabled"):
                raise DlibFormatError(f"{ctx}: disabled relu layers are not supported")
        mean = net.input["mean_rgb"]
        if not np.allclose(mean, DLIB_MEAN_RGB, atol=1e-3) or tuple(net.input["size"]) != (INPUT_SIZE, INPUT_SIZE):
            raise DlibFormatError(f"{where}: input layer mean {mean} / size {net.input['size']} differ from "
                                  f"{DLIB_MEAN_RGB} / {INPUT_SIZE}")

    def init_random(self, seed: int = 0) -> None:
        """Seeded He initialisation (only when ``weights: random`` is asked for explicitly)."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                    if getattr(m, "bias", None) is not None:
                        m.bias.zero_()
                elif isinstance(m, Affine):
                    m.weight.fill_(1.0)
                    m.bias.zero_()


# ============================================================================================== weights
def default_model_path() -> Path:
    """The pretrained .dat shipped by the ``face_recognition_models`` pip package, found by path.

    The package is not imported (its ``__init__`` needs ``pkg_resources``); only its location is looked up.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "no pretrained weights for dlib_resnet: the pip package 'face-recognition-models' is not installed "
            f"(pip install face-recognition-models), or set backbones.dlib_resnet.weights to a path to "
            f"{DLIB_MODEL_FILE} or to a .pth/.safetensors state dict (see {DOCS})")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / DLIB_MODEL_FILE
    if not path.is_file():
        raise WeightsError(f"no pretrained weights for dlib_resnet: {path} is missing from the "
                           "face-recognition-models package; reinstall it or give a path to the .dat")
    return path


def load_trunk(weights: str | Path = "pretrained", *, seed: int = 0,
               key_map: KeyMap | None = None) -> tuple[DlibResNetTrunk, str, str]:
    """The trunk with its weights, a tag naming where they came from and their sha256.

    ``weights``: ``pretrained`` (the .dat of face-recognition-models), ``random`` (seeded; sha256 is
    ``random:seed=<n>``), a path to a dlib ``.dat``, or a path to a ``.pth``/``.pt``/``.safetensors`` state dict
    of :class:`DlibResNetTrunk` (keys like ``stem.conv.weight``, ``level3.0.aff1.weight``, ``fc.weight``; a
    ``trunk.`` prefix is accepted; ``key_map`` renames other key names).
    """
    trunk = DlibResNetTrunk()
    if str(weights) == "random":
        trunk.init_random(seed)
        return trunk.eval(), "random", random_tag(seed)
    pretrained = str(weights) == "pretrained"
    path = default_model_path() if pretrained else Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"dlib_resnet weights file {path} does not exist (weights: {str(weights)!r}; use "
                           f"'pretrained', 'random', or a path to a .dat/.pth/.safetensors file; see {DOCS})")
    if path.suffix == ".dat":
        trunk.load_dlib(read_dlib_dnn(path))
    else:
        sd = apply_key_map(load_state_dict_file(path), key_map)
        sd = {k.removeprefix("trunk."): v for k, v in sd.items()}
        load_into(trunk, sd, name="dlib_resnet", source=f"file {path}")
    tag = f"pretrained:face_recognition_models:{DLIB_MODEL_FILE}" if pretrained else str(path)
    return trunk.eval(), tag, file_sha256(path)


# ====================================================================================== the Backbone view
def _spec(name: str) -> BackboneSpec:
    dim, what = LAYERS[name]
    return BackboneSpec(
        name=name, family="dlib", layer=what, feature_dim=dim, input_size=INPUT_SIZE, mean=MEAN, std=STD,
        pretrained="package",
        notes="dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1.dat of face-recognition-models); "
              "input: 150x150 RGB chips aligned like dlib.get_face_chip; normalisation (pixel - mean_rgb) / 256",
        extra={"mean_rgb_255": DLIB_MEAN_RGB, "scale": DLIB_SCALE},
    )


SPECS: dict[str, BackboneSpec] = {name: _spec(name) for name in LAYERS}


def _split(t: DlibResNetTrunk, layer: str) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    stages = [t.stem, t.level4, t.level3, t.level2, t.level1]
    if layer == "dlib_resnet":
        return nn.Sequential(*stages, t.level0, pool), nn.Sequential(t.fc), nn.Sequential()
    if layer == "dlib_resnet.pool":
        return nn.Sequential(*stages, t.level0, pool), nn.Sequential(), nn.Sequential(t.fc)
    if layer == "dlib_resnet.level1":
        return (nn.Sequential(*stages, nn.Flatten(1)), nn.Sequential(),
                nn.Sequential(nn.Unflatten(1, (256, 4, 4)), t.level0, pool, t.fc))
    raise BackboneError(f"unknown dlib_resnet layer {layer!r}; expected one of {list(LAYERS)}")


class DlibResNet(Backbone):
    """dlib's face ResNet with the Backbone interface of docs/DESIGN.md for one feature layer.

    ``body`` is a ``nn.Sequential`` of the trunk's stages (``stem, level4, level3, level2, level1[, level0]``, so
    that ``body[:k]`` can be frozen) ending in a pool or flatten; ``fc`` holds the layers up to and including the
    feature layer; ``tail`` the rest up to the 128-D descriptor (the network's original output, which ``forward``
    returns for every layer). All share the trunk's parameters.
    """

    def __init__(self, trunk: DlibResNetTrunk, layer: str = "dlib_resnet", *, weights: str = "random",
                 weights_sha256: str | None = None, spec: BackboneSpec | None = None):
        body, fc, tail = _split(trunk, layer)
        super().__init__(spec or SPECS[layer], body, fc, tail, weights=weights, weights_sha256=weights_sha256)
        self.layer = layer
        self._trunk = (trunk,)  # a plain reference: its modules are registered through body/fc/tail

    @property
    def trunk(self) -> DlibResNetTrunk:
        """The whole network (parameters shared with ``body``/``fc``/``tail``)."""
        return self._trunk[0]

    @property
    def feature_dim(self) -> int:
        return LAYERS[self.layer][0]


def preprocess_uint8(images: np.ndarray | Tensor, device: str | torch.device = "cpu") -> Tensor:
    """dlib's input layer on (B, 150, 150, 3) uint8 RGB chips: ``(x - mean_rgb) / 256``, NCHW float32,
    channels-last (equal to the registry's ``preprocess(SPECS[...], images)`` up to float rounding)."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected (B, H, W, 3) uint8 RGB images, got {tuple(x.shape)} {x.dtype}")
    if tuple(x.shape[1:3]) != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"dlib_resnet needs {INPUT_SIZE}x{INPUT_SIZE} chips, got {tuple(x.shape[1:3])}")
    x = x.to(device).permute(0, 3, 1, 2).float()
    mean = torch.tensor(DLIB_MEAN_RGB, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / DLIB_SCALE).contiguous(memory_format=torch.channels_last)


def build(layer: str = "dlib_resnet", weights: str | Path = "pretrained", *, seed: int = 0,
          key_map: KeyMap | None = None) -> DlibResNet:
    """A :class:`DlibResNet` for one of :data:`LAYERS` with ``weights`` (see :func:`load_trunk`).

    A state dict saved from a :class:`DlibResNet` of the same layer (keys ``body.*``, ``fc.*``, ``tail.*``, e.g.
    after fine-tuning) loads too.
    """
    if layer not in LAYERS:
        raise BackboneError(f"unknown dlib_resnet layer {layer!r}; expected one of {list(LAYERS)}")
    w = str(weights)
    if w not in ("pretrained", "random") and Path(w).suffix != ".dat":
        sd = load_state_dict_file(w)
        if any(k.startswith("body.") for k in sd):
            model = DlibResNet(DlibResNetTrunk(), layer, weights=w, weights_sha256=file_sha256(w))
            load_into(model, sd, name=layer, source=f"file {w}")
            return model.eval()
    trunk, tag, sha = load_trunk(weights, seed=seed, key_map=key_map)
    return DlibResNet(trunk, layer, weights=tag, weights_sha256=sha).eval()


def _builder(layer: str):
    def builder(weights: str, *, key_map: KeyMap | str | None = None, seed: int = 0) -> DlibResNet:
        if isinstance(key_map, str):
            raise WeightsError(f"{layer}: no built-in key map {key_map!r}; give a {{regex: replacement}} mapping")
        return build(layer, weights, seed=seed, key_map=key_map)

    return builder


for _name in LAYERS:
    register_backbone(_name, SPECS[_name], _builder(_name), overwrite=True)
