"""Backbones: one registry of feature extractors (the paper's CNNs, any timm model, and registered extras).

See :mod:`au_transfer.backbones.registry` and docs/backbones.md.
"""

from .registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAW255_STD,
    Backbone,
    BackboneError,
    BackboneSpec,
    create_backbone,
    get_spec,
    list_backbones,
    preprocess,
    preprocess_numpy,
    register_backbone,
)
from .weights import WeightsError, file_sha256, load_state_dict_file, random_tag

__all__ = [
    "Backbone", "BackboneError", "BackboneSpec", "IMAGENET_MEAN", "IMAGENET_STD", "RAW255_STD", "WeightsError",
    "create_backbone", "file_sha256", "get_spec", "list_backbones", "load_state_dict_file", "preprocess",
    "preprocess_numpy", "random_tag", "register_backbone",
]
