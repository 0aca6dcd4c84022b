"""The prediction table: ``results/predictions/{split}/{model}[/AU{au}].csv``, one home for its definition.

Columns :data:`PRED_COLUMNS` = ``subject, frame, au, set, score, pred, label, face``: one row per frame and AU;
``set`` is ``val`` or ``test``; ``score`` is the model's decision value or probability of "present" (higher =
more present), empty (NaN) for an AU that the model skipped; ``pred`` and ``label`` are 0/1. ``face`` is 1 for a
frame with a usable face (valid in the face store) and 0 for a labelled **test** frame without one: such a frame
is kept, predicted absent (empty score, ``pred = 0``; :func:`faceless_rows`), so that the metrics can score every
labelled test frame (``evaluation.invalid_frames``: ``absent``, or ``exclude`` to leave them out) and every
model's table holds the same frames. Validation rows are frames with a face only. The classifiers, fine-tuning and
ensembles write it (:func:`prediction_rows`), the metrics and ensembles check it (:func:`check_predictions`).

Needs numpy and pandas only (no torch): the many small LDA/SVM jobs and the metrics import it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PRED_COLUMNS: list[str] = ["subject", "frame", "au", "set", "score", "pred", "label", "face"]
#: The columns that identify a row: no two rows of a table share them.
KEYS: tuple[str, ...] = ("subject", "frame", "au", "set")
SETS: tuple[str, ...] = ("val", "test")
#: ``evaluation.invalid_frames``: how the metrics count a labelled test frame without a usable face (``face = 0``):
#: ``absent`` scores it as predicted absent (intensity 0), ``exclude`` leaves it out (the frames with a face only).
INVALID_FRAMES: tuple[str, ...] = ("absent", "exclude")


class PredictionError(ValueError):
    """A prediction table is malformed; the message names the file or model, subject, frame and AU."""


def prediction_rows(subject: Any, frame: Any, au: Any, set: str, score: Any, pred: Any, label: Any,
                    face: Any = 1) -> pd.DataFrame:
    """A prediction table (columns :data:`PRED_COLUMNS`, in that order) from per-row arrays (or one value for all
    rows, e.g. ``au`` and ``set``). Values are taken as given: ``pred``, ``label`` and ``face`` should be 0/1
    integers (``face`` 1: frames with a usable face, the default)."""
    return pd.DataFrame({"subject": subject, "frame": frame, "au": au, "set": set, "score": score, "pred": pred,
                         "label": label, "face": face})[PRED_COLUMNS]


def faceless_rows(subject: Any, frame: Any, au: Any, set: str, label: Any) -> pd.DataFrame:
    """Rows for labelled frames without a usable face: predicted absent (empty score, ``pred = 0``), ``face = 0``.
    Every model kind writes them for its test frames, so that the metrics can score every labelled test frame."""
    n = len(np.atleast_1d(frame))
    return prediction_rows(subject, frame, au, set, np.full(n, np.nan), np.zeros(n, np.int64), label,
                           np.zeros(n, np.int64))


def check_invalid_frames(invalid_frames: str, *, error: type[Exception] = ValueError) -> str:
    """``invalid_frames`` if it is one of :data:`INVALID_FRAMES`, else ``error`` naming the config key."""
    if invalid_frames not in INVALID_FRAMES:
        raise error(f"config key 'evaluation.invalid_frames': {invalid_frames!r} is not one of {list(INVALID_FRAMES)}")
    return invalid_frames


def empty_predictions() -> pd.DataFrame:
    """A prediction table without rows (a job with no val and no test frame)."""
    return pd.DataFrame(columns=PRED_COLUMNS)


def check_predictions(df: pd.DataFrame, name: str = "predictions", *,
                      error: type[Exception] = PredictionError) -> pd.DataFrame:
    """Validate a prediction table; returns a normalised copy (the columns of :data:`PRED_COLUMNS` only, ``frame``
    and ``au`` int64, ``pred`` and ``label`` int8, ``score`` float).

    Checks: every column present (a table without ``face``, from before that column, has frames with a face only:
    ``face = 1``); ``pred``, ``label`` and ``face`` 0/1; ``score`` a finite number or empty (an AU that a model
    skipped has an empty score and ``pred = 0``; such a member votes "absent" in an ensemble); ``set`` val or test;
    no two rows with the same (subject, frame, au, set). Raises ``error`` (the caller's error class, default
    :class:`PredictionError`) naming ``name`` (the file or model), the subject, frame and AU.
    """
    missing = [c for c in PRED_COLUMNS if c not in df.columns and c != "face"]
    if missing:
        raise error(f"{name}: missing column(s) {missing}; expected {PRED_COLUMNS}")
    df = df.assign(face=1) if "face" not in df.columns else df
    df = df.loc[:, PRED_COLUMNS].copy()
    df["frame"] = df["frame"].astype(np.int64)
    df["au"] = df["au"].astype(np.int64)
    for col in ("pred", "label", "face"):
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
