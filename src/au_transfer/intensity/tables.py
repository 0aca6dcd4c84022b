"""Intensity tables of the workflow: merged per-model predictions, per-model metrics, the summary, and ensembles
of regressors (the mean of the members, or a weighting fitted on validation) scored like models.

Ensembles of regressors work on the members' prediction tables: ``mean`` averages their values; ``weighted``
weights each member per AU by its ICC on the **validation** rows (negative ICCs count as 0; all zero: the mean),
so that no test row ever shapes the combination. The fitted weights are written beside the predictions.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..io import write_csv_atomic, write_text_atomic
from .metrics import (
    INTENSITY_COLUMNS,
    METRIC_COLUMNS,
    IntensityError,
    check_intensity,
    icc31,
    intensity_metrics,
)

KEYS = ["subject", "frame", "au", "set"]
VALUE_COLUMNS: list[str] = ["icc", "pcc", "mae", "mse"]
#: The intensity summary: :data:`METRIC_COLUMNS`, then the spread over the seeded runs (config ``seeds``).
SUMMARY_COLUMNS: list[str] = [*METRIC_COLUMNS, *(f"{v}_sd" for v in VALUE_COLUMNS), "n_seeds"]
log = logging.getLogger(__name__)


def read_intensity(path: str | os.PathLike[str], *, filled: bool = True) -> pd.DataFrame:
    """One intensity table, checked (:func:`check_intensity`); ``filled=False``: as read, unchecked."""
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise IntensityError(f"{path}: cannot read the intensity predictions: {exc}") from exc
    except pd.errors.EmptyDataError:
        df = pd.DataFrame(columns=INTENSITY_COLUMNS)
    return check_intensity(df, str(path)) if filled else df


def merge_intensity(paths: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str]) -> pd.DataFrame:
    """Concatenate per-AU intensity predictions into one checked table (written atomically). A per-AU table
    without the ``face`` column was written before the test rows kept the frames without a usable face: an error
    asking to rerun its job."""
    parts = []
    for p in paths:
        part = read_intensity(p, filled=False)
        if len(part) and "face" not in part.columns:
            raise IntensityError(f"{p}: no 'face' column: written before the test predictions kept the frames "
                                 "without a usable face; rerun its fit job (e.g. snakemake --forcerun of its rule)")
        parts.append(check_intensity(part, str(p)))
    df = pd.concat(parts, ignore_index=True)
    df = check_intensity(df.sort_values(["au", "set", "subject", "frame"], kind="stable"), str(out))
    write_csv_atomic(df, out)
    return df


def write_metrics(pred_path: str | os.PathLike[str], out: str | os.PathLike[str], *, model: str, split: str,
                  aus: Sequence[int], invalid_frames: str = "absent") -> pd.DataFrame:
    """Per-AU and mean ICC/PCC/MAE/MSE of one model's test rows (:func:`intensity_metrics`, ``invalid_frames`` as
    there). An AU without any test frame of known intensity (e.g. an AU the corpus codes for occurrence only) is
    left out, with a warning."""
    pred = read_intensity(pred_path)
    present = set(pred.loc[pred["set"] == "test", "au"].astype(int))
    absent = [int(a) for a in aus if int(a) not in present]
    if absent:
        log.warning("%s: no test frame of known intensity for AU(s) %s; left out of the metrics", pred_path, absent)
    m = intensity_metrics(pred, model, split, [int(a) for a in aus if int(a) in present], name=str(pred_path),
                          invalid_frames=invalid_frames)
    write_csv_atomic(m, out)
    return m


def write_summary(paths: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str],
                  seeds: Iterable[int] | None = None) -> pd.DataFrame:
    """Every model's intensity metrics in one table; ``seeds`` gives the run (seed offset, config ``seeds``) of each
    file (default: all run 0). A model with several runs gets the mean of each metric over them, its standard
    deviation ``{metric}_sd`` and ``n_seeds`` (:data:`SUMMARY_COLUMNS`; one run: its values, empty ``_sd``)."""
    from ..evaluation import COVERAGE_COLUMNS, over_seeds

    paths = list(paths)
    runs = [0] * len(paths) if seeds is None else [int(s) for s in seeds]
    if len(runs) != len(paths):
        raise IntensityError(f"{out}: {len(runs)} seeds for {len(paths)} intensity metrics files")
    parts = [pd.read_csv(p, dtype={"au": str}).reindex(columns=METRIC_COLUMNS).assign(seed=s)  # older: no coverage
             for p, s in zip(paths, runs, strict=True)]
    if not parts:
        df = pd.DataFrame(columns=SUMMARY_COLUMNS)
    else:
        df = over_seeds(pd.concat(parts, ignore_index=True), VALUE_COLUMNS, ["n", *COVERAGE_COLUMNS])
    write_csv_atomic(df[SUMMARY_COLUMNS], out)
    return df


def ensemble_weights(V_val: np.ndarray, label_val: np.ndarray, method: str) -> np.ndarray:
    """One AU's member weights (summing to 1) from the members' values ``V_val`` (n, M) on the **validation** rows:
    equal for ``mean``; for ``weighted`` each member's ICC (NaN as 0: a skipped member), negatives as 0, all zero:
    equal."""
    M = V_val.shape[1]
    w = np.ones(M)
    if method == "weighted":
        iccs = np.array([icc31(np.nan_to_num(V_val[:, j]), label_val) if len(V_val) else np.nan for j in range(M)])
        w = np.clip(np.nan_to_num(iccs, nan=0.0), 0, None)
        if w.sum() == 0:
            w = np.ones(M)
    return w / w.sum()


def combine_intensity(V: np.ndarray, w: Sequence[float]) -> np.ndarray:
    """The ensemble's intensity of each row of the members' values ``V`` (n, M): their weighted mean, a skipped
    member (NaN) not voting (all NaN: NaN). The one combination of the workflow's tables and the predictor's
    :class:`~au_transfer.models.IntensityEnsembleModel`."""
    Vm = np.ma.masked_invalid(np.asarray(V, np.float64).reshape(len(V), -1))
    return np.ma.average(Vm, axis=1, weights=np.asarray(w, np.float64)).filled(np.nan)


def ensemble_intensity(member_paths: Sequence[str | os.PathLike[str]], members: Sequence[str], method: str,
                       out: str | os.PathLike[str], params_out: str | os.PathLike[str], name: str = "",
                       threshold: int | None = None) -> pd.DataFrame:
    """Combine the members' intensity predictions (rows present in every member): ``mean`` or ``weighted`` (per-AU
    weights from the members' validation ICC). Writes the predictions and ``{name, method, members, weights,
    threshold}`` (the run's occurrence threshold, for the predictor's ``pred``)."""
    if method not in ("mean", "weighted"):
        raise IntensityError(f"ensemble {name}: method must be mean or weighted, got {method!r}")
    tables = [read_intensity(p).set_index(KEYS) for p in member_paths]
    common = tables[0].index
    for t in tables[1:]:
        common = common.intersection(t.index)
    if not len(common):
        raise IntensityError(f"ensemble {name}: its members {list(members)} share no predicted frame")
    common = common.sort_values()
    V = np.column_stack([t.loc[common, "value"].to_numpy(np.float64) for t in tables])
    label = tables[0].loc[common, "label"].to_numpy(np.float64)
    face = np.min(np.column_stack([t.loc[common, "face"].to_numpy() for t in tables]), axis=1)
    keys = common.to_frame(index=False)
    weights: dict[str, list[float]] = {}
    value = np.full(len(keys), np.nan)
    for au in sorted(keys["au"].unique()):
        rows = (keys["au"] == au).to_numpy()
        val = rows & (keys["set"] == "val").to_numpy()
        w = ensemble_weights(V[val], label[val], method)
        value[rows] = combine_intensity(V[rows], w)  # a skipped member (empty values) does not vote
        weights[str(int(au))] = [float(x) for x in w]
    value[face == 0] = 0.0  # a frame without a usable face: intensity 0, whatever the members say
    df = keys.assign(value=value, label=label, face=face)[INTENSITY_COLUMNS]
    write_csv_atomic(df, out)
    write_text_atomic(json.dumps({"name": name, "method": method, "members": list(members), "weights": weights,
                                  "threshold": threshold}, indent=1), params_out)
    return df


def per_au_table(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows = (model, split), columns = AUs then ``mean``: one intensity metric for the report."""
    if metrics.empty:
        return pd.DataFrame()
    wide = metrics.pivot_table(index=["model", "split"], columns="au", values=metric, aggfunc="first")
    aus = sorted((c for c in wide.columns if c != "mean"), key=int)
    wide = wide[aus + (["mean"] if "mean" in wide.columns else [])]
    wide.columns = [f"AU{c}" if c != "mean" else "mean" for c in wide.columns]
    order = wide["mean"].sort_values(ascending=metric in ("mae", "mse")).index if "mean" in wide else wide.index
    return wide.loc[order].reset_index()
