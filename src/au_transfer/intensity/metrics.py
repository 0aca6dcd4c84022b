"""Intensity metrics (AU intensity 0-5 per frame): ICC(3,1), Pearson correlation, MAE and MSE.

ICC(3,1) is Shrout & Fleiss's intraclass correlation, two-way mixed, consistency, single rater, on the (n, 2)
matrix of prediction and truth of one AU (rows = frames, columns = the two "raters"):
``BMS = k * sum((row mean - grand mean)^2) / (n - 1)`` (k = 2 columns), ``EMS = (WSS - RSS) / ((n - 1)(k - 1))``
with ``WSS`` the within-row sum of squares and ``RSS`` the between-column sum of squares, and
``ICC = (BMS - EMS) / (BMS + (k - 1) EMS)``. A constant offset between prediction and truth leaves it unchanged
(consistency); a constant prediction gives 0 (the baseline the demo must beat).

Numpy/pandas only. Intensity tables (``results/intensity/predictions/{split}/{model}.csv``) have the columns
:data:`INTENSITY_COLUMNS`: ``value`` the predicted intensity (0-5, empty for a skipped AU), ``label`` the coded one,
``face`` 1 for a frame with a usable face, 0 for a test frame without one (value 0: no face, no intensity). The
metrics score every test frame of known intensity (``evaluation.invalid_frames: absent``) or those with a face
(``exclude``); ``n`` is the number scored, ``n_labelled`` / ``n_face`` the coverage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..evaluation import COVERAGE_COLUMNS, nan_aus, rows_to_score

INTENSITY_COLUMNS: list[str] = ["subject", "frame", "au", "set", "value", "label", "face"]
METRIC_COLUMNS: list[str] = ["model", "split", "au", "icc", "pcc", "mae", "mse", "n", *COVERAGE_COLUMNS]


class IntensityError(ValueError):
    """An intensity table cannot be scored; the message names the file or model and what is wrong."""


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, np.float64).ravel(), np.asarray(truth, np.float64).ravel()
    if p.shape != t.shape:
        raise IntensityError(f"prediction ({p.size}) and truth ({t.size}) differ in length")
    return p, t


def icc31(pred: np.ndarray, truth: np.ndarray) -> float:
    """ICC(3,1) of prediction and truth (see the module docstring); NaN with fewer than 2 frames or no variance
    at all, 0 when one column is constant and the other is not."""
    p, t = _pair(pred, truth)
    n, k = len(p), 2
    if n < 2:
        return float("nan")
    Y = np.column_stack([p, t])
    grand = Y.mean()
    bms = k * ((Y.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    wss = ((Y - Y.mean(axis=1, keepdims=True)) ** 2).sum()
    rss = n * ((Y.mean(axis=0) - grand) ** 2).sum()
    ems = (wss - rss) / ((n - 1) * (k - 1))
    denom = bms + (k - 1) * ems
    if denom <= 0:
        return float("nan")
    return float((bms - ems) / denom)


def pearson(pred: np.ndarray, truth: np.ndarray) -> float:
    """Pearson correlation; 0 when exactly one side is constant, NaN when both are (or fewer than 2 frames)."""
    p, t = _pair(pred, truth)
    if len(p) < 2:
        return float("nan")
    sp, st = p.std(), t.std()
    if sp == 0 or st == 0:
        return float("nan") if sp == st else 0.0
    return float(((p - p.mean()) * (t - t.mean())).mean() / (sp * st))


def intensity_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``icc, pcc, mae, mse, n`` of one AU."""
    p, t = _pair(pred, truth)
    err = p - t
    return {"icc": icc31(p, t), "pcc": pearson(p, t), "mae": float(np.abs(err).mean()) if len(p) else np.nan,
            "mse": float((err ** 2).mean()) if len(p) else np.nan, "n": int(len(p))}


def check_intensity(df: pd.DataFrame, name: str = "intensity predictions") -> pd.DataFrame:
    """Columns, set val|test, label a number in 0..5, value in 0..5 or empty, no duplicate key; normalised copy."""
    missing = [c for c in INTENSITY_COLUMNS if c not in df.columns and c != "face"]
    if missing:
        raise IntensityError(f"{name}: missing column(s) {missing}; columns are {list(df.columns)}")
    df = df.assign(face=1) if "face" not in df.columns else df  # a table from before the column: faces only
    out = df[INTENSITY_COLUMNS].copy()
    bad = ~out["face"].isin([0, 1])
    if bad.any():
        r = out[bad].iloc[0]
        raise IntensityError(f"{name}: subject {r['subject']} frame {r['frame']} AU{r['au']}: face {r['face']!r} "
                             "is not 0/1")
    out["face"] = out["face"].astype(np.int8)
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    out["label"] = pd.to_numeric(out["label"], errors="coerce")
    bad_set = ~out["set"].isin(["val", "test"])
    if bad_set.any():
        raise IntensityError(f"{name}: set must be val or test, got {out.loc[bad_set, 'set'].iloc[0]!r}")
    for col in ("value", "label"):
        v = out[col]
        bad = (v < 0) | (v > 5) | (v.isna() if col == "label" else False)
        if bad.any():
            r = out[bad].iloc[0]
            raise IntensityError(f"{name}: subject {r['subject']} frame {r['frame']} AU{r['au']}: {col} "
                                 f"{str(df.loc[bad, col].iloc[0])!r} is not a number in 0..5")
    if out.duplicated(["subject", "frame", "au", "set"]).any():
        r = out[out.duplicated(["subject", "frame", "au", "set"])].iloc[0]
        raise IntensityError(f"{name}: subject {r['subject']} frame {r['frame']} AU{r['au']} set {r['set']} is "
                             "listed twice")
    return out


def intensity_metrics(pred: pd.DataFrame, model: str = "", split: str = "", aus: Sequence[int] | None = None,
                      name: str = "intensity predictions", invalid_frames: str = "absent") -> pd.DataFrame:
    """Per-AU ICC(3,1), PCC, MAE and MSE on the test rows, plus a ``mean`` row over the AUs (columns
    :data:`METRIC_COLUMNS`). A skipped AU (empty values) scores as the constant prediction 0: ICC 0, PCC 0. An AU
    whose metric is NaN (no variance at all) is left out of that metric's mean, with a warning.
    ``invalid_frames``: ``absent`` scores every test frame of known intensity (one without a usable face at the
    intensity its table gives, 0), ``exclude`` those with a face only; ``n_labelled``, ``n_face`` the coverage."""
    pred = check_intensity(pred, name)
    rows = []
    for au, g, cover in rows_to_score(pred, aus, name, IntensityError, invalid_frames=invalid_frames):
        rows.append({"model": model, "split": split, "au": str(au),
                     **intensity_scores(g["value"].fillna(0.0).to_numpy(), g["label"].to_numpy()), **cover,
                     "invalid_frames": invalid_frames})
    out = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    for c in ("icc", "pcc", "mae", "mse"):  # a NaN (no variance at all) is left out of the mean: say so
        nan_aus(out, (c,), what=f"{name}: model {model}, split {split}, mean {c}")
    mean = {"model": model, "split": split, "au": "mean",
            **{c: float(out[c].mean()) for c in ("icc", "pcc", "mae", "mse")},
            **{c: int(out[c].sum()) for c in ("n", "n_labelled", "n_face")}, "invalid_frames": invalid_frames}
    return pd.concat([out, pd.DataFrame([mean])], ignore_index=True)[METRIC_COLUMNS]
