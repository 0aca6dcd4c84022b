"""Per-frame, per-AU linear classifiers on CNN features: LDA and a linear SVM (paper IV-C).

One model per AU. The features are standardised with a scaler fitted on the training subjects only (a
``StandardScaler`` inside the model's ``Pipeline``). Training and validation sets are balanced (paper IV-A,
:func:`~au_transfer.classifiers.data.balance_indices`); the test set is never balanced and never used for a choice.

Rules (documented in docs/classifiers.md):
- no positive (or no negative) training frame: the AU is *skipped*; its predictions are written with an empty
  ``score`` and ``pred = 0`` (absent), the bundle says ``status = "skipped"`` and why;
- SVM ``C`` is chosen on the balanced validation set by F1 (ties: the smaller C); when the validation set is empty
  or has a single class, ``C = svm.C_fallback`` and the bundle records ``selection = "fallback"``;
- the chosen model is refitted on the balanced training set (``refit: train``) or on train + val
  (``refit: train_val``); by default only on train, so validation scores stay honest;
- above ``lean_above`` training values the same models are fitted by :mod:`au_transfer.classifiers.lean` (no copies
  of the training rows; the bundle's ``implementation`` says which).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from ..labels import Threshold, as_threshold
from ..predictions import PRED_COLUMNS, faceless_rows, prediction_rows
from .data import ClassifierDataError, FrameData, FrameIndex, balance_indices

log = logging.getLogger(__name__)

FRAME_CLASSIFIERS: tuple[str, ...] = ("lda", "svm")
__all__ = ["FRAME_CLASSIFIERS", "PRED_COLUMNS", "decision_values", "feature_attrs", "fit_frame_classifier",
           "load_model", "make_bundle", "make_estimator", "prediction_frame", "save_model"]


def make_estimator(classifier: str, params: Mapping[str, Any], *, C: float | None = None, seed: int = 0,
                   lean: bool = False) -> Pipeline:
    """A scikit-learn ``Pipeline(StandardScaler, LDA | LinearSVC)`` from a classifier's config section.

    ``lean``: the memory-lean implementations of the same models (:mod:`au_transfer.classifiers.lean`).
    """
    if lean:
        from .lean import NewtonLinearSVC, ScatterLDA  # scipy.optimize: only for lean fits
    if lean and classifier == "lda":
        est: Any = ScatterLDA()
    elif lean and classifier == "svm":
        est = NewtonLinearSVC(C=float(C if C is not None else params.get("C_fallback", 1.0)),
                              max_iter=int(params.get("max_iter", 5000)), class_weight=params.get("class_weight"),
                              random_state=seed)
    elif classifier == "lda":
        shrinkage = params.get("shrinkage")
        solver = params.get("solver", "auto")
        if solver == "auto":
            solver = "svd" if shrinkage is None else "lsqr"
        if shrinkage is not None and solver == "svd":
            raise ClassifierDataError("classifiers.lda: shrinkage needs solver lsqr or eigen, not svd")
        est = LinearDiscriminantAnalysis(solver=solver, shrinkage=shrinkage)
    elif classifier == "svm":
        est = LinearSVC(C=float(C if C is not None else params.get("C_fallback", 1.0)),
                        max_iter=int(params.get("max_iter", 5000)), class_weight=params.get("class_weight"),
                        dual="auto", random_state=seed)
    else:
        raise ClassifierDataError(f"unknown frame classifier {classifier!r}; expected one of {FRAME_CLASSIFIERS}")
    return Pipeline([("scaler", StandardScaler()), ("clf", est)])


def decision_values(est: Any, X: np.ndarray, *, block_rows: int = 4096) -> np.ndarray:
    """``est.decision_function(X as float32)``, bit for bit, with less memory (``X`` may stay float16).

    A ``Pipeline``'s transformers (the scaler: row by row) run on blocks of rows, written into one array of the type
    in which the final linear step computes ``X @ coef_.T`` (float64 for LinearSVC, float32 for LDA on float32
    features); the final step then scores all rows in one call, so that BLAS sees the same matrix as in one call on
    all rows (scoring in pieces changes the last bits of a few rows: BLAS treats the last rows of a call apart).
    """
    steps = getattr(est, "steps", None)
    if not steps or len(steps) < 2 or len(X) == 0:
        return est.decision_function(np.asarray(X, dtype=np.float32))
    head, last = est[:-1], est[-1]
    out: np.ndarray | None = None
    for a in range(0, len(X), block_rows):
        Xt = head.transform(np.asarray(X[a:a + block_rows], dtype=np.float32))
        if out is None:
            coef = getattr(last, "coef_", None)
            dtype = Xt.dtype if coef is None else np.result_type(Xt.dtype, coef.dtype)
            out = np.empty((len(X), Xt.shape[1]), dtype=dtype)
        out[a:a + len(Xt)] = Xt
    return last.decision_function(out)


def _scores(est: Pipeline, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    score = np.asarray(decision_values(est, X), dtype=np.float64)
    return score, (score > 0).astype(np.int8)


def _fit(est: Pipeline, X: np.ndarray, y: np.ndarray, scaler: StandardScaler | None) -> Pipeline:
    """``est.fit(X, y)``; with ``scaler`` (lean: ``X`` already standardised in place by it) only the last step
    is fitted and ``scaler`` becomes the pipeline's scaler."""
    if scaler is None:
        return est.fit(X, y)
    est.steps[0] = ("scaler", scaler)
    est[-1].fit(X, y)
    return est


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, pos_label=1, zero_division=0))


def fit_frame_classifier(train: FrameData | FrameIndex, val: FrameData | FrameIndex | None, classifier: str,
                         params: Mapping[str, Any], *, seed: int, balance: bool = True,
                         refit: str = "train") -> dict[str, Any]:
    """Fit one AU's classifier; returns ``{estimator, status, chosen, val_scores, selection, n_train, ...}``.

    ``val`` is used for the choice of C (SVM) and for validation scores only; test data never reaches this. With a
    :class:`FrameIndex`, only the features of the balanced training and validation rows are read (the training
    rows as float32, the validation rows as stored until they are scored).
    """
    rng = np.random.default_rng(seed)
    info: dict[str, Any] = {"status": "ok", "reason": "", "chosen": {}, "val_scores": {}, "selection": "none"}
    tr_idx = balance_indices(train.y, rng) if balance else np.arange(len(train))
    n_pos, n_neg = int(train.y.sum()), int(len(train.y) - train.y.sum())
    info.update(n_train_pos=n_pos, n_train_neg=n_neg, train_index=tr_idx)
    if n_pos == 0 or n_neg == 0:
        info.update(status="skipped", reason=f"training set has {n_pos} positive and {n_neg} negative frames",
                    estimator=None)
        return info
    if refit not in ("train", "train_val"):
        raise ClassifierDataError(f"classifiers.refit: {refit!r} is not train or train_val")
    from .lean import standardise_in_place, use_lean

    Xtr, ytr = train.features(tr_idx, np.float32), train.y[tr_idx]
    lean = use_lean(classifier, params, *Xtr.shape)
    scaler = standardise_in_place(Xtr) if lean else None  # lean: the training rows standardised in place
    info["implementation"] = "lean" if lean else "scikit-learn"
    va_idx = np.empty(0, dtype=np.int64)
    if val is not None and len(val):
        va_idx = balance_indices(val.y, rng) if balance else np.arange(len(val))
    info["val_index"] = va_idx
    val_ok = len(va_idx) > 0 and len(np.unique(val.y[va_idx])) == 2 if val is not None else False
    Xva, yva = (val.features(va_idx), val.y[va_idx]) if val_ok else (None, None)

    if classifier == "svm":
        grid = [float(c) for c in params.get("C_grid", [1.0])]
        if val_ok and len(grid) > 1:
            best = None
            for C in grid:  # ascending order of the grid: ties keep the smaller (more regularised) C
                est = _fit(make_estimator("svm", params, C=C, seed=seed, lean=lean), Xtr, ytr, scaler)
                f1 = _f1(yva, _scores(est, Xva)[1])
                info["val_scores"][f"f1_C={C:g}"] = f1
                if best is None or f1 > best[0] + 1e-12 or (abs(f1 - best[0]) <= 1e-12 and C < best[1]):
                    best = (f1, C)
            C = best[1]
            info["selection"] = "val_f1"
        elif len(grid) == 1:
            C, info["selection"] = grid[0], "single"
        else:
            C, info["selection"] = float(params.get("C_fallback", 1.0)), "fallback"
            log.warning("validation set unusable for choosing C (empty or one class): C = C_fallback = %g", C)
        info["chosen"] = {"C": C}
    else:
        C = None
    est = make_estimator(classifier, params, C=C, seed=seed, lean=lean)
    Xfit, yfit = Xtr, ytr
    del Xtr  # from here on only Xfit holds the training rows (freed once the concatenation replaces them)
    if refit == "train_val" and val_ok:
        if lean:  # the scaler is refitted on train + val, from the rows as stored
            del Xfit
            Xfit = np.concatenate([train.features(tr_idx, np.float32), val.features(va_idx, np.float32)])
            scaler = standardise_in_place(Xfit)
        else:
            Xfit = np.concatenate([Xfit, Xva], dtype=np.float32)
        yfit = np.concatenate([yfit, yva])
    _fit(est, Xfit, yfit, scaler)
    del Xfit
    if val_ok:
        p = _scores(est, Xva)[1]
        info["val_scores"]["f1"] = _f1(yva, p)
        info["val_scores"]["accuracy"] = float(accuracy_score(yva, p))
    info["estimator"] = est
    return info


def load_model(path: str | Path) -> dict[str, Any]:
    """Load a model bundle written by :func:`save_model` (``results/models/{split}/{model}/AU{au}.npz``: arrays +
    JSON, never unpickled; a legacy pickle (``.joblib``) only when the user trusts it,
    :func:`au_transfer.persist.trust_legacy_pickles`)."""
    from .. import persist

    if persist.is_pickle(path):
        bundle = persist.load_legacy(path)
    else:
        bundle = persist.load(path)
    if not isinstance(bundle, dict) or "au" not in bundle or "estimator" not in bundle:
        raise ClassifierDataError(f"{path}: not a model bundle (a dict with 'au' and 'estimator'); "
                                  f"{persist.rerun_hint(path)}")
    return bundle


def save_model(bundle: Mapping[str, Any], path: str | Path) -> None:
    """Write a model bundle atomically, as arrays + JSON (:func:`au_transfer.persist.save`)."""
    from .. import persist

    persist.save(dict(bundle), path)


def prediction_frame(data: FrameData | FrameIndex, au: int, which: str, score: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """Rows of the predictions file for one set (:func:`au_transfer.predictions.prediction_rows`)."""
    return prediction_rows(data.subject, data.frame, au, which, score, pred.astype(int), data.y.astype(int))


def faceless_frame(data: FrameData | FrameIndex, au: int, which: str = "test") -> pd.DataFrame:
    """Rows for the labelled frames of ``data`` without a usable face (``data.faceless``): predicted absent, empty
    score, ``face = 0`` (:func:`au_transfer.predictions.faceless_rows`); written for the test set only."""
    f = data.faceless if data.faceless is not None else pd.DataFrame(columns=["subject", "frame", "y"])
    return faceless_rows(f["subject"].to_numpy(), f["frame"].to_numpy(np.int64), au, which,
                         f["y"].to_numpy().astype(int))


def feature_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The feature-file attributes a predictor needs to rebuild the features (plain Python types)."""
    keep = ("backbone", "layer", "weights", "weights_sha256", "input_size", "region", "dim", "mean_image",
            "mean_image_sha256")
    out = {}
    for k in keep:
        if k in attrs:
            v = attrs[k]
            out[k] = v.item() if hasattr(v, "item") and np.ndim(v) == 0 else (
                v.tolist() if hasattr(v, "tolist") else v)
    return out


def make_bundle(info: Mapping[str, Any], *, au: int, backbone: str, region: str, crop_region: str, classifier: str,
                params: Mapping[str, Any], seed: int, threshold: Threshold, balance: bool, refit: str, split: str,
                train: Sequence[str], val: Sequence[str], test: Sequence[str], attrs: Mapping[str, Any],
                counts: Mapping[str, Any]) -> dict[str, Any]:
    """The saved model bundle: everything needed to predict from features, and how the model was chosen."""
    return {
        "estimator": info.get("estimator"), "au": int(au), "backbone": backbone, "region": region,
        "crop_region": crop_region, "classifier": classifier, "params": dict(params),
        "chosen": dict(info.get("chosen", {})), "selection": info.get("selection", "none"),
        "val_scores": dict(info.get("val_scores", {})), "status": info.get("status", "ok"),
        "reason": info.get("reason", ""), "seed": int(seed), "threshold": as_threshold(threshold), "balance": bool(balance),
        "refit": refit, "implementation": info.get("implementation", "scikit-learn"), "split": split,
        "train_subjects": list(train), "val_subjects": list(val),
        "test_subjects": list(test), "n_train_pos": info.get("n_train_pos"), "n_train_neg": info.get("n_train_neg"),
        "feature_attrs": feature_attrs(attrs), "frame_counts": dict(counts),
    }

