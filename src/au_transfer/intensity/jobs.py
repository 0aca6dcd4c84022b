"""The intensity jobs of the workflow: one (split, regressor model, AU) fit with its validation and test
predictions, and the tables after it (merged predictions, metrics, summary, regressor ensembles).

Scoring goes through the AU-model interface (:class:`au_transfer.models.RegressorModel`), as the predictor's does;
a ``*_med`` model's job subtracts each sequence's median over its valid frames (the whole sequence is known here;
the predictor uses a running median instead, :class:`~au_transfer.models.RunningMedian`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..classifiers.data import check_subject_exclusive, index_frames, load_frames
from ..classifiers.frame import make_bundle, save_model
from ..io import write_csv_atomic
from ..models import model_from_bundle
from .linear import fit_regressor, parse_regressor
from .lstm import fit_lstm
from .metrics import INTENSITY_COLUMNS

log = logging.getLogger(__name__)


def intensity_rows(data: Any, au: int, which: str, value: np.ndarray) -> pd.DataFrame:
    """Rows of an intensity predictions file (:data:`~au_transfer.intensity.metrics.INTENSITY_COLUMNS`)."""
    return pd.DataFrame({"subject": data.subject, "frame": data.frame, "au": int(au), "set": which,
                         "value": np.asarray(value, np.float64), "label": np.asarray(data.y, np.float64),
                         "face": 1}, columns=INTENSITY_COLUMNS)


def faceless_intensity_rows(data: Any, au: int, which: str = "test") -> pd.DataFrame:
    """Rows for the labelled frames of ``data`` without a usable face (``data.faceless``): intensity 0, ``face = 0``
    (written for the test set only, so that the metrics can score every test frame of known intensity)."""
    f = data.faceless if data.faceless is not None else pd.DataFrame(columns=["subject", "frame", "y"])
    return pd.DataFrame({"subject": f["subject"].to_numpy(), "frame": f["frame"].to_numpy(np.int64), "au": int(au),
                         "set": which, "value": 0.0, "label": f["y"].to_numpy(np.float64), "face": 0},
                        columns=INTENSITY_COLUMNS)


def _table(rows: list[pd.DataFrame]) -> pd.DataFrame:
    rows = [r for r in rows if len(r)]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=INTENSITY_COLUMNS)


def run_regress_job(*, feature_paths: Mapping[str, str], label_paths: Mapping[str, str], train: Sequence[str],
                    val: Sequence[str], test: Sequence[str], au: int, backbone: str, region: str, crop_region: str,
                    regressor: str, params: Mapping[str, Any], seed: int, threshold: int, model_out: str | Path,
                    pred_out: str | Path, split: str = "") -> dict:
    """Fit one AU's regressor on train (C/alpha chosen on validation by ICC), predict val + test, write both.

    Frames: valid and of known intensity (unknown cells are left out); the test frames of known intensity without
    a usable face are written with intensity 0 (``face = 0``). Person-specific normalisation
    (``regressor`` ``*_med``): every subject's medians come from its own sequences only (a test sequence is
    normalised by itself, never by training data, and the scaler is fitted on training frames only).
    """
    check_subject_exclusive(train, val, test, split)
    base, median = parse_regressor(regressor)
    idx = {which: index_frames(feature_paths, label_paths, au, threshold, subjects, intensity=True, median=median)
           for which, subjects in (("train", train), ("val", val), ("test", test)) if subjects}
    tr, va, te = idx["train"], idx.get("val"), idx["test"]
    log.info("AU%d %s-%s-%s split %s: train %d frames, val %d, test %d", au, backbone, region, regressor, split,
             len(tr), len(va) if va is not None else 0, len(te))
    info = fit_regressor(tr, va, base, params, seed=seed, sampling=str(params.get("sampling", "stratified")))
    if info["status"] == "skipped":
        log.warning("AU%d skipped for %s-%s-%s on split %s: %s; its values are empty", au, backbone, region,
                    regressor, split, info["reason"])
    counts = {**tr.counts, **(va.counts if va is not None else {}), **te.counts}
    bundle = make_bundle(info, au=au, backbone=backbone, region=region, crop_region=crop_region,
                         classifier=regressor, params=params, seed=seed, threshold=threshold, balance=False,
                         refit="train", split=split, train=train, val=val, test=test, attrs=tr.attrs, counts=counts)
    bundle.update(normalise="median" if median else "none", sampling=str(params.get("sampling", "stratified")),
                  n_train=info["n_train"], n_val=info["n_val"])
    model = model_from_bundle(bundle)
    rows = []
    for which, data in (("val", va), ("test", te)):
        if data is None or not len(data):
            continue
        value, _ = model.score(data.features(), normalised=True)
        rows.append(intensity_rows(data, au, which, value))
    rows.append(faceless_intensity_rows(te, au))  # test frames without a usable face: intensity 0
    preds = _table(rows)
    save_model(bundle, model_out)
    write_csv_atomic(preds, pred_out)
    return bundle


def run_lstm_regress_job(*, feature_paths: Mapping[str, str], label_paths: Mapping[str, str], train: Sequence[str],
                         val: Sequence[str], test: Sequence[str], au: int, backbone: str, region: str,
                         crop_region: str, params: Mapping[str, Any], seed: int, threshold: int,
                         model_out: str | Path, pred_out: str | Path, split: str = "") -> dict:
    """One (split, LSTM regressor, AU) job: cut train/val sequences, train, predict the full val and test
    sequences (frames valid and of known intensity)."""
    from ..classifiers.lstm import _cut

    check_subject_exclusive(train, val, test, split)
    tr = load_frames(feature_paths, label_paths, au, threshold, train, intensity=True)
    va = load_frames(feature_paths, label_paths, au, threshold, val, intensity=True) if val else None
    te = load_frames(feature_paths, label_paths, au, threshold, test, intensity=True)
    rng = np.random.default_rng(seed)
    Xtr, ytr = _cut(tr, params, rng)
    Xva, yva = _cut(va, params, rng) if va is not None and len(va) else ([], [])
    log.info("AU%d %s-%s-lstmr split %s: %d training sequences (%d frames of %d), %d validation sequences", au,
             backbone, region, split, len(Xtr), sum(len(s) for s in Xtr), len(tr), len(Xva))
    info = fit_lstm(Xtr, ytr, Xva, yva, params, seed)
    if info["status"] == "skipped":
        log.warning("AU%d skipped for %s-%s-lstmr on split %s: %s", au, backbone, region, split, info["reason"])
    bundle = make_bundle(info, au=au, backbone=backbone, region=region, crop_region=crop_region, classifier="lstmr",
                         params=params, seed=seed, threshold=threshold, balance=False, refit="train", split=split,
                         train=train, val=val, test=test, attrs=tr.attrs,
                         counts={**tr.counts, **(va.counts if va is not None else {}), **te.counts})
    bundle.update(normalise="none", n_train=info["n_train"], n_val=info["n_val"])
    model = model_from_bundle(bundle, device=str(params.get("device", "cpu")))
    rows = []
    for which, data in (("val", va), ("test", te)):
        if data is None or not len(data):
            continue
        for seq in data.sequences():  # each subject's full sequence, from a fresh state
            model.reset()
            value, _ = model.score(data.X[seq])
            rows.append(intensity_rows(data.subset(seq), au, which, value))
    rows.append(faceless_intensity_rows(te, au))  # test frames without a usable face: intensity 0
    preds = _table(rows)
    save_model(bundle, model_out)
    write_csv_atomic(preds, pred_out)
    return bundle
