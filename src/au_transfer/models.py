"""One interface for every per-AU model: frame classifiers (LDA, SVM), the LSTM, fine-tuned networks and ensembles.

An :class:`AUModel` scores one AU. It declares what it reads per frame (:class:`Needs`: a backbone's features of a
crop region, a fine-tuned network's crops, or its members' scores), fits from inputs and labels, scores the next
frames of a sequence (sequence models carry their state until :meth:`AUModel.reset`), and saves and loads itself.
The kinds register by classifier name (:data:`MODEL_KINDS`), so the predictor and the workflow's jobs build any
model through :func:`model_kind` / :func:`load_au_model` and never branch on the kind.

Inputs (``X``) per kind, always in frame order, one array per sequence for :meth:`AUModel.fit`:
- ``features`` (LDA, SVM, LSTM): (T, D) float features of the model's backbone and crop region;
- ``crops`` (fine-tuned networks): (T, S, S, 3) uint8 crops of the model's region at its input size;
- ``members`` (ensembles): (T, M, 2) the members' score (``[..., 0]``) and 0/1 vote (``[..., 1]``).
``score`` returns ``(score, pred)``: higher score = more present, pred 0/1; a skipped AU (no positive or no negative
training frame) scores NaN with pred 0.
"""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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


# ------------------------------------------------------------------------------------ frame classifiers, LSTM
class _BundleModel(AUModel):
    """A model saved as the classifiers stage's joblib bundle (``results/models/{split}/{model}/AU{au}.joblib``)."""

    def __init__(self, bundle: Mapping[str, Any] | None = None, *, au: int = 0, model_id: str = "",
                 backbone: str = "", crop_region: str = "", params: Mapping[str, Any] | None = None, seed: int = 0,
                 **options: Any) -> None:
        bundle = dict(bundle or {})
        super().__init__(au=bundle.get("au", au), model_id=model_id)
        self.bundle = bundle
        self.backbone = bundle.get("backbone", backbone)
        self.crop_region = bundle.get("crop_region", crop_region)
        self.params = dict(bundle.get("params", params or {}))
        self.seed = int(bundle.get("seed", seed))
        self.options = options

    @property
    def estimator(self) -> Any:
        return self.bundle.get("estimator")

    @property
    def skipped(self) -> bool:
        return self.bundle.get("status") == "skipped" or self.estimator is None

    @property
    def needs(self) -> Needs:
        attrs = self.bundle.get("feature_attrs") or {}
        return Needs("features", self.backbone, self.crop_region, dim=int(attrs.get("dim") or self._fitted_dim()),
                     weights_sha256=str(attrs.get("weights_sha256") or ""),
                     mean_image_sha256=str(attrs.get("mean_image_sha256") or ""))

    def _fitted_dim(self) -> int:
        return 0

    def save(self, path: str | os.PathLike[str]) -> None:
        from .classifiers.frame import save_model

        save_model(self.bundle, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> AUModel:
        from .classifiers.frame import load_model

        bundle = load_model(path)
        kind = model_kind(str(bundle.get("classifier")))
        if not issubclass(kind, cls):
            raise AUModelError(f"{path}: holds a {bundle.get('classifier')} model, not a {cls.kind} model")
        return kind(bundle, **kwargs)

    def _fitted(self, info: Mapping[str, Any], classifier: str) -> None:
        self.bundle = {**self.bundle, "estimator": info.get("estimator"), "au": self.au, "classifier": classifier,
                       "backbone": self.backbone, "crop_region": self.crop_region, "params": dict(self.params),
                       "seed": self.seed, "status": info.get("status", "ok"), "reason": info.get("reason", ""),
                       "chosen": dict(info.get("chosen", {})), "selection": info.get("selection", "none")}


@register_kind("lda", "svm")
class FrameModel(_BundleModel):
    """LDA or linear SVM on frame features (paper IV-C), with its training-set scaler and validation choice of C."""

    kind = "frame"

    @property
    def classifier(self) -> str:
        return str(self.bundle.get("classifier") or self.options.get("classifier", "svm"))

    def _fitted_dim(self) -> int:
        return int(getattr(self.estimator, "n_features_in_", 0) or 0)

    def fit(self, X, y, X_val=None, y_val=None) -> FrameModel:
        from .classifiers.data import FrameData
        from .classifiers.frame import fit_frame_classifier

        def data(xs, ys) -> FrameData:
            xs = [np.asarray(x, np.float32) for x in xs]
            n = sum(len(x) for x in xs)
            return FrameData(np.array(["s"] * n), np.arange(n), np.concatenate(xs), np.concatenate(ys).astype(int))

        val = data(X_val, y_val) if X_val else None
        info = fit_frame_classifier(data(X, y), val, self.classifier, self.params, seed=self.seed,
                                    balance=bool(self.options.get("balance", True)),
                                    refit=str(self.options.get("refit", "train")))
        self._fitted(info, self.classifier)
        return self

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from .classifiers.frame import decision_values

        if self.skipped:
            return _skipped(len(X))
        X = self._check_features(X, convert=False)  # float16 features stay float16: scored block by block
        s = np.asarray(decision_values(self.estimator, X), dtype=np.float64)
        return s, (s > 0).astype(np.int8)


@register_kind("lstm")
class LSTMModel(_BundleModel):
    """The LSTM on feature sequences (paper IV-D); scores a long sequence chunk by chunk, carrying its state."""

    kind = "lstm"

    def __init__(self, bundle: Mapping[str, Any] | None = None, *, device: str = "cpu", **kwargs: Any) -> None:
        super().__init__(bundle, **kwargs)
        self.device = device
        self._stream: Any = None

    def _fitted_dim(self) -> int:
        return int(getattr(self.estimator, "dim_", 0) or 0)

    def fit(self, X, y, X_val=None, y_val=None) -> LSTMModel:
        from .classifiers.lstm import LSTM_KEYS, LSTMClassifier

        n_pos, n_neg = _two_classes(y)
        info: dict[str, Any] = {"status": "ok", "reason": "", "estimator": None, "selection": "early_stopping"}
        if n_pos == 0 or n_neg == 0:
            info.update(status="skipped", reason=f"training set has {n_pos} positive and {n_neg} negative frames")
        else:
            kwargs = {k: self.params[k] for k in LSTM_KEYS if k in self.params}
            est = LSTMClassifier(seed=self.seed, **kwargs).fit(list(X), list(y), list(X_val) if X_val else None,
                                                               list(y_val) if y_val else None)
            info.update(estimator=est, chosen={"best_epoch": est.best_epoch_, "epochs_run": len(est.history_)})
        self._fitted(info, "lstm")
        self.reset()
        return self

    def reset(self) -> None:
        self._stream = None

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.skipped:
            return _skipped(len(X))
        X = self._check_features(X)
        if self._stream is None:
            from .classifiers.lstm import LSTMStream

            self._stream = LSTMStream(self.estimator, self.device)
        s = np.asarray(self._stream(X), dtype=np.float64)
        return s, (s > 0.5).astype(np.int8)


@register_kind("svr", "ridge", "svr_med", "ridge_med", "lstmr")
class RegressorModel(_BundleModel):
    """An AU intensity regressor (:mod:`au_transfer.intensity`): score = intensity clipped to 0..5, pred = intensity
    >= the run's threshold; ``*_med`` subtract a running median of the sequence; ``lstmr`` carries LSTM state."""

    kind = "regressor"

    def _fitted_dim(self) -> int:
        return int(getattr(self.estimator, "n_features_in_", 0) or getattr(self.estimator, "dim_", 0) or 0)

    def fit(self, X, y, X_val=None, y_val=None) -> RegressorModel:
        from .intensity.linear import fit_sequences

        self._fitted(fit_sequences(self, X, y, X_val, y_val), self.options.get("classifier", "svr"))
        return self

    def reset(self) -> None:
        self._state: Any = None  # the running median, or the LSTM stream

    def score(self, X: np.ndarray, *, normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
        from .intensity.linear import score_frames

        return _skipped(len(X)) if self.skipped else score_frames(self, self._check_features(X, convert=False),
                                                                  normalised)


def model_from_bundle(bundle: Mapping[str, Any], **kwargs: Any) -> AUModel:
    """The model of a classifiers-stage bundle (its ``classifier`` names the kind)."""
    return model_kind(str(bundle.get("classifier")))(bundle, **kwargs)


# ------------------------------------------------------------------------------------------ fine-tuned CNNs
class _ArrayCrops:
    """In-memory crops and labels, with the dataset interface fine-tuning's loops use."""

    def __init__(self, crops: np.ndarray, labels: np.ndarray) -> None:
        self.crops, self.labels = crops, labels.astype(np.int64).reshape(len(labels), -1)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.crops[i], self.labels[i]

    def close(self) -> None:
        pass


@register_kind("softmax")
class FinetunedModel(AUModel):
    """A fine-tuned CNN for one AU (paper V): reads region crops, outputs the probability of "present"."""

    kind = "finetuned"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, au: int = 0, model_id: str = "",
                 backbone: str = "", weights: str = "random", crop_region: str = "face",
                 cfg: Mapping[str, Any] | None = None, device: str = "cpu", batch_size: int = 64,
                 create: Callable[..., Any] | None = None, **_ignored: Any) -> None:
        super().__init__(au=au, model_id=model_id)
        self.path = None if path is None else str(path)
        self.backbone, self.weights, self.crop_region = backbone, weights, crop_region
        self.cfg, self.device, self.batch_size, self.create = dict(cfg or {}), device, batch_size, create
        self.clf: Any = None
        if path is not None:
            from .finetune import FinetunedClassifier

            kw = {"create": create} if create is not None else {}
            self.clf = FinetunedClassifier(path, device=device, batch_size=batch_size, **kw)
            self.au, self.crop_region = self.clf.au, self.clf.crop_region

    @property
    def needs(self) -> Needs:
        size = int(self.clf.input_size) if self.clf is not None else 0
        return Needs("crops", self.backbone or (self.clf.bundle["backbone"] if self.clf else ""), self.crop_region,
                     size=size, network=self.path or "")

    def fit(self, X, y, X_val=None, y_val=None) -> FinetunedModel:
        import tempfile

        import torch

        from . import finetune as ft
        from .backbones import create_backbone, preprocess

        cfg = ft.FinetuneConfig.from_mapping(self.cfg)
        create = self.create or create_backbone
        torch.manual_seed(cfg.seed)
        net = ft.FinetuneNet(create(self.backbone, weights=self.weights), 1, cfg.classifier_norm)
        ft.reinit_layers(net, cfg.reinit, cfg.seed)
        frozen = ft.freeze_layers(net, cfg.freeze)
        dev = torch.device(self.device)
        prep = lambda spec, images, device: preprocess(spec, images, device)  # noqa: E731
        train_ds = _ArrayCrops(np.concatenate(list(X)), np.concatenate(list(y)))
        val_ds = _ArrayCrops(np.concatenate(list(X_val)), np.concatenate(list(y_val))) if X_val else None
        n_pos, n_neg = _two_classes(y)
        status = "ok" if n_pos and n_neg else "skipped"
        if status == "ok":
            ft.fit_standardize(net, train_ds, batch_size=cfg.batch_size, device=dev, preprocess=prep, seed=cfg.seed)
            result = ft.train(net, train_ds, val_ds, cfg, device=dev, preprocess=prep, frozen=frozen)
            history, best = result.history, result.best_epoch
        else:
            history, best = [], -1
        size = int(net.backbone.spec.input_size)
        fd, tmp = tempfile.mkstemp(suffix=".pt")
        os.close(fd)
        try:  # the bundle format of the workflow's networks, read back into the predictor-side wrapper
            ft.save_bundle(tmp, net.cpu(), backbone=self.backbone, weights=self.weights, region=self.crop_region,
                           crop_region=self.crop_region, aus=[self.au], au=self.au, au_index=0, input_size=size,
                           config=cfg.to_dict(), seed=cfg.seed, history=history, best_epoch=best, status=status,
                           model=self.model_id)
            kw = {"create": self.create} if self.create is not None else {}
            self.clf = ft.FinetunedClassifier(tmp, device=self.device, batch_size=self.batch_size, **kw)
        finally:
            Path(tmp).unlink(missing_ok=True)
        self.path = None
        return self

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.clf is None:
            raise AUModelError(f"{self._where()}: not fitted")
        X = np.asarray(X)
        size = self.needs.size
        if X.ndim != 4 or X.shape[1:] != (size, size, 3) or X.dtype != np.uint8:
            raise AUModelError(f"{self._where()}: got crops of shape {X.shape} {X.dtype}, expected "
                               f"(frames, {size}, {size}, 3) uint8 {self.crop_region} crops")
        s = np.asarray(self.clf.decision_function(X), dtype=np.float64)
        return s, (np.nan_to_num(s, nan=0.0) >= 0.5).astype(np.int8)

    def save(self, path: str | os.PathLike[str]) -> None:
        import torch

        from .io import atomic_path

        if self.clf is None:
            raise AUModelError(f"{self._where()}: not fitted")
        with atomic_path(path) as tmp:
            torch.save(self.clf.bundle, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> FinetunedModel:
        return cls(path, **kwargs)


# ------------------------------------------------------------------------------------------------ ensembles
@register_kind("ensemble")
class EnsembleModel(AUModel):
    """A majority-vote (or weighted, or stacked) ensemble of member models for one AU (paper VI)."""

    kind = "ensemble"

    def __init__(self, params: Mapping[str, Any] | None = None, *, au: int = 0, model_id: str = "",
                 name: str = "", members: Sequence[str] = (), method: str = "majority", tie: str = "score",
                 C: float = 1.0, class_weight: str | None = "balanced", **_ignored: Any) -> None:
        self.params = copy.deepcopy(dict(params)) if params else None
        name = self.params["name"] if self.params else name
        super().__init__(au=au, model_id=model_id or f"ens-{name}")
        self.name = name
        self.members = tuple(self.params["members"]) if self.params else tuple(members)
        self.options = {"method": method, "tie": tie, "C": C, "class_weight": class_weight}

    @property
    def needs(self) -> Needs:
        return Needs("members", members=self.members)

    def fit(self, X, y, X_val=None, y_val=None) -> EnsembleModel:
        """Fit the combination on the validation sequences only (the members were fitted on the training ones)."""
        import pandas as pd

        from .ensemble import Aligned, fit_ensemble

        Xv = np.concatenate(list(X_val)) if X_val else np.zeros((0, len(self.members), 2))
        yv = np.concatenate(list(y_val)) if y_val else np.zeros(0)
        self._check_members(Xv)
        keys = pd.DataFrame({"subject": "val", "frame": np.arange(len(Xv)), "au": self.au, "set": "val",
                             "label": yv.astype(int)})
        aligned = Aligned(list(self.members), keys, Xv[..., 0].astype(np.float64), Xv[..., 1].astype(np.int8))
        self.params = fit_ensemble(aligned, name=self.name, **self.options)
        return self

    def _check_members(self, X: np.ndarray) -> None:
        if X.ndim != 3 or X.shape[1:] != (len(self.members), 2):
            raise AUModelError(f"{self._where()}: got member inputs of shape {X.shape}, expected (frames, "
                               f"{len(self.members)}, 2) for members {list(self.members)}")

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from .ensemble import apply_au

        if self.params is None:
            raise AUModelError(f"{self._where()}: not fitted")
        X = np.asarray(X, dtype=np.float64)
        self._check_members(X)
        s, p = apply_au(self.params, self.au, X[..., 0], X[..., 1].astype(np.int8))
        return np.asarray(s, np.float64), np.asarray(p, np.int8)

    def save(self, path: str | os.PathLike[str]) -> None:
        import json

        from .io import write_text_atomic

        write_text_atomic(json.dumps(self.params, indent=1, sort_keys=True), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> EnsembleModel:
        from .ensemble import load_params

        return cls(load_params(path), **kwargs)


# ------------------------------------------------------------------------------------------------- loading
def model_file(layout: Any, split: str, model: str, au: int) -> Path:
    """Where the trained model ``model`` (a model id or ``ens-{name}``) of one AU lives in a results folder
    (``layout``: :class:`au_transfer.layout.Layout`)."""
    from .config import parse_model_id
    from .ensemble import ENSEMBLE_PREFIX
    from .layout import FT_SUFFIX

    if model.startswith(ENSEMBLE_PREFIX):
        return Path(layout.ensemble_params(split, model))
    backbone, region, classifier = parse_model_id(model)
    if classifier == "softmax":
        return Path(layout.finetune_net(split, backbone.removesuffix(FT_SUFFIX), region, au))
    return Path(layout.model_file(split, model, au))


def load_au_model(path: str | os.PathLike[str], model: str, au: int, **kwargs: Any) -> AUModel:
    """Load the model ``model`` (a model id or ``ens-{name}``) of one AU from its file."""
    from .config import parse_model_id
    from .ensemble import ENSEMBLE_PREFIX

    classifier = "ensemble" if model.startswith(ENSEMBLE_PREFIX) else parse_model_id(model)[2]
    path = Path(path)
    if not path.is_file():
        raise AUModelError(f"model {model} AU{au}: {path} does not exist; train it with the workflow")
    m = model_kind(classifier).load(path, au=au, model_id=model, **kwargs)
    m.model_id = model
    return m
