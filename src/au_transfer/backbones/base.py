"""What every backbone module shares: the spec, the network wrapper and the table of registered backbones.

The network modules (:mod:`~au_transfer.backbones.classic`, :mod:`~au_transfer.backbones.dlib_resnet`,
:mod:`~au_transfer.backbones.mtcnn_onet`) register their networks here with :func:`register_backbone`;
:mod:`~au_transfer.backbones.registry` looks names up, importing those modules on first use. Imports go one
way: this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor, nn

#: torchvision's ImageNet normalisation, on the [0, 1] pixel scale.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Caffe / MatConvNet style: subtract a pixel mean on the [0, 255] scale, no scaling (std = 1/255 on [0, 1]).
RAW255_STD: tuple[float, float, float] = (1 / 255, 1 / 255, 1 / 255)


class BackboneError(KeyError):
    """Unknown backbone name or a backbone whose module is missing."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the toolkit needs to know about a backbone without building it.

    ``mean`` and ``std`` are per RGB channel on the [0, 1] scale: ``x = (pixel / 255 - mean) / std``. A caffe-style
    "subtract the mean pixel in 0-255" network has ``mean = m / 255`` and ``std = 1 / 255``.
    """

    name: str
    family: str                      # alexnet | zfnet | vgg | cnn | googlenet | resnet | timm | dlib | mtcnn | ...
    layer: str                       # the feature layer, e.g. "fc6 (after ReLU)"
    feature_dim: int
    input_size: int                  # square input side in pixels
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pretrained: str = "torchvision"  # where pretrained=... weights come from: torchvision | timm | package | none
    mean_image: bool = False         # the training-set mean image may replace `mean` (VGG-Face, paper IV-A)
    key_maps: tuple[str, ...] = ()   # names of built-in key maps for converted checkpoints
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class Backbone(nn.Module):
    """A network split at its feature layer: ``features(x) = fc(body(x))``, ``forward(x) = tail(features(x))``.

    ``body`` maps an image batch (B, 3, S, S), normalised as :func:`preprocess` does, to the flattened output of the
    convolutional blocks; ``fc`` holds the fully connected layers up to and including the feature layer and its
    ReLU (empty for networks whose feature is the pooled vector); ``tail`` is the rest, up to the original logits.
    """

    def __init__(self, spec: BackboneSpec, body: nn.Module, fc: nn.Sequential | None = None,
                 tail: nn.Sequential | None = None, *, weights: str = "random",
                 weights_sha256: str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.body = body
        self.fc = fc if fc is not None else nn.Sequential()
        self.tail = tail if tail is not None else nn.Sequential()
        self.weights = weights
        self.weights_sha256 = weights_sha256

    def features(self, x: Tensor) -> Tensor:
        """The paper's feature vector (B, feature_dim)."""
        return self.fc(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        """The original network's logits."""
        return self.tail(self.features(x))

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}, layer={self.spec.layer!r}, dim={self.spec.feature_dim}"


#: ``builder(weights, *, key_map, seed) -> Backbone``; ``weights`` is "pretrained", "random" or a file path.
Builder = Callable[..., Backbone]

#: name -> (spec, builder) of every registered backbone; :mod:`.registry` looks names up here.
_REGISTRY: dict[str, tuple[BackboneSpec, Builder]] = {}


def register_backbone(name: str, spec: BackboneSpec, builder: Builder, *, overwrite: bool = False) -> None:
    """Add a backbone to the registry (names: letters, digits, ``_`` and ``.``, as in the workflow's paths)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
        raise ValueError(f"backbone name {name!r} may hold only letters, digits, '_' and '.'")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"backbone {name!r} is already registered")
    if spec.name != name:
        spec = replace(spec, name=name)
    _REGISTRY[name] = (spec, builder)


__all__ = [
    "Backbone", "BackboneError", "BackboneSpec", "Builder", "IMAGENET_MEAN", "IMAGENET_STD", "RAW255_STD",
    "register_backbone",
]
