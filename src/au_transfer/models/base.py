"""The AU-model interface itself (:class:`AUModel`, :class:`Needs`), the registry of kinds, and person-specific
normalisation (``*_med`` models: :class:`RunningMedian`)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


class AUModelError(ValueError):
    """A model cannot fit or score its input; the message names the model, the AU and what is wrong."""


@dataclass(frozen=True)
class Needs:
    """What a model reads for each frame."""

    kind: str                         # "features" | "crops" | "members"
    backbone: str = ""                # features: registry name ("{name}_ft": a fine-tuned network's features)
    crop_region: str = ""             # face | upper | middle | lower
    size: int = 0                     # crops: the network's input size
    network: str = ""                 # fine-tuned network file whose features or crops are read
    dim: int = 0                      # the feature dimension the model was fitted on (0: not known yet)
    members: tuple[str, ...] = ()     # members: model ids, in column order
    weights_sha256: str = ""          # features: the backbone weights the model was fitted on ("" = not recorded)
    mean_image_sha256: str = ""       # features: the training mean image subtracted first ("" = none)


class AUModel(ABC):
    """The per-AU model interface (see the module docstring)."""

    kind: ClassVar[str] = ""

    def __init__(self, *, au: int = 0, model_id: str = "") -> None:
        self.au, self.model_id = int(au), model_id

    @property
    @abstractmethod
    def needs(self) -> Needs:
        """What the model reads per frame."""

    @abstractmethod
    def fit(self, X: Sequence[np.ndarray], y: Sequence[np.ndarray], X_val: Sequence[np.ndarray] | None = None,
            y_val: Sequence[np.ndarray] | None = None) -> AUModel:
        """Fit on training sequences (validation sequences for the model's choices only; never test data)."""

    @abstractmethod
    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(score, pred)`` of the next frames of the current sequence."""

    def reset(self) -> None:  # noqa: B027  (a no-op for frame models, overridden by sequence models)
        """Start a new sequence."""

    @abstractmethod
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model (atomically)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> AUModel:
        """Read a model written by :meth:`save` (or by the workflow)."""

    def _where(self) -> str:
        return f"model {self.model_id or self.kind} AU{self.au}"

    def _check_features(self, X: np.ndarray, convert: bool = True) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32) if convert else np.asarray(X)
        dim = self.needs.dim
        if X.ndim != 2 or (dim and X.shape[1] != dim):
            raise AUModelError(f"{self._where()}: got features of shape {X.shape}, expected (frames, {dim}) "
                               f"({self.needs.backbone} {self.needs.crop_region})")
        return X


#: Classifier name (the last part of a model id, or ``ensemble``) -> the class that implements it.
MODEL_KINDS: dict[str, type[AUModel]] = {}


def register_kind(*names: str) -> Callable[[type[AUModel]], type[AUModel]]:
    def deco(cls: type[AUModel]) -> type[AUModel]:
        for name in names:
            MODEL_KINDS[name] = cls
        return cls

    return deco


def model_kind(classifier: str) -> type[AUModel]:
    """The model class of a classifier name (``lda``, ``svm``, ``lstm``, ``softmax``, ``ensemble``)."""
    try:
        return MODEL_KINDS[classifier]
    except KeyError:
        raise AUModelError(f"no model kind {classifier!r}; known: {sorted(MODEL_KINDS)}") from None


def _skipped(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, np.nan), np.zeros(n, dtype=np.int8)


def _two_classes(y: Sequence[np.ndarray]) -> tuple[int, int]:
    ally = np.concatenate([np.asarray(v) for v in y]) if len(y) else np.zeros(0)
    return int(ally.sum()), int(len(ally) - ally.sum())



# ---------------------------------------------------------------------------- person-specific normalisation
MEDIAN_SUFFIX = "_med"


def split_median(classifier: str) -> tuple[str, bool]:
    """``svm_med`` -> ``("svm", True)``: the classifier or regressor and whether its features are normalised by
    subtracting each recording's median feature vector (person-specific normalisation, docs/intensity.md)."""
    return classifier.removesuffix(MEDIAN_SUFFIX), classifier.endswith(MEDIAN_SUFFIX)


class RunningMedian:
    """Per-dimension median of the frames seen so far, from a uniform reservoir of at most ``size`` frames, so that
    memory stays flat however long the sequence: the predictor's person-specific normalisation of every ``*_med``
    model (the workflow's jobs know the whole recording and subtract its exact median instead)."""

    def __init__(self, size: int = 512, seed: int = 0) -> None:
        self.size, self.rng, self.seen = int(size), np.random.default_rng(seed), 0
        self.buf: np.ndarray | None = None
        self.n = 0

    def update(self, X: np.ndarray) -> np.ndarray:
        """Add frames ``X`` (T, D); returns the current median (D,) float32."""
        X = np.asarray(X, np.float32)
        if self.buf is None:
            self.buf = np.empty((self.size, X.shape[1]), np.float32)
        for x in X:
            if self.n < self.size:
                self.buf[self.n] = x
                self.n += 1
            else:
                j = int(self.rng.integers(0, self.seen + 1))
                if j < self.size:
                    self.buf[j] = x
            self.seen += 1
        return np.median(self.buf[: self.n], axis=0).astype(np.float32)
