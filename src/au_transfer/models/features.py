"""Models saved as the classifiers stage's bundles (arrays + JSON, :mod:`au_transfer.persist`): frame classifiers
(LDA, SVM), the LSTM, intensity regressors.

Person-specific normalisation (``*_med`` frame classifiers and regressors, bundle ``normalise: median``) lives here
once, in :meth:`_BundleModel._normalise`: the workflow's jobs pass features from which each recording's exact
median over its valid frames is already subtracted (``normalised=True``); the predictor passes raw features and the
model subtracts a :class:`~au_transfer.models.base.RunningMedian` of the frames of the current sequence seen so far
(these included), which :meth:`~au_transfer.models.base.AUModel.reset` clears.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import (
    AUModel,
    AUModelError,
    Needs,
    RunningMedian,
    _skipped,
    _two_classes,
    model_kind,
    register_kind,
    split_median,
)


class _BundleModel(AUModel):
    """A model saved as the classifiers stage's bundle (``results/models/{split}/{model}/AU{au}.npz``)."""

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
        self._median: RunningMedian | None = None

    @property
    def median(self) -> bool:
        """Whether features are normalised by the recording's median (a ``*_med`` model)."""
        if "normalise" in self.bundle:
            return self.bundle["normalise"] == "median"
        return split_median(str(self.bundle.get("classifier") or self.options.get("classifier", "")))[1]

    def reset(self) -> None:
        self._median = None

    def _normalise(self, X: np.ndarray, normalised: bool) -> np.ndarray:
        """Raw features of the current sequence minus its running median (a ``*_med`` model, ``normalised`` False);
        anything else unchanged."""
        if not self.median or normalised:
            return X
        if self._median is None:
            self._median = RunningMedian(seed=self.seed)
        return np.asarray(X, np.float32) - self._median.update(X)

    @staticmethod
    def _median_fit_inputs(xs: Any, median: bool) -> list[np.ndarray]:
        """Training/validation sequences as float32, each minus its own median for a ``*_med`` model."""
        xs = [np.asarray(x, np.float32) for x in xs]
        return [x - np.median(x, axis=0) for x in xs] if median else xs

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
        from ..classifiers.frame import save_model

        save_model(self.bundle, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> AUModel:
        from ..classifiers.frame import load_model

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


@register_kind("lda", "svm", "lda_med", "svm_med")
class FrameModel(_BundleModel):
    """LDA or linear SVM on frame features (paper IV-C), with its training-set scaler and validation choice of C;
    ``*_med``: on features minus the recording's median (person-specific normalisation)."""

    kind = "frame"

    @property
    def classifier(self) -> str:
        return str(self.bundle.get("classifier") or self.options.get("classifier", "svm"))

    def _fitted_dim(self) -> int:
        return int(getattr(self.estimator, "n_features_in_", 0) or 0)

    def fit(self, X, y, X_val=None, y_val=None) -> FrameModel:
        from ..classifiers.data import FrameData
        from ..classifiers.frame import fit_frame_classifier

        base, median = split_median(self.classifier)

        def data(xs, ys) -> FrameData:
            xs = self._median_fit_inputs(xs, median)
            n = sum(len(x) for x in xs)
            return FrameData(np.array(["s"] * n), np.arange(n), np.concatenate(xs), np.concatenate(ys).astype(int))

        val = data(X_val, y_val) if X_val else None
        info = fit_frame_classifier(data(X, y), val, base, self.params, seed=self.seed,
                                    balance=bool(self.options.get("balance", True)),
                                    refit=str(self.options.get("refit", "train")))
        self._fitted(info, self.classifier)
        self.bundle["normalise"] = "median" if median else "none"
        self.reset()
        return self

    def score(self, X: np.ndarray, *, normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``normalised``: the caller already subtracted the recording's median (the workflow's jobs)."""
        from ..classifiers.frame import decision_values

        if self.skipped:
            return _skipped(len(X))
        X = self._check_features(X, convert=False)  # float16 features stay float16: scored block by block
        X = self._normalise(X, normalised)
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
        from ..classifiers.lstm import LSTM_KEYS, LSTMClassifier

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
        super().reset()
        self._stream = None

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.skipped:
            return _skipped(len(X))
        X = self._check_features(X)
        if self._stream is None:
            from ..classifiers.lstm import LSTMStream

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
        from ..intensity.linear import fit_sequences

        self._fitted(fit_sequences(self, X, y, X_val, y_val), self.options.get("classifier", "svr"))
        return self

    def reset(self) -> None:
        super().reset()
        self._state: Any = None  # the LSTM stream

    def score(self, X: np.ndarray, *, normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
        from ..intensity.linear import score_frames

        return _skipped(len(X)) if self.skipped else score_frames(self, self._check_features(X, convert=False),
                                                                  normalised)


def model_from_bundle(bundle: Mapping[str, Any], **kwargs: Any) -> AUModel:
    """The model of a classifiers-stage bundle (its ``classifier`` names the kind)."""
    return model_kind(str(bundle.get("classifier")))(bundle, **kwargs)
