"""The prediction table: ``results/predictions/{split}/{model}[/AU{au}].csv``, one home for its definition.

Columns :data:`PRED_COLUMNS` = ``subject, frame, au, set, score, pred, label``: one row per valid, labelled frame and
AU; ``set`` is ``val`` or ``test``; ``score`` is the model's decision value or probability of "present" (higher =
more present), empty (NaN) for an AU that the model skipped; ``pred`` and ``label`` are 0/1. The classifiers,
fine-tuning and ensembles write it (:func:`prediction_rows`), the metrics and ensembles check it
(:func:`check_predictions`).

Needs numpy and pandas only (no torch): the many small LDA/SVM jobs and the metrics import it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PRED_COLUMNS: list[str] = ["subject", "frame", "au", "set", "score", "pred", "label"]
#: The columns that identify a row: no two rows of a table share them.
KEYS: tuple[str, ...] = ("subject", "frame", "au", "set")
SETS: tuple[str, ...] = ("val", "test")


class PredictionError(ValueError):
    """A prediction table is malformed; the message names the file or model, subject, frame and AU."""


def prediction_rows(subject: Any, frame: Any, au: Any, set: str, score: Any, pred: Any, label: Any) -> pd.DataFrame:
    """A prediction table (columns :data:`PRED_COLUMNS`, in that order) from per-row arrays (or one value for all
    rows, e.g. ``au`` and ``set``). Values are taken as given: ``pred`` and ``label`` should be 0/1 integers."""
    return pd.DataFrame({"subject": subject, "frame": frame, "au": au, "set": set, "score": score, "pred": pred,
                         "label": label})[PRED_COLUMNS]


def empty_predictions() -> pd.DataFrame:
    """A prediction table without rows (a job with no val and no test frame)."""
    return pd.DataFrame(columns=PRED_COLUMNS)


def check_predictions(df: pd.DataFrame, name: str = "predictions", *,
                      error: type[Exception] = PredictionError) -> pd.DataFrame:
    """Validate a prediction table; returns a normalised copy (the columns of :data:`PRED_COLUMNS` only, ``frame``
    and ``au`` int64, ``pred`` and ``label`` int8, ``score`` float).

    Checks: every column present; ``pred`` and ``label`` 0/1; ``score`` a finite number or empty (an AU that a model
    skipped has an empty score and ``pred = 0``; such a member votes "absent" in an ensemble); ``set`` val or test;
    no two rows with the same (subject, frame, au, set). Raises ``error`` (the caller's error class, default
    :class:`PredictionError`) naming ``name`` (the file or model), the subject, frame and AU.
    """
    missing = [c for c in PRED_COLUMNS if c not in df.columns]
    if missing:
        raise error(f"{name}: missing column(s) {missing}; expected {PRED_COLUMNS}")
    df = df.loc[:, PRED_COLUMNS].copy()
    df["frame"] = df["frame"].astype(np.int64)
    df["au"] = df["au"].astype(np.int64)
    for col in ("pred", "label"):
        bad = ~df[col].isin([0, 1])
        if bad.any():
            r = df[bad].iloc[0]
            raise error(f"{name}: subject {r.subject} frame {r.frame} AU{r.au}: {col}={r[col]} is not 0/1")
        df[col] = df[col].astype(np.int8)
    score = pd.to_numeric(df["score"], errors="coerce").to_numpy(dtype=float)
    bad = np.isinf(score) | (np.isnan(score) & df["score"].notna().to_numpy())
    if bad.any():
        r = df[bad].iloc[0]
        raise error(f"{name}: subject {r.subject} frame {r.frame} AU{r.au}: score {r.score} is not a finite "
                    "number (an empty score, for an AU the model skipped, is allowed)")
    df["score"] = score
    bad_set = ~df["set"].isin(SETS)
    if bad_set.any():
        r = df[bad_set].iloc[0]
        raise error(f"{name}: subject {r.subject} frame {r.frame}: set {r.set!r} is not val or test")
    dup = df.duplicated(list(KEYS))
    if dup.any():
        r = df[dup].iloc[0]
        raise error(f"{name}: subject {r.subject} frame {r.frame} AU{r.au} ({r.set}) appears twice")
    return df


def read_predictions(path: str | os.PathLike[str], *, error: type[Exception] = PredictionError) -> pd.DataFrame:
    """Read one prediction table and check it (:func:`check_predictions`); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: prediction file does not exist")
    df = pd.read_csv(path, dtype={"subject": str, "set": str})
    return check_predictions(df, str(path), error=error)
