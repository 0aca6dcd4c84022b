"""The classifiers stage's jobs: one (split, model, AU) fit of a frame classifier or an LSTM, its validation and
test predictions and its bundle. Scoring goes through the AU-model interface (:mod:`au_transfer.models`), the same
code the predictor runs; the LSTM's torch is imported only by LSTM jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import write_csv_atomic
from ..labels import Threshold, as_threshold
from ..models import model_from_bundle
from ..models.base import split_median
from ..predictions import empty_predictions
from .data import check_subject_exclusive, index_frames, load_frames
from .frame import faceless_frame, fit_frame_classifier, make_bundle, prediction_frame, save_model

log = logging.getLogger(__name__)


def fit_job_args(sm: Any) -> dict[str, Any]:
    """The keyword arguments every per-(split, model, AU) fit job takes from its Snakemake rule (``fit_frame``,
    ``fit_lstm``, ``fit_regress``, ``fit_lstm_regress``): each set's subjects with their feature and label files,
    the AU, model and split wildcards, the rule's options, seed and threshold, and the two outputs."""
    p = sm.params
    sets = p.sets
    subjects = [*sets["train"], *sets["val"], *sets["test"]]
    return {"feature_paths": dict(zip(subjects, p.features, strict=True)),
            "label_paths": dict(zip(subjects, sm.input.labels, strict=True)),
            "train": sets["train"], "val": sets["val"], "test": sets["test"], "au": int(sm.wildcards.au),
            "backbone": sm.wildcards.backbone, "region": sm.wildcards.region, "crop_region": p.crop_region,
            "params": dict(p.options), "seed": int(p.seed), "threshold": as_threshold(p.threshold),
            "split": sm.wildcards.split, "model_out": sm.output.model, "pred_out": sm.output.pred}


def predict_bundle(bundle: Mapping[str, Any], X: np.ndarray, *, normalised: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(score, pred)`` of a fitted bundle on features ``X`` (N, D) (for an LSTM: one sequence in frame order).

    Higher score = more present; ``pred`` is 0/1. A skipped AU (no model) gives NaN scores and ``pred = 0``.
    ``normalised``: a ``*_med`` model's features already have each recording's median subtracted (else a running
    median of ``X``, as in the predictor).
    """
    model = model_from_bundle(bundle)
    return model.score(X, normalised=True) if normalised else model.score(X)


def run_frame_job(*, feature_paths: Mapping[str, str], label_paths: Mapping[str, str], train: Sequence[str],
                  val: Sequence[str], test: Sequence[str], au: int, backbone: str, region: str, crop_region: str,
                  classifier: str, params: Mapping[str, Any], seed: int, threshold: Threshold, balance: bool = True,
                  refit: str = "train", model_out: str | Path, pred_out: str | Path, split: str = "") -> dict:
    """One (split, model, AU) job: fit on train (select on val), predict val + test, write both files; the
    labelled test frames without a usable face are written as predicted absent (``face = 0``).

    Memory: labels and ``valid`` of every subject are read first (:func:`index_frames`); then only the features of
    the balanced training and validation rows (for the fit), and each set's rows, subject by subject, as stored
    (float16), to score them (one scoring call per set: :func:`~au_transfer.classifiers.frame.decision_values`).

    ``classifier`` ``lda_med`` / ``svm_med``: person-specific normalisation, each recording's features minus its own
    median over its valid frames (:func:`~au_transfer.classifiers.data.sequence_medians`; a test recording is
    normalised by itself, never by training data or another recording).
    """
    check_subject_exclusive(train, val, test, split)
    base, median = split_median(classifier)
    tr = index_frames(feature_paths, label_paths, au, threshold, train, median=median)
    va = index_frames(feature_paths, label_paths, au, threshold, val, median=median) if val else None
    te = index_frames(feature_paths, label_paths, au, threshold, test, median=median)
    log.info("AU%d %s-%s-%s split %s: train %d frames (%d pos), val %d, test %d", au, backbone, region, classifier,
             split, len(tr), int(tr.y.sum()), len(va) if va is not None else 0, len(te))
    info = fit_frame_classifier(tr, va, base, params, seed=seed, balance=balance, refit=refit)
    if info["status"] == "skipped":
        log.warning("AU%d skipped for %s-%s-%s on split %s: %s; predictions have empty scores and pred = 0",
                    au, backbone, region, classifier, split, info["reason"])
    bundle = make_bundle(info, au=au, backbone=backbone, region=region, crop_region=crop_region,
                         classifier=classifier, params=params, seed=seed, threshold=threshold, balance=balance,
                         refit=refit, split=split, train=train, val=val, test=test, attrs=tr.attrs,
                         counts={**tr.counts, **(va.counts if va is not None else {}), **te.counts})
    bundle["normalise"] = "median" if median else "none"
    rows = []
    for which, data in (("val", va), ("test", te)):
        if data is None or not len(data):
            continue
        score, pred = predict_bundle(bundle, data.features(), normalised=True)
        rows.append(prediction_frame(data, au, which, score, pred))
    rows.append(faceless_frame(te, au))  # labelled test frames without a usable face: predicted absent
    preds = pd.concat([r for r in rows if len(r)] or [empty_predictions()], ignore_index=True)
    save_model(bundle, model_out)
    write_csv_atomic(preds, pred_out)
    return bundle


def run_lstm_job(*, feature_paths: Mapping[str, str], label_paths: Mapping[str, str], train: Sequence[str],
                 val: Sequence[str], test: Sequence[str], au: int, backbone: str, region: str, crop_region: str,
                 params: Mapping[str, Any], seed: int, threshold: Threshold, model_out: str | Path,
                 pred_out: str | Path, split: str = "") -> dict:
    """One (split, LSTM model, AU) job: cut train/val sequences, train, predict full val and test sequences (the
    frames with a face, in frame order); the labelled test frames without a usable face are written as predicted
    absent (``face = 0``)."""
    check_subject_exclusive(train, val, test, split)
    tr = load_frames(feature_paths, label_paths, au, threshold, train)
    va = load_frames(feature_paths, label_paths, au, threshold, val) if val else None
    te = load_frames(feature_paths, label_paths, au, threshold, test)
    from .lstm import LSTM_KEYS, LSTMClassifier, _cut

    rng = np.random.default_rng(seed)
    Xtr, ytr = _cut(tr, params, rng)
    Xva, yva = _cut(va, params, rng) if va is not None and len(va) else ([], [])
    n_pos = int(tr.y.sum())
    info: dict[str, Any] = {"status": "ok", "reason": "", "chosen": {}, "val_scores": {}, "selection": "none",
                            "n_train_pos": n_pos, "n_train_neg": int(len(tr) - n_pos)}
    log.info("AU%d %s-%s-lstm split %s: %d training sequences (%d frames of %d), %d validation sequences",
             au, backbone, region, split, len(Xtr), sum(len(s) for s in Xtr), len(tr), len(Xva))
    if n_pos == 0 or n_pos == len(tr):
        info.update(status="skipped", estimator=None,
                    reason=f"training set has {n_pos} positive and {len(tr) - n_pos} negative frames")
        log.warning("AU%d skipped for %s-%s-lstm on split %s: %s", au, backbone, region, split, info["reason"])
    else:
        kwargs = {k: params[k] for k in LSTM_KEYS if k in params}
        est = LSTMClassifier(seed=seed, **kwargs).fit(Xtr, ytr, Xva or None, yva or None)
        info["estimator"] = est
        info["chosen"] = {"best_epoch": est.best_epoch_, "epochs_run": len(est.history_)}
        if est.history_ and "val_f1" in est.history_[est.best_epoch_ - 1]:
            h = est.history_[est.best_epoch_ - 1]
            info["val_scores"] = {"f1": h["val_f1"], "loss": h["val_loss"]}
        info["selection"] = "early_stopping"
    bundle = make_bundle(info, au=au, backbone=backbone, region=region, crop_region=crop_region,
                         classifier="lstm", params=params, seed=seed, threshold=threshold, balance=False,
                         refit="train", split=split, train=train, val=val, test=test, attrs=tr.attrs,
                         counts={**tr.counts, **(va.counts if va is not None else {}), **te.counts})
    rows = []
    for which, data in (("val", va), ("test", te)):
        if data is None or not len(data):
            continue
        for rows_s in data.sequences():  # each subject's full sequence
            score, pred = predict_bundle(bundle, data.X[rows_s])
            rows.append(prediction_frame(data.subset(rows_s), au, which, score, pred))
    rows.append(faceless_frame(te, au))  # labelled test frames without a usable face: predicted absent
    preds = pd.concat([r for r in rows if len(r)] or [empty_predictions()], ignore_index=True)
    save_model(bundle, model_out)
    write_csv_atomic(preds, pred_out)
    return bundle
