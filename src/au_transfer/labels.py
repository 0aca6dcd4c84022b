"""Label tables (``results/labels/{subject}.csv``) and class balancing by label: one home for both consumers.

The label table of a recording (``results/labels/{recording}.csv``, written by the labels stage from the corpus
adapter, :mod:`au_transfer.datasets.base`) has a ``frame`` column (1-based frame positions), an ``AU{n}`` intensity
column (0-5) per AU the corpus codes with an intensity and, for corpora that code occurrence separately (BP4D), an
``AU{n}_c`` occurrence column (0/1); an empty cell is an unknown label. :func:`read_label_table` turns them into
occurrence columns: ``AU{n}_c`` when present, else intensity >= ``threshold`` (paper III); unknown = -1, which
every consumer leaves out of training and scoring (and counts); the classifiers (:mod:`au_transfer.classifiers.data`)
and fine-tuning (:mod:`au_transfer.finetune.data`) both read labels through it. :func:`read_intensity_table` keeps
the intensities (unknown cells as NaN) for the intensity regressors (:mod:`au_transfer.intensity`).
:func:`balance_indices` is the balancing rule of
paper IV-A (as many randomly kept frames of the majority class as there are of the minority class) that both use.

Needs numpy and pandas only (no torch): the many small LDA/SVM jobs import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


class LabelError(ValueError):
    """A label table is unusable; the message names the file (and subject), the frame and its line."""


def _line(i: int) -> int:
    """The line of the CSV file that holds data row ``i`` (0-based; the header is line 1)."""
    return int(i) + 2


def read_label_table(path: str | os.PathLike[str], aus: Sequence[int], threshold: int, *, subject: str | None = None,
                     error: type[Exception] = LabelError) -> pd.DataFrame:
    """Read ``results/labels/{recording}.csv`` as ``frame`` (int64) + occurrence columns ``AU{n}`` (int8) for
    ``aus``, in the file's row order: 1 present, 0 absent, -1 unknown (an empty cell). Occurrence is the ``AU{n}_c``
    column when the table has one, else intensity ``AU{n}`` >= ``threshold``.

    Raises ``error`` (a :class:`LabelError` unless the caller names its own error class) naming the file (and
    ``subject`` when given), the frame and its line: an unreadable file, a missing column, a frame number that is
    not an integer, a frame listed twice, an intensity that is not a number in 0..5, an occurrence not 0 or 1.
    """
    path = Path(path)
    where = f"{path} (subject {subject})" if subject else str(path)
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise error(f"{where}: cannot read the label table: {err}") from err
    missing = [c for c in ["frame"] if c not in df.columns]
    missing += [f"AU{a}" for a in aus if f"AU{a}" not in df.columns and f"AU{a}_c" not in df.columns]
    if missing:
        raise error(f"{where}: missing column(s) {missing}; columns are {list(df.columns)}")
    frame = pd.to_numeric(df["frame"], errors="coerce")
    bad = frame.isna() | (frame != frame.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise error(f"{where}: frame number {str(df['frame'].iloc[i])!r} is not an integer (line {_line(i)})")
    frame = frame.astype(np.int64)
    dup = frame.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((frame == frame.iloc[i]).to_numpy())[0])
        raise error(f"{where}, frame {int(frame.iloc[i])}: frame listed twice (lines {_line(first)} and {_line(i)})")
    out = pd.DataFrame({"frame": frame.to_numpy()})
    for a in aus:
        occurrence = f"AU{a}_c" in df.columns
        col = f"AU{a}_c" if occurrence else f"AU{a}"
        values = pd.to_numeric(df[col], errors="coerce")
        unknown = df[col].isna().to_numpy()
        top = 1 if occurrence else 5
        bad = (values.isna() & ~unknown) | (values < 0) | (values > top)
        if occurrence:
            bad |= values.notna() & (values != values.round())
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            what = "occurrence" if occurrence else "intensity"
            raise error(f"{where}, frame {int(frame.iloc[i])}: {col} {what} {str(df[col].iloc[i])!r} is not a "
                        f"number in 0..{top} (line {_line(i)})")
        v = values.to_numpy(dtype=np.float64)
        occ = (v >= (1 if occurrence else threshold)).astype(np.int8)
        occ[unknown] = -1
        out[f"AU{a}"] = occ
    return out


#: The threshold of "present" that a job gets: one number, or ``{recording: threshold}`` when the corpora of its
#: split define present differently (:meth:`au_transfer.datasets.catalog.Catalog.threshold_param`).
Threshold = int | Mapping[str, int]


def as_threshold(threshold: Threshold) -> int | dict[str, int]:
    """A job's ``threshold`` param as an int or a ``{recording: int}`` dict (what bundles record)."""
    if isinstance(threshold, Mapping):
        return {str(k): int(v) for k, v in threshold.items()}
    return int(threshold)


def threshold_for(threshold: Threshold, recording: str, *, error: type[Exception] = LabelError) -> int:
    """The threshold of one recording: the number itself, or its entry of a ``{recording: threshold}`` mapping
    (a recording it lacks is an error naming it)."""
    if not isinstance(threshold, Mapping):
        return int(threshold)
    if recording not in threshold:
        raise error(f"recording {recording}: no threshold of present given (the job's thresholds name "
                    f"{', '.join(sorted(threshold)[:4])}{' ...' if len(threshold) > 4 else ''})")
    return int(threshold[recording])


def read_intensity_table(path: str | os.PathLike[str], aus: Sequence[int], *, subject: str | None = None,
                         error: type[Exception] = LabelError) -> pd.DataFrame:
    """Read a label table as ``frame`` (int64), ``sequence`` (str: the table's ``sequence`` column, or ``""`` when
    it has none: the whole recording is one sequence) and float intensity columns ``AU{n}`` (0..5; an empty cell =
    unknown = NaN, left out of training and scoring by the callers; all NaN for an AU the table codes for
    occurrence only, ``AU{n}_c``), in the file's row order.

    Frame numbers are checked as :func:`read_label_table` checks them (its errors); a value that is neither empty
    nor a number in 0..5 is an error naming the file, subject, frame and line.
    """
    path = Path(path)
    where = f"{path} (subject {subject})" if subject else str(path)
    frames = read_label_table(path, [], 0, subject=subject, error=error)["frame"]
    df = pd.read_csv(path)
    missing = [f"AU{a}" for a in aus if f"AU{a}" not in df.columns and f"AU{a}_c" not in df.columns]
    if missing:
        raise error(f"{where}: missing column(s) {missing}; columns are {list(df.columns)}")
    out = pd.DataFrame({"frame": frames.to_numpy(),
                        "sequence": df["sequence"].astype(str).to_numpy() if "sequence" in df.columns else ""})
    for a in aus:
        col = f"AU{a}"
        if col not in df.columns:  # coded for occurrence only (AU{n}_c, e.g. most BP4D AUs): intensity unknown
            out[col] = np.nan
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = (df[col].notna() & values.isna()) | (values < 0) | (values > 5)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise error(f"{where}, frame {int(frames.iloc[i])}: {col} intensity {str(df[col].iloc[i])!r} is not "
                        f"empty or a number in 0..5 (line {_line(i)})")
        out[col] = values.to_numpy(dtype=np.float64)
    return out


def balance_indices(y: np.ndarray, rng: np.random.Generator, *, draw_when_equal: bool = True) -> np.ndarray:
    """Indices of a balanced subset: all frames of the minority class and as many random ones of the majority.

    Paper IV-A keeps as many negatives as there are positives; when positives outnumber negatives the rule is
    applied the other way round (as many positives as negatives). With no frame of one class, there is nothing
    to balance against: an empty array is returned (no random draw) and the caller decides (skip the AU, fall
    back). Returned indices are sorted so that the subset keeps frame order.

    ``draw_when_equal``: with as many positives as negatives every frame is kept either way; True still draws
    the negatives (a permutation, which advances ``rng``), as the classifiers always have; False keeps them
    without a draw, as fine-tuning always has. The choice only changes the state of ``rng`` afterwards, and is kept
    per caller so that seeded results do not change.
    """
    y = np.asarray(y)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0:
        return np.empty(0, dtype=np.int64)
    if len(neg) == len(pos) and not draw_when_equal:
        keep = np.concatenate([pos, neg])
    elif len(neg) >= len(pos):
        keep = np.concatenate([pos, rng.choice(neg, size=len(pos), replace=False)])
    else:
        keep = np.concatenate([neg, rng.choice(pos, size=len(neg), replace=False)])
    return np.sort(keep)


FACELESS_COLUMNS: tuple[str, ...] = ("subject", "frame", "y")


def faceless_frames(subject: str, frames: np.ndarray, valid: np.ndarray, labels: pd.Series) -> pd.DataFrame:
    """The labelled frames of one subject without a usable face: ``labels`` (frame -> known label) whose frame is
    not a valid row of ``frames`` (a feature file's or face store's rows, mask ``valid``): invalid there, or beyond
    them. Columns :data:`FACELESS_COLUMNS`, in frame order; training and validation never use them, the test predictions score
    them as predicted absent."""
    lab = labels.index.to_numpy()
    miss = ~np.isin(lab, np.asarray(frames)[np.asarray(valid, bool)])
    order = np.argsort(lab[miss], kind="stable")
    return pd.DataFrame({"subject": np.full(int(miss.sum()), subject, dtype=object),
                         "frame": lab[miss][order].astype(np.int64),
                         "y": labels.to_numpy()[miss][order]}, columns=list(FACELESS_COLUMNS))
