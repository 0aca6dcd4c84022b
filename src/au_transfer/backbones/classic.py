"""The paper's networks (Section II, Table I) and a wrapper for any timm model, registered on import.

alexnet, vgg16, googlenet, resnet50, resnet152 come from torchvision (hub weights: the ``IMAGENET1K_V1`` enums,
i.e. the original releases); zfnet, cnn_f, cnn_m, cnn_s are built here exactly as described (Section II-B, Table I);
vgg_face is VGG-16 with a 2622-way output. Networks without hub weights need a local file or ``weights: random``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAW255_STD,
    Backbone,
    BackboneSpec,
    Builder,
    register_backbone,
)
from .weights import (
    DOCS,
    KeyMap,
    WeightsError,
    apply_key_map,
    file_sha256,
    hub_checkpoint_path,
    hub_error,
    load_into,
    load_state_dict_file,
    load_weights_file,
    random_tag,
    release_spec,
    state_dict_sha256,
)

log = logging.getLogger(__name__)

#: ImageNet mean pixel on the 0-255 scale (caffe / MatConvNet / Cadene's conversions), as a [0, 1] mean.
CAFFE_IMAGENET_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
#: VGG-Face mean pixel (RGB, 0-255) of the released model (Parkhi et al.; MatConvNet / Albanie's conversion).
VGG_FACE_MEAN = (129.186279296875 / 255, 104.76238250732422 / 255, 93.59396362304688 / 255)


# ------------------------------------------------------------------------------------------------- key maps
def _vgg_face_caffe_map(flip_bgr: bool) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``conv{b}_{i}`` / ``fc{6,7,8}`` (caffe and MatConvNet names) -> torchvision VGG-16 keys."""
    conv_idx = {"1_1": 0, "1_2": 2, "2_1": 5, "2_2": 7, "3_1": 10, "3_2": 12, "3_3": 14, "4_1": 17, "4_2": 19,
                "4_3": 21, "5_1": 24, "5_2": 26, "5_3": 28}
    rules = {rf"^conv{k}\.": f"features.{v}." for k, v in conv_idx.items()}
    rules.update({r"^fc6\.": "classifier.0.", r"^fc7\.": "classifier.3.", r"^fc8\.": "classifier.6."})

    def mapping(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = apply_key_map(sd, rules)
        if flip_bgr and "features.0.weight" in out:
            out["features.0.weight"] = out["features.0.weight"].flip(1)
        return out

    return mapping


def _cadene_vggm_map(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cadene's ``vggm`` port of MatConvNet's imagenet-vgg-m (``features.N`` / ``classif.N``, BGR) -> cnn_m keys."""
    rules = {r"^features\.0\.": "conv1.", r"^features\.4\.": "conv2.", r"^features\.8\.": "conv3.",
             r"^features\.10\.": "conv4.", r"^features\.12\.": "conv5.", r"^classif\.0\.": "fc6.",
             r"^classif\.3\.": "fc7.", r"^classif\.6\.": "fc8."}
    out = apply_key_map(sd, rules)
    if "conv1.weight" in out:
        out["conv1.weight"] = out["conv1.weight"].flip(1)  # BGR input -> RGB input
    return out


#: Built-in key maps, by name (``backbones.<name>.key_map`` in the config). ``matconvnet`` is the identity: the
#: native key names of zfnet / cnn_f / cnn_m / cnn_s already are MatConvNet's (``conv1``…``conv5``, ``fc6``…``fc8``).
KEY_MAPS: dict[str, KeyMap] = {
    "vgg_face_caffe": _vgg_face_caffe_map(flip_bgr=False),
    "vgg_face_caffe_bgr": _vgg_face_caffe_map(flip_bgr=True),
    "cadene_vggm": _cadene_vggm_map,
    "matconvnet": {},
}


def resolve_key_map(key_map: KeyMap | str | None) -> KeyMap | None:
    """A key map given by name (see :data:`KEY_MAPS`), mapping or callable."""
    if isinstance(key_map, str):
        if key_map not in KEY_MAPS:
            raise WeightsError(f"unknown key_map {key_map!r}; built-in maps: {sorted(KEY_MAPS)}")
        return KEY_MAPS[key_map]
    return key_map


def _is_backbone_state_dict(sd: dict[str, torch.Tensor]) -> bool:
    return bool(sd) and all(k.split(".", 1)[0] in ("body", "fc", "tail") for k in sd)


# ----------------------------------------------------------------------------------------- generic builder
Split = Callable[[nn.Module], tuple[nn.Module, nn.Sequential, nn.Sequential]]


def native_builder(spec: BackboneSpec, make: Callable[[], nn.Module], split: Split,
                   hub: Callable[[], Any] | None = None, drop_keys: Sequence[str] = ()) -> Builder:
    """A builder for a network defined by a "native" module (torchvision's or ours) and a split into body/fc/tail.

    Weight files may hold the native module's keys (renamed by ``key_map`` or one of ``spec.key_maps`` tried
    automatically) or a whole :class:`Backbone`'s (``body.``/``fc.``/``tail.``). ``hub`` returns a torchvision
    weights enum; ``drop_keys`` are prefixes of checkpoint keys the native module does not have (aux heads).
    """

    def drop(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in sd.items() if not any(k.startswith(p) for p in drop_keys)}

    def build(weights: str, *, key_map: KeyMap | str | None = None, seed: int = 0) -> Backbone:
        if weights == "pretrained" and hub is None:
            raise WeightsError(
                f"no pretrained weights for {spec.name}: torchvision/timm do not ship them; set "
                f"backbones.{spec.name}.weights: /path/to/{spec.name}.pth (see {DOCS}), or "
                f"backbones.{spec.name}.weights: random for a random-feature baseline"
            )
        native = make()
        backbone_sd = None
        used = spec
        if weights == "random":
            tag, sha = "random", random_tag(seed)
        elif weights == "pretrained":
            assert hub is not None
            enum = hub()
            try:
                sd = enum.get_state_dict(progress=False, check_hash=True)
            except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, hash mismatch, ...
                raise hub_error(spec.name, enum.url, exc) from exc
            sd = drop(sd)
            load_into(native, sd, name=spec.name, source=f"from {enum.url}")
            path = hub_checkpoint_path(enum.url)
            sha = file_sha256(path) if path.is_file() else state_dict_sha256(sd)
            tag = f"pretrained:torchvision:{enum}"
        else:
            sd, meta = load_weights_file(weights)  # meta: a converted release's record (its normalisation)
            used = release_spec(spec, meta, f"file {weights}")
            if _is_backbone_state_dict(sd):
                backbone_sd = sd
            else:
                sd = _map_keys(sd, native, key_map, spec)
                load_into(native, drop(sd), name=spec.name, source=f"file {weights}")
            tag, sha = weights, file_sha256(weights)
        body, fc, tail = split(native)
        net = Backbone(used, body, fc, tail, weights=tag, weights_sha256=sha)
        if backbone_sd is not None:
            load_into(net, backbone_sd, name=spec.name, source=f"file {weights}")
        return net

    build.native = make  # type: ignore[attr-defined]  # the native module's factory (au-transfer convert-weights)
    build.hub = hub  # type: ignore[attr-defined]  # its torchvision weights enum, if any (au-transfer weights fetch)
    return build


def _map_keys(sd: dict[str, torch.Tensor], native: nn.Module, key_map: KeyMap | str | None,
              spec: BackboneSpec) -> dict[str, torch.Tensor]:
    km = resolve_key_map(key_map)
    if km is not None:
        return apply_key_map(sd, km)
    target = set(native.state_dict())
    if set(sd) == target:
        return sd
    for name in spec.key_maps:  # a known conversion's names: use the first map that fits exactly
        mapped = apply_key_map(sd, KEY_MAPS[name])
        if set(mapped) == target:
            log.info("%s: weights use %s key names; mapped them", spec.name, name)
            return mapped
    return sd


def _seq(items: Sequence[tuple[str, nn.Module]]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(items))


# --------------------------------------------------------------------------------- torchvision networks
def _split_alexnet(m: nn.Module) -> tuple[nn.Module, nn.Sequential, nn.Sequential]:
    c = m.classifier  # Dropout, Linear(9216,4096)=fc6, ReLU, Dropout, Linear=fc7, ReLU, Linear=fc8
    body = _seq([("features", m.features), ("avgpool", m.avgpool), ("flatten", nn.Flatten(1))])
    return body, _seq([("drop6", c[0]), ("fc6", c[1]), ("relu6", c[2])]), \
        _seq([("drop7", c[3]), ("fc7", c[4]), ("relu7", c[5]), ("fc8", c[6])])


def _split_vgg(m: nn.Module) -> tuple[nn.Module, nn.Sequential, nn.Sequential]:
    c = m.classifier  # Linear=fc6, ReLU, Dropout, Linear=fc7, ReLU, Dropout, Linear=fc8
    body = _seq([("features", m.features), ("avgpool", m.avgpool), ("flatten", nn.Flatten(1))])
    return body, _seq([("fc6", c[0]), ("relu6", c[1])]), \
        _seq([("drop6", c[2]), ("fc7", c[3]), ("relu7", c[4]), ("drop7", c[5]), ("fc8", c[6])])


def _split_googlenet(m: nn.Module) -> tuple[nn.Module, nn.Sequential, nn.Sequential]:
    names = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
             "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
             "inception5a", "inception5b", "avgpool"]
    body = _seq([(n, getattr(m, n)) for n in names] + [("flatten", nn.Flatten(1))])
    return body, nn.Sequential(), _seq([("dropout", m.dropout), ("fc", m.fc)])


def _split_resnet(m: nn.Module) -> tuple[nn.Module, nn.Sequential, nn.Sequential]:
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
    body = _seq([(n, getattr(m, n)) for n in names] + [("flatten", nn.Flatten(1))])
    return body, nn.Sequential(), _seq([("fc", m.fc)])


def _tv(fn_name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, fn_name)(weights=None, **kwargs)

    return make


def _tv_weights(enum_name: str, member: str = "IMAGENET1K_V1") -> Callable[[], Any]:
    def hub() -> Any:
        import torchvision.models as tvm

        return getattr(getattr(tvm, enum_name), member)

    return hub


# ------------------------------------------------------------------------------ Table I and ZFNet networks
@dataclass(frozen=True)
class ConvBlock:
    """One convolutional block: ``filters x k x k``, stride, pad, LRN, then max pooling ``pool`` (size, stride)."""

    filters: int
    kernel: int
    stride: int
    pad: int
    lrn: bool = False
    pool: tuple[int, int] | None = None
    pool_ceil: bool = True        # caffe / MatConvNet round pooled sizes up
    lrn_after_pool: bool = False  # ZFNet: pool, then contrast normalisation


#: Paper Table I (Chatfield et al. 2014). "x2 pool" / "x3 pool" is the downsampling factor: 3x3 windows with
#: stride 2 or 3 as in the released MatConvNet models, except CNN-S's pool2 (2x2, stride 2). The output sizes for a
#: 224 input are 6x6 after conv5 in all three, as the released fc6 layers (6x6 "convolutions") need.
TABLE_I: dict[str, tuple[ConvBlock, ...]] = {
    "cnn_f": (ConvBlock(64, 11, 4, 0, lrn=True, pool=(3, 2)), ConvBlock(256, 5, 1, 2, lrn=True, pool=(3, 2)),
              ConvBlock(256, 3, 1, 1), ConvBlock(256, 3, 1, 1), ConvBlock(256, 3, 1, 1, pool=(3, 2))),
    "cnn_m": (ConvBlock(96, 7, 2, 0, lrn=True, pool=(3, 2)), ConvBlock(256, 5, 2, 1, lrn=True, pool=(3, 2)),
              ConvBlock(512, 3, 1, 1), ConvBlock(512, 3, 1, 1), ConvBlock(512, 3, 1, 1, pool=(3, 2))),
    "cnn_s": (ConvBlock(96, 7, 2, 0, lrn=True, pool=(3, 3)), ConvBlock(256, 5, 1, 1, pool=(2, 2), pool_ceil=False),
              ConvBlock(512, 3, 1, 1), ConvBlock(512, 3, 1, 1), ConvBlock(512, 3, 1, 1, pool=(3, 3))),
}
#: ZFNet (Zeiler & Fergus 2014; paper II-B): AlexNet with conv1 7x7 stride 2 and conv3-5 of 512, 1024, 512 filters.
ZFNET: tuple[ConvBlock, ...] = (
    ConvBlock(96, 7, 2, 1, lrn=True, pool=(3, 2), lrn_after_pool=True),
    ConvBlock(256, 5, 2, 0, lrn=True, pool=(3, 2), lrn_after_pool=True),
    ConvBlock(512, 3, 1, 1), ConvBlock(1024, 3, 1, 1), ConvBlock(512, 3, 1, 1, pool=(3, 2)),
)


class CrossChannelLRN(nn.LocalResponseNorm):
    """:class:`torch.nn.LocalResponseNorm` with a faster forward pass for 4-D float32 / float64 inputs.

    PyTorch computes the sum of squares over each window of channels with a 3-D average pooling of a padded copy,
    which on a CPU took a third of CNN-F's forward pass. Here the window is summed as ``size`` shifted channel slices
    of the padded squares, added in the pooling's order (first channel of the window first) and divided by ``size``
    as it does, so the values and the gradients are bit for bit PyTorch's (tests/test_backbones.py), in about half
    the time (bench/features.py). Other inputs (half precision under autocast, where the pooling accumulates in
    float32; 3-D or 5-D tensors) take PyTorch's own path."""

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() != 4 or input.dtype not in (torch.float32, torch.float64) or input.numel() == 0:
            return super().forward(input)
        size, channels = self.size, input.shape[1]
        squares = F.pad(input.mul(input), (0, 0, 0, 0, size // 2, (size - 1) // 2))
        window = squares[:, 0:channels].clone()
        for j in range(1, size):
            window.add_(squares[:, j:j + channels])
        # in place up to the power (whose backward needs its input), as F.local_response_norm computes it
        return input / window.div_(size).mul_(self.alpha).add_(self.k).pow(self.beta)


class ChannelsLastMaxPool2d(nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` that pools a 4-D CPU tensor in channels-last order when no gradient is recorded.

    PyTorch's CPU max pooling of channels-first (NCHW) tensors is slow: for CNN-F's pools (batch 64) the copy to
    channels-last, the pooling there and the copy back take 30-70 % less time than pooling in place. A maximum is
    exact, so the values are the same bit for bit; with autograd (fine-tuning), where the indices of tied maxima
    would decide which input gets the gradient, it pools as PyTorch does."""

    def forward(self, input: Tensor) -> Tensor:
        if (input.dim() != 4 or input.device.type != "cpu" or self.return_indices
                or (torch.is_grad_enabled() and input.requires_grad)):
            return super().forward(input)
        out = super().forward(input.contiguous(memory_format=torch.channels_last))
        return out.contiguous(memory_format=torch.contiguous_format if input.is_contiguous() else torch.channels_last)


def lrn() -> nn.LocalResponseNorm:
    """Cross-channel LRN of AlexNet / MatConvNet: 5 channels, alpha 1e-4 per channel (5e-4 / 5), beta 0.75, k 2."""
    return CrossChannelLRN(5, alpha=5e-4, beta=0.75, k=2.0)


def conv_stack(blocks: Sequence[ConvBlock], input_size: int = 224, num_classes: int = 1000,
               hidden: int = 4096) -> nn.Sequential:
    """A flat network named like MatConvNet (``conv1``…``conv5``, ``fc6``…``fc8``): conv blocks, then 3 FC layers."""
    layers: list[tuple[str, nn.Module]] = []
    ch, size = 3, input_size
    for i, b in enumerate(blocks, 1):
        layers += [(f"conv{i}", nn.Conv2d(ch, b.filters, b.kernel, b.stride, b.pad)), (f"relu{i}", nn.ReLU(inplace=True))]
        ch = b.filters
        size = (size + 2 * b.pad - b.kernel) // b.stride + 1
        if b.lrn and not b.lrn_after_pool:
            layers.append((f"norm{i}", lrn()))
        if b.pool:
            k, s = b.pool
            layers.append((f"pool{i}", ChannelsLastMaxPool2d(k, s, ceil_mode=b.pool_ceil)))
            size = (-(-(size - k) // s) if b.pool_ceil else (size - k) // s) + 1
        if b.lrn and b.lrn_after_pool:
            layers.append((f"norm{i}", lrn()))
    layers += [
        ("flatten", nn.Flatten(1)),
        ("fc6", nn.Linear(ch * size * size, hidden)), ("relu6", nn.ReLU(inplace=True)), ("drop6", nn.Dropout(0.5)),
        ("fc7", nn.Linear(hidden, hidden)), ("relu7", nn.ReLU(inplace=True)), ("drop7", nn.Dropout(0.5)),
        ("fc8", nn.Linear(hidden, num_classes)),
    ]
    return _seq(layers)


def _split_flat(m: nn.Module) -> tuple[nn.Module, nn.Sequential, nn.Sequential]:
    items = list(m.named_children())
    names = [n for n, _ in items]
    a, b = names.index("fc6"), names.index("relu6") + 1
    return _seq(items[:a]), _seq(items[a:b]), _seq(items[b:])


# ------------------------------------------------------------------------------------------------- registry
def _register(spec: BackboneSpec, make: Callable[[], nn.Module], split: Split,
              hub: Callable[[], Any] | None = None, drop_keys: Sequence[str] = ()) -> None:
    register_backbone(spec.name, spec, native_builder(spec, make, split, hub, drop_keys), overwrite=True)


_register(BackboneSpec("alexnet", "alexnet", "fc6 (after ReLU)", 4096, 224,
                       notes="torchvision's one-GPU AlexNet; Table V lists 2048, but fc6 is 4096 wide"),
          _tv("alexnet"), _split_alexnet, _tv_weights("AlexNet_Weights"))
_register(BackboneSpec("zfnet", "zfnet", "fc6 (after ReLU)", 4096, 224, CAFFE_IMAGENET_MEAN, RAW255_STD,
                       pretrained="none", key_maps=("matconvnet",)),
          lambda: conv_stack(ZFNET), _split_flat)
_register(BackboneSpec("vgg16", "vgg", "fc6 (after ReLU)", 4096, 224),
          _tv("vgg16"), _split_vgg, _tv_weights("VGG16_Weights"))
_register(BackboneSpec("vgg_face", "vgg", "fc6 (after ReLU)", 4096, 224, VGG_FACE_MEAN, RAW255_STD,
                       pretrained="none", mean_image=True, key_maps=("vgg_face_caffe",),
                       notes="VGG-16 with a 2622-way output (Parkhi et al. 2015)"),
          _tv("vgg16", num_classes=2622), _split_vgg)
for _name in ("cnn_f", "cnn_m", "cnn_s"):
    _register(BackboneSpec(_name, "cnn", "fc6 (after ReLU)", 4096, 224, CAFFE_IMAGENET_MEAN, RAW255_STD,
                           pretrained="none",
                           key_maps=("matconvnet", "cadene_vggm") if _name == "cnn_m" else ("matconvnet",),
                           notes="paper Table I (Chatfield et al. 2014)"),
              (lambda blocks=TABLE_I[_name]: conv_stack(blocks)), _split_flat)
_register(BackboneSpec("googlenet", "googlenet", "pool5 (global average, 1024)", 1024, 224, (0.5, 0.5, 0.5),
                       (0.5, 0.5, 0.5), notes="torchvision weights expect (x-0.5)/0.5 (its transform_input)"),
          _tv("googlenet", aux_logits=False, transform_input=False, init_weights=True), _split_googlenet,
          _tv_weights("GoogLeNet_Weights"), drop_keys=("aux1.", "aux2."))
_register(BackboneSpec("resnet50", "resnet", "avgpool (global average, 2048)", 2048, 224),
          _tv("resnet50"), _split_resnet, _tv_weights("ResNet50_Weights"))
_register(BackboneSpec("resnet152", "resnet", "avgpool (global average, 2048)", 2048, 224),
          _tv("resnet152"), _split_resnet, _tv_weights("ResNet152_Weights"))


# ------------------------------------------------------------------------------------------------------ timm
class TimmBody(nn.Module):
    """A timm model up to its pooled pre-logits vector (``forward_head(..., pre_logits=True)``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _timm_dim(model: nn.Module) -> int:
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def timm_layer(model: nn.Module) -> str:
    """What ``forward_head(..., pre_logits=True)`` of a timm model returns, in words (its pooling)."""
    pool = getattr(model, "global_pool", None)
    if not isinstance(pool, str):  # CNNs: a pooling module
        return "pre-logits (pooled)"
    fc_norm = not isinstance(getattr(model, "fc_norm", None), (nn.Identity, type(None)))
    if pool == "token":
        return "pre-logits: class token after the final norm"
    if pool in ("avg", "avgmax", "max"):
        return f"pre-logits: {pool} of the patch tokens" + (", then fc_norm" if fc_norm else " after the final norm")
    if pool == "map":
        return "pre-logits: attention pooling of the tokens"
    return f"pre-logits (global_pool={pool!r})"


def timm_spec(tname: str) -> BackboneSpec:
    """The spec of a timm model: input size, mean and std from its ``pretrained_cfg`` (the tag's, e.g.
    ``vit_base_patch14_dinov2.lvd142m``: 518 px), the feature from its pre-logits (:func:`timm_layer`)."""
    import timm

    try:
        with torch.device("meta"):
            model = timm.create_model(tname, pretrained=False)
    except Exception:  # noqa: BLE001 - some models cannot be built on the meta device
        model = timm.create_model(tname, pretrained=False)
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    return BackboneSpec(tname, "timm", timm_layer(model), _timm_dim(model), size, mean, std,  # type: ignore[arg-type]
                        pretrained="timm", extra={"timm_name": tname, "hf_hub_id": cfg.get("hf_hub_id") or "",
                                                  "url": cfg.get("url") or ""})


def timm_builder(tname: str) -> Builder:
    """A builder for the timm model ``tname`` (weights from the timm / Hugging Face hub, a file, or random)."""

    def build(weights: str, *, key_map: KeyMap | str | None = None, seed: int = 0) -> Backbone:
        import timm

        spec = timm_spec(tname)
        if weights == "pretrained":
            try:
                model = timm.create_model(tname, pretrained=True)
            except Exception as exc:  # noqa: BLE001 - HF hub / URL errors when offline
                raise hub_error(tname, None, exc) from exc
            cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
            tag = f"pretrained:timm:{cfg.get('hf_hub_id') or cfg.get('url') or tname}"
            sha = state_dict_sha256(model.state_dict())
            return wrap_timm(model, spec, weights, name=tname, tag=tag, sha=sha)
        return wrap_timm(timm.create_model(tname, pretrained=False), spec, weights, name=tname, key_map=key_map,
                         seed=seed)

    return build


def wrap_timm(model: nn.Module, spec: BackboneSpec, weights: str, *, name: str, key_map: KeyMap | str | None = None,
              default_key_map: KeyMap | None = None, seed: int = 0, tag: str | None = None, sha: str | None = None,
              keep_head: bool = True) -> Backbone:
    """The timm ``model`` as a :class:`Backbone` (its classifier, if ``keep_head``, as the tail). Weights already in
    ``model`` when ``tag``/``sha`` are given (the hub); else ``weights`` is ``random`` (seeded tag) or a file: a
    whole Backbone state dict (loaded after wrapping), or the model's keys through ``key_map`` (default
    ``default_key_map``)."""
    backbone_sd = None
    if tag is None:
        if weights == "random":
            tag, sha = "random", random_tag(seed)
        else:
            sd = load_state_dict_file(weights)
            if _is_backbone_state_dict(sd):
                backbone_sd = sd
            else:
                km = resolve_key_map(key_map) if key_map is not None else default_key_map
                load_into(model, apply_key_map(sd, km) if km is not None else sd, name=name,
                          source=f"file {weights}")
            tag, sha = weights, file_sha256(weights)
    head = model.get_classifier()
    tail = _seq([("head", head)]) if keep_head and isinstance(head, nn.Module) else nn.Sequential()
    model.reset_classifier(0)
    net = Backbone(spec, TimmBody(model), nn.Sequential(), tail, weights=tag, weights_sha256=sha)
    if backbone_sd is not None:
        load_into(net, backbone_sd, name=name, source=f"file {weights}")
    return net
