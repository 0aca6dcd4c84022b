"""The backbone registry: a name gives the network, its feature layer, its input size and its preprocessing.

In the spirit of ``timm.create_model``::

    spec = get_spec("vgg_face")                     # input_size, mean/std, feature_dim, layer, family
    net = create_backbone("resnet152")              # torchvision hub weights (needs network or the hub cache)
    net = create_backbone("cnn_f", "random", seed=0)   # explicit random initialisation
    net = create_backbone("vgg_face", "/models/vgg_face_dag.pth", key_map="vgg_face_caffe")
    net = create_backbone("convnext_tiny")          # any timm model (also "timm:resnet18" / "timm.resnet18")

The feature is the paper's (IV-B): the first fully connected layer after the convolutional blocks, after its ReLU
(fc6 of AlexNet, ZFNet, VGG, CNN-F/M/S) or the pooled vector (GoogLeNet, ResNet, timm models).
Other modules register their own networks with :func:`register_backbone` (``dlib_resnet``, ``mtcnn_onet``, the face
foundation ViTs ``fmae_vit_*`` / ``farl_vit_b16`` of :mod:`~au_transfer.backbones.foundation` are
imported lazily on first use). The spec, the :class:`Backbone` wrapper and the table of registered networks live in
:mod:`au_transfer.backbones.base`, which the network modules import; this module imports them, never the reverse.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import (
    _REGISTRY,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAW255_STD,
    Backbone,
    BackboneError,
    BackboneSpec,
    Builder,
    register_backbone,
)
from .weights import KeyMap, WeightsError

log = logging.getLogger(__name__)

#: Backbones that register themselves when their module is imported (written by other stages).
_LAZY: dict[str, str] = {
    "dlib_resnet": "au_transfer.backbones.dlib_resnet",
    "mtcnn_onet": "au_transfer.backbones.mtcnn_onet",
    "fmae_vit_s": "au_transfer.backbones.foundation",
    "fmae_vit_b": "au_transfer.backbones.foundation",
    "fmae_vit_l": "au_transfer.backbones.foundation",
    "farl_vit_b16": "au_transfer.backbones.foundation",
}
_TIMM_PREFIXES = ("timm:", "timm.")
_TIMM_SPECS: dict[str, BackboneSpec] = {}


def _ensure_classic() -> None:
    from . import classic  # noqa: F401  (registers the paper's networks on import)


def _lazy_module(name: str) -> str | None:
    """The module that registers ``name`` (also ``dlib_resnet.pool``-style variants of a lazy name)."""
    return _LAZY.get(name) or _LAZY.get(name.split(".", 1)[0])


def _load_lazy(name: str) -> None:
    module = _lazy_module(name)
    if module is None or name in _REGISTRY:
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise BackboneError(f"backbone {name!r} is not available: its module {module} is not installed") from exc
        raise
    if name not in _REGISTRY:
        raise BackboneError(f"module {module} did not register backbone {name!r}")


def _timm_name(name: str) -> str | None:
    """The timm model name that ``name`` refers to, or None."""
    for prefix in _TIMM_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    if name in _REGISTRY or _lazy_module(name):
        return None
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        return None
    base = name.split(".", 1)[0]
    return name if timm.is_model(base) else None


def list_backbones() -> list[str]:
    """Registered backbone names (plus the lazily registered ones). Any timm model name also works."""
    _ensure_classic()
    return sorted(set(_REGISTRY) | set(_LAZY))


def _resolve(name: str) -> tuple[BackboneSpec, Builder]:
    _ensure_classic()
    if _lazy_module(name):
        _load_lazy(name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    tname = _timm_name(name)
    if tname is not None:
        from .classic import timm_builder, timm_spec

        if name not in _TIMM_SPECS:
            _TIMM_SPECS[name] = replace(timm_spec(tname), name=name)
        return _TIMM_SPECS[name], timm_builder(tname)
    raise BackboneError(
        f"unknown backbone {name!r}: registered are {list_backbones()}; any timm model name also works "
        f"(e.g. 'resnet18', 'timm:resnet50')"
    )


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of a backbone name (registered, lazily registered, or a timm model)."""
    return _resolve(name)[0]


def create_backbone(name: str, weights: str | os.PathLike[str] = "pretrained", *, key_map: KeyMap | str | None = None,
                    seed: int = 0, checkpoint: str | os.PathLike[str] | None = None) -> Backbone:
    """Build a backbone in eval mode.

    ``weights``: ``"pretrained"`` (torchvision / timm hub, or the weights a package ships), ``"random"`` (seeded by
    ``seed``; only when asked for explicitly) or a path to a ``.pth`` / ``.safetensors`` state dict, in the native
    key names of the network or renamed by ``key_map`` (a built-in map's name, ``{regex: replacement}`` or a
    callable). ``checkpoint``: a state dict of the whole :class:`Backbone` (keys ``body.``, ``fc.``, ``tail.``),
    e.g. a fine-tuned network, loaded on top; its sha256 is then the one recorded. Missing weights raise
    :class:`~au_transfer.backbones.weights.WeightsError` saying how to provide them.
    """
    from .weights import file_sha256, load_into, load_state_dict_file

    spec, builder = _resolve(name)
    weights = str(weights)
    if weights not in ("pretrained", "random"):
        weights = os.fspath(os.path.expanduser(weights))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = builder(weights, key_map=key_map, seed=int(seed))
    if not isinstance(net, Backbone):
        raise TypeError(f"builder of backbone {name!r} returned {type(net).__name__}, not a Backbone")
    if net.spec.name != name:
        net.spec = replace(net.spec, name=name)
    if checkpoint is not None:
        sd = load_state_dict_file(checkpoint)
        load_into(net, sd, name=name, source=f"checkpoint {checkpoint}")
        net.weights = os.fspath(checkpoint)
        net.weights_sha256 = file_sha256(checkpoint)
    net.eval()
    return net


# ----------------------------------------------------------------------------------------------- preprocessing
@functools.lru_cache(maxsize=64)
def _mean_std_cached(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                     dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    # cached: building small tensors on a GPU from Python lists is a blocking copy on every batch otherwise
    with torch.inference_mode(False):  # normal tensors, usable later with autograd too
        return (torch.tensor(mean, device=device, dtype=dtype).view(1, 3, 1, 1),
                torch.tensor(std, device=device, dtype=dtype).view(1, 3, 1, 1))


def _mean_std_tensors(spec: BackboneSpec, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    return _mean_std_cached(tuple(spec.mean), tuple(spec.std), device, dtype)


def _check_mean_image(spec: BackboneSpec, shape: tuple[int, ...]) -> None:
    size = spec.input_size
    if tuple(shape) != (size, size, 3):
        raise ValueError(f"mean image of shape {tuple(shape)} does not fit {spec.name} input ({size}, {size}, 3)")


def release_mean_image(spec: BackboneSpec) -> np.ndarray | None:
    """The full mean image (S, S, 3, 0-255) of the release a network's weights were converted from
    (``au-transfer convert-weights``), which preprocessing subtracts when no other mean image is given; None when the
    release has a mean pixel only (then in ``spec.mean``)."""
    return spec.extra.get("average_image")


def preprocess(spec: BackboneSpec, images: np.ndarray | Tensor, device: str | torch.device = "cpu", *,
               mean_image: np.ndarray | Tensor | None = None, channels_last: bool = False,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """Turn a uint8 RGB batch (B, H, W, 3) into the network's input (B, 3, S, S).

    Resizes (bilinear, antialiased) when H or W differ from ``spec.input_size``, then ``(x / 255 - mean) / std``;
    with ``mean_image`` (S, S, 3) on the 0-255 scale, subtracts it instead of the per-channel mean (VGG-Face's
    "mean image of the training set", paper IV-A); without one, the release's mean image when the weights were
    converted from a release that has one (:func:`release_mean_image`). The uint8 batch is moved to ``device`` first (4x less traffic).
    """
    device = torch.device(device)
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"preprocess expects a (B, H, W, 3) RGB batch, got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"preprocess expects uint8 images, got {x.dtype}")
    # NHWC uint8 -> NCHW (cheap on bytes), then one float conversion and in-place affine normalisation
    x = x.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous().to(dtype)
    size = spec.input_size
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean, std = _mean_std_tensors(spec, device, dtype)
    if mean_image is None:
        mean_image = release_mean_image(spec)
    if mean_image is not None:
        mi = torch.as_tensor(mean_image, device=device, dtype=dtype)
        _check_mean_image(spec, tuple(mi.shape))
        x.sub_(mi.permute(2, 0, 1).unsqueeze(0)).mul_(1.0 / (std * 255.0))
    else:
        x.mul_(1.0 / (std * 255.0)).sub_(mean / std)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def preprocess_numpy(spec: BackboneSpec, images: np.ndarray, *, mean_image: np.ndarray | None = None) -> Tensor:
    """:func:`preprocess` on the CPU in float32, computed with NumPy: the same numbers bit for bit (the same
    float32 constants, and the same two IEEE operations per value in the same order), but on one thread with the
    GIL released, so a reading thread can normalise next to a network that uses every core (torch would start a
    second OpenMP team that competes with the network's). ``images``: uint8 (B, S, S, 3) at the network's input
    size (no resizing here); returns a contiguous (B, 3, S, S) tensor sharing the array's memory."""
    size = spec.input_size
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
        raise ValueError(f"preprocess_numpy expects uint8 ({size}, {size}, 3) images for {spec.name}, got "
                         f"{images.dtype} {images.shape}")
    mean, std = _mean_std_tensors(spec, torch.device("cpu"), torch.float32)
    scale = (1.0 / (std * 255.0)).numpy()
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # NHWC -> NCHW on bytes, as preprocess does
    if mean_image is None:
        mean_image = release_mean_image(spec)
    if mean_image is not None:
        mi = np.asarray(mean_image, dtype=np.float32)
        _check_mean_image(spec, mi.shape)
        out = np.subtract(x, mi.transpose(2, 0, 1)[None], dtype=np.float32)
        np.multiply(out, scale, out=out)
    else:
        out = np.multiply(x, scale, dtype=np.float32)
        np.subtract(out, (mean / std).numpy(), out=out)
    return torch.from_numpy(out)


__all__ = [
    "Backbone", "BackboneError", "BackboneSpec", "Builder", "IMAGENET_MEAN", "IMAGENET_STD", "RAW255_STD",
    "WeightsError", "create_backbone", "get_spec", "list_backbones", "preprocess", "preprocess_numpy",
    "register_backbone", "release_mean_image",
]
