"""Per-AU linear intensity regressors (ridge, linear SVR) on frame features, regularisation chosen on validation by
ICC(3,1); the sampling of training frames. (The predictor's running median of person-specific normalisation is
the AU models', :class:`au_transfer.models.RunningMedian`.)

Sampling (``stratified``, the default): intensity is ordinal, so frames are not balanced into two classes as for
occurrence. Frames are grouped by intensity level (0..5, rounded); every level keeps at most as many frames as the
most frequent *non-zero* level has (random ones, seeded). In AU data level 0 outnumbers the active levels many times
over; this caps it (the regressor no longer learns "always 0") while keeping every frame of the rare high levels and
the shape of the active range. ``all`` keeps every frame. Validation frames are sampled the same way (the choice of
C/alpha sees the same mix it was trained on); test frames never are.

Needs numpy, scikit-learn and h5py only (no torch): one regressor job per (split, model, AU).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..models.base import MEDIAN_SUFFIX, split_median
from .metrics import icc31

log = logging.getLogger(__name__)

REGRESSORS = ("svr", "ridge")
LSTM_REGRESSOR = "lstmr"  # the LSTM regression variant (au_transfer.intensity.lstm)
#: the grid key and the fallback key of each regressor, and whether a larger value regularises more
_GRID = {"svr": ("C_grid", "C_fallback", False), "ridge": ("alpha_grid", "alpha_fallback", True)}
BLOCK = 4096


def parse_regressor(name: str) -> tuple[str, bool]:
    """``svr_med`` -> ``("svr", True)``: the regressor and whether features are median-normalised per sequence."""
    base, median = split_median(name)
    if base not in REGRESSORS:
        raise ValueError(f"unknown regressor {name!r}; known: {list(REGRESSORS)} (with {MEDIAN_SUFFIX!r}: "
                         "person-specific median normalisation)")
    return base, median


def sample_indices(y: np.ndarray, rng: np.random.Generator, sampling: str = "stratified") -> np.ndarray:
    """Sorted row indices kept for fitting (see the module docstring); ``sampling`` is ``stratified`` or ``all``."""
    y = np.asarray(y, np.float64)
    if sampling == "all":
        return np.arange(len(y))
    if sampling != "stratified":
        raise ValueError(f"sampling must be stratified or all, got {sampling!r}")
    level = np.rint(y).astype(int)
    counts = {lv: int((level == lv).sum()) for lv in range(6)}
    cap = max((c for lv, c in counts.items() if lv > 0), default=0) or len(y)
    keep = []
    for lv in range(6):
        idx = np.flatnonzero(level == lv)
        keep.append(idx if len(idx) <= cap else rng.choice(idx, size=cap, replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)


class IntensityRegressor:
    """A training-set scaler and a linear model; :meth:`predict` works block by block on float16/32 features."""

    def __init__(self, regressor: str, value: float, params: Mapping[str, Any], seed: int = 0) -> None:
        self.regressor, self.value, self.seed = regressor, float(value), int(seed)
        self.params = dict(params)

    def fit(self, X: np.ndarray, y: np.ndarray) -> IntensityRegressor:
        from sklearn.linear_model import Ridge
        from sklearn.svm import LinearSVR

        X = np.asarray(X, np.float32)
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        Z = (X - self.mean_) / self.scale_
        if self.regressor == "ridge":
            model = Ridge(alpha=self.value)
        else:
            model = LinearSVR(C=self.value, epsilon=float(self.params.get("epsilon", 0.0)),
                              max_iter=int(self.params.get("max_iter", 5000)), dual="auto", random_state=self.seed)
        model.fit(Z, np.asarray(y, np.float64))
        self.coef_ = np.asarray(model.coef_, np.float64).ravel()
        self.intercept_ = float(np.ravel(model.intercept_)[0])
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted intensity, not clipped; block by block so that float16 features are never copied whole."""
        w = self.coef_ / self.scale_
        b = self.intercept_ - float(self.mean_.astype(np.float64) @ w)
        out = np.empty(len(X), np.float64)
        for i in range(0, len(X), BLOCK):
            out[i:i + BLOCK] = np.asarray(X[i:i + BLOCK], np.float64) @ w + b
        return out


def fit_regressor(tr: Any, va: Any | None, regressor: str, params: Mapping[str, Any], *, seed: int = 0,
                  sampling: str = "stratified") -> dict[str, Any]:
    """Fit one AU's regressor on the sampled training frames, choosing C (SVR) or alpha (ridge) by ICC on the
    sampled validation frames (ties: the stronger regularisation). ``tr``/``va`` have ``y`` (intensities) and
    ``features(idx, dtype)`` (:class:`~au_transfer.classifiers.data.FrameIndex` or ``FrameData``).

    Returns ``{status, reason, estimator, chosen, val_scores, selection, n_train, n_val}``; ``skipped`` when the
    training intensities take fewer than two values (nothing to regress).
    """
    rng = np.random.default_rng(seed)
    grid_key, fallback_key, larger_regularises = _GRID[regressor]
    info: dict[str, Any] = {"status": "ok", "reason": "", "estimator": None, "chosen": {}, "val_scores": {},
                            "selection": "none", "n_train": 0, "n_val": 0}
    if len(np.unique(np.asarray(tr.y))) < 2:
        return {**info, "status": "skipped",
                "reason": f"training intensities take {len(np.unique(np.asarray(tr.y)))} value(s) over {len(tr.y)} frames"}
    itr = sample_indices(tr.y, rng, sampling)
    Xtr, ytr = tr.features(itr, np.float32), np.asarray(tr.y, np.float64)[itr]
    info["n_train"] = int(len(itr))
    grid = sorted(float(v) for v in params[grid_key])
    if not larger_regularises:
        grid = grid[::-1]  # strongest regularisation first: ties go to it
    scores: dict[str, float] = {}
    if va is not None and len(va) and len(np.unique(np.asarray(va.y))) > 1:
        iva = sample_indices(va.y, rng, sampling)
        Xva, yva = va.features(iva, np.float32), np.asarray(va.y, np.float64)[iva]
        info["n_val"] = int(len(iva))
        for v in grid:
            est = IntensityRegressor(regressor, v, params, seed).fit(Xtr, ytr)
            scores[repr(v)] = icc31(np.clip(est.predict(Xva), 0, 5), yva)
    finite = {k: s for k, s in scores.items() if np.isfinite(s)}
    if finite:
        best = max(finite, key=lambda k: (finite[k], -list(finite).index(k)))
        value, info["selection"] = float(best), "validation_icc"
    else:
        value, info["selection"] = float(params[fallback_key]), "fallback"
    info["estimator"] = IntensityRegressor(regressor, value, params, seed).fit(Xtr, ytr)
    info["chosen"] = {grid_key.removesuffix("_grid"): value}
    info["val_scores"] = scores
    return info


# ------------------------------------------------------------------------ the AU-model interface's side of it
def fit_sequences(model: Any, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> dict[str, Any]:
    """:meth:`~au_transfer.models.RegressorModel.fit`: per-sequence arrays in, the fit's ``info`` out (a ``*_med``
    model subtracts each sequence's own median first). Records ``threshold`` and ``normalise`` in the bundle."""
    from ..classifiers.data import FrameData

    name = str(model.options.get("classifier", "svr"))
    if name == LSTM_REGRESSOR:
        from .lstm import fit_lstm_sequences

        return fit_lstm_sequences(model, X, y, X_val, y_val)
    regressor, median = parse_regressor(name)

    def data(xs: Any, ys: Any) -> FrameData:
        xs = model._median_fit_inputs(xs, median)
        n = sum(len(x) for x in xs)
        return FrameData(np.array(["s"] * n), np.arange(n), np.concatenate(xs), np.concatenate(ys).astype(float))

    info = fit_regressor(data(X, y), data(X_val, y_val) if X_val else None, regressor, model.params,
                         seed=model.seed, sampling=str(model.params.get("sampling", "stratified")))
    model.bundle.setdefault("threshold", int(model.options.get("threshold", 2)))
    model.bundle["normalise"] = "median" if median else "none"
    model.reset()
    return info


def score_frames(model: Any, X: np.ndarray, normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`~au_transfer.models.RegressorModel.score`: intensity clipped to 0..5 and ``intensity >= threshold``.

    A median-normalised model given raw features (the predictor) subtracts the running median of the frames of
    the current sequence seen so far, these included (``model._normalise``, shared with the ``*_med`` frame
    classifiers; the first chunk is normalised by its own median and is not re-scored later); ``normalised=True``:
    the caller already subtracted the sequence median (the workflow's jobs, which know the whole sequence).
    """
    if model.bundle.get("classifier") == LSTM_REGRESSOR:  # the LSTM's state carries over chunks until reset()
        if getattr(model, "_state", None) is None:
            from ..classifiers.lstm import LSTMStream

            model._state = LSTMStream(model.estimator, model.options.get("device", "cpu"))
        value = 5.0 * np.asarray(model._state(np.asarray(X, np.float32)), np.float64)
    else:
        value = model.estimator.predict(model._normalise(X, normalised))
    value = np.clip(value, 0.0, 5.0)
    return value, (value >= float(model.bundle.get("threshold", 2))).astype(np.int8)
