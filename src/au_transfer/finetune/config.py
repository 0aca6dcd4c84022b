"""Fine-tuning settings: the ``finetune`` config section as :class:`FinetuneConfig` (every default read from the
section's schema, au_transfer/schemas/finetune.schema.yaml), the allowed values and :class:`FinetuneError`."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import schema_defaults

#: Allowed values of ``finetune.head``, ``.reinit``, ``.optimizer``, ``.amp`` (the fine-tuning spellings of
#: :data:`au_transfer.device.AMP_VALUES`) and ``.classifier_norm``.
HEADS = ("per_au", "multilabel")
REINIT = ("all", "fc6_fc7", "none")
OPTIMIZERS = ("sgd", "adam", "adamw")
AMP = ("none", "fp16", "bf16")
NORMS = ("none", "standardize")


class FinetuneError(ValueError):
    """Bad input to fine-tuning: the message names the file, subject, frame or config key."""


#: The defaults of the ``finetune`` config section, read from its schema (au_transfer/schemas/finetune.schema.yaml):
#: the workflow and this library use the same values.
DEFAULTS: dict[str, Any] = schema_defaults("finetune")


@dataclass
class AugmentConfig:
    """Small random shifts (a crop of the reflect-padded image) and horizontal flips, training set only."""

    enabled: bool = DEFAULTS["augment"]["enabled"]
    shift: float = DEFAULTS["augment"]["shift"]
    flip: bool = DEFAULTS["augment"]["flip"]


@dataclass
class FinetuneConfig:
    """Training settings: the ``finetune`` config section; every default is the schema's (:data:`DEFAULTS`)."""

    head: str = DEFAULTS["head"]
    reinit: str = DEFAULTS["reinit"]
    classifier_norm: str = DEFAULTS["classifier_norm"]
    freeze: str | int = DEFAULTS["freeze"]
    lr: float = DEFAULTS["lr"]
    body_lr_mult: float = DEFAULTS["body_lr_mult"]
    hidden_lr_mult: float = DEFAULTS["hidden_lr_mult"]
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    patience: int = DEFAULTS["patience"]
    select: str = DEFAULTS["select"]
    optimizer: str = DEFAULTS["optimizer"]
    momentum: float = DEFAULTS["momentum"]
    weight_decay: float = DEFAULTS["weight_decay"]
    seed: int = DEFAULTS["seed"]
    amp: str = DEFAULTS["amp"]
    num_workers: int = DEFAULTS["num_workers"]
    balance_val: bool = DEFAULTS["balance_val"]
    max_train_frames: int | None = DEFAULTS["max_train_frames"]
    max_val_frames: int | None = DEFAULTS["max_val_frames"]
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.augment, Mapping):
            self.augment = AugmentConfig(**self.augment)
        checks = [("head", self.head, HEADS), ("reinit", self.reinit, REINIT),
                  ("optimizer", self.optimizer, OPTIMIZERS), ("amp", self.amp, AMP), ("select", self.select, ("f1", "loss")),
                  ("classifier_norm", self.classifier_norm, NORMS)]
        for key, value, allowed in checks:
            if value not in allowed:
                raise FinetuneError(f"config key 'finetune.{key}': {value!r} is not one of {list(allowed)}")
        if not (self.freeze in ("none", "body") or (isinstance(self.freeze, int) and self.freeze >= 0)):
            raise FinetuneError(f"config key 'finetune.freeze': {self.freeze!r}; expected none, body or a number of stages")
        for key in ("epochs", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise FinetuneError(f"config key 'finetune.{key}' must be >= 1, got {getattr(self, key)}")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> FinetuneConfig:
        """Build from a config mapping, ignoring the workflow-only keys (enabled, backbones, regions, ...)."""
        names = {f.name for f in cls.__dataclass_fields__.values()}
        return cls(**{k: copy.deepcopy(v) for k, v in cfg.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
