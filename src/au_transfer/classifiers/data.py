"""Frame data for the classifiers: features + labels of one AU, valid and labelled frames only.

A frame enters training or evaluation only when it is *valid* in the feature file (a face was found and aligned)
and *labelled* (its frame number appears in ``results/labels/{subject}.csv``); every excluded frame is counted and
logged. The labelled frames without a usable face (invalid, or beyond the feature file) are listed apart
(``faceless``): the jobs write them into the test predictions as predicted absent, so that every labelled test
frame is scored. Labels are binarised with the configured threshold (present = intensity >= threshold, paper III). The label
reader and the balancing rule live in :mod:`au_transfer.labels` (shared with fine-tuning) and are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import config
from ..labels import (
    FACELESS_COLUMNS,
    Threshold,
    balance_indices,
    faceless_frames,
    read_intensity_table,
    read_label_table,
    threshold_for,
)

__all__ = ["FACELESS_COLUMNS", "ClassifierDataError", "FrameData", "FrameIndex", "balance_indices",
           "check_subject_exclusive", "faceless_frames", "index_frames", "load_frames", "read_feature_file", "read_label_file", "sequence_medians",
           "write_synthetic_subject"]

log = logging.getLogger(__name__)


class ClassifierDataError(ValueError):
    """Bad input to a classifier: the message names the file, subject, frame and what is wrong."""


def read_feature_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """``(frames int64, X float32, valid, attrs)`` of one feature file, checked for consistent shapes.

    Uses :func:`au_transfer.feature_store.read_features`, which needs h5py alone (no torch import per LDA/SVM job).
    """
    from ..feature_store import FeatureError, read_features

    try:
        frames, X, valid, attrs = read_features(path)
    except FeatureError as exc:
        raise ClassifierDataError(str(exc)) from exc
    return frames.astype(np.int64), X, valid, dict(attrs)


def read_label_file(path: str | Path, au: int, threshold: int, subject: str = "?") -> pd.Series:
    """Binary labels (present = intensity >= threshold) of one AU, indexed by 1-based frame number.

    Reads through :func:`au_transfer.labels.read_label_table` (errors name the file, subject, frame and line).
    """
    table = read_label_table(path, [au], threshold, subject=subject, error=ClassifierDataError)
    return pd.Series(table[f"AU{au}"].to_numpy(), index=table["frame"].to_numpy())


@dataclass
class FrameData:
    """Valid, labelled frames of a set of subjects for one AU, in subject then frame order."""

    subject: np.ndarray  # (N,) str
    frame: np.ndarray  # (N,) int
    X: np.ndarray  # (N, D) float32
    y: np.ndarray  # (N,) int8, 1 = AU present
    counts: dict = field(default_factory=dict)  # per subject: total, invalid, unlabelled, used
    attrs: dict = field(default_factory=dict)  # attrs of the first feature file
    faceless: pd.DataFrame | None = None  # subject, frame, y: labelled frames without a usable face

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> FrameData:
        return FrameData(self.subject[idx], self.frame[idx], self.X[idx], self.y[idx], self.counts, self.attrs)

    def features(self, idx: np.ndarray | None = None, dtype: Any = None) -> np.ndarray:
        """Features of rows ``idx`` (default all), as ``dtype`` (default as held): the interface of
        :meth:`FrameIndex.features`."""
        X = self.X if idx is None else self.X[idx]
        return X if dtype is None else X.astype(dtype, copy=False)

    def subjects(self) -> list[str]:
        return list(dict.fromkeys(self.subject.tolist()))

    def sequences(self) -> list[np.ndarray]:
        """Row indices of each subject, in frame order (the sequence the LSTM sees)."""
        return [np.flatnonzero(self.subject == s) for s in self.subjects()]


@dataclass
class FrameIndex:
    """The frames of :class:`FrameData` without their features: labels, frame numbers and each frame's row in its
    subject's feature file; :meth:`features` reads the rows a caller needs, subject by subject."""

    subject: np.ndarray  # (N,) str
    frame: np.ndarray  # (N,) int64
    y: np.ndarray  # (N,) int8, 1 = AU present
    row: np.ndarray  # (N,) int64: the frame's row in its subject's feature file
    paths: dict[str, str]  # subject -> feature file
    dim: int
    counts: dict = field(default_factory=dict)  # per subject: total, invalid, unlabelled, used
    attrs: dict = field(default_factory=dict)  # attrs of the first feature file
    sequence: np.ndarray | None = None  # (N,) str: the frame's sequence in its subject ("" = the whole subject)
    medians: dict | None = None  # (subject, sequence) -> (D,) float32 median subtracted from its frames' features
    faceless: pd.DataFrame | None = None  # subject, frame, y: labelled frames without a usable face (FACELESS_COLUMNS)

    def __len__(self) -> int:
        return len(self.y)

    def subjects(self) -> list[str]:
        return list(dict.fromkeys(self.subject.tolist()))

    def sequences(self) -> list[np.ndarray]:
        """Row indices of each (subject, sequence), in frame order (the sequences a sequence model sees)."""
        seq = self.sequence if self.sequence is not None else np.full(len(self), "")
        keys = list(dict.fromkeys(zip(self.subject.tolist(), seq.tolist(), strict=True)))
        return [np.flatnonzero((self.subject == s) & (seq == q)) for s, q in keys]

    def features(self, idx: np.ndarray | None = None, dtype: Any = None) -> np.ndarray:
        """Features ``(len(idx), D)`` of rows ``idx`` of this index (default all), read from the feature files
        one subject at a time (only the rows asked for), as ``dtype`` (default: as stored, float16; any other
        stored type as float32, as :func:`read_feature_file` gives it).

        Non-finite values on a row read (a valid frame) are an error naming the file, subject and frame. With
        ``medians`` (person-specific normalisation), each row's sequence median is subtracted (float32 out).
        """
        from ..feature_store import FeatureError, read_feature_rows

        idx = np.arange(len(self)) if idx is None else np.asarray(idx, dtype=np.int64)
        subj = self.subject[idx]
        out: np.ndarray | None = None
        for s in self.subjects():
            sel = np.flatnonzero(subj == s)
            if not len(sel):
                continue
            path, rows = self.paths[s], idx[sel]
            try:
                X = read_feature_rows(path, self.row[rows])
            except FeatureError as exc:
                raise ClassifierDataError(f"{exc} (subject {s})") from exc
            if X.dtype != np.float16:
                X = X.astype(np.float32, copy=False)
            bad = ~np.isfinite(X).all(axis=1)
            if bad.any():
                raise ClassifierDataError(f"{path} (subject {s}), frame {self.frame[rows][bad][0]}: non-finite "
                                          "feature values on a frame marked valid")
            if self.medians is not None:
                seq = self.sequence[rows] if self.sequence is not None else np.full(len(rows), "")
                X = X.astype(np.float32) - np.stack([self.medians[(s, q)] for q in seq.tolist()])
            if out is None:
                out = np.empty((len(idx), self.dim), dtype=X.dtype if dtype is None else dtype)
            elif dtype is None and X.dtype.itemsize > out.dtype.itemsize:  # files stored in different types
                out = out.astype(X.dtype)
            out[sel] = X
        return out if out is not None else np.empty((len(idx), self.dim), dtype=dtype or np.float16)


def index_frames(feature_paths: Mapping[str, str | Path], label_paths: Mapping[str, str | Path], au: int,
                 threshold: Threshold, subjects: Sequence[str] | None = None, *, intensity: bool = False,
                 median: bool = False) -> FrameIndex:
    """The valid, labelled frames of one AU for the given subjects, without reading their features.

    ``feature_paths`` and ``label_paths`` map subject -> file. Invalid frames (``valid`` False in the feature file)
    and unlabelled frames (beyond the label file) are excluded and counted (``counts``, logged). The labelled
    frames without a usable face (invalid, or labelled but beyond the feature file) are ``faceless`` (subject,
    frame, y; in subject then frame order), for the test predictions (:func:`faceless_frames`).
    ``intensity``: ``y`` holds the intensity 0..5 (float32) instead of 0/1, and frames of unknown intensity (empty
    cells) count as unlabelled. ``median``: person-specific normalisation, :func:`sequence_medians` of every
    (subject, sequence), subtracted by :meth:`FrameIndex.features`.
    """
    from ..feature_store import FeatureError, read_feature_index

    subjects = list(subjects if subjects is not None else feature_paths)
    parts: list[tuple] = []
    faceless: list[pd.DataFrame] = []
    counts: dict[str, dict[str, int]] = {}
    medians: dict[tuple[str, str], np.ndarray] = {}
    attrs0: dict = {}
    dim = None
    for s in subjects:
        if s not in feature_paths or s not in label_paths:
            raise ClassifierDataError(f"subject {s}: no feature file or label file given")
        fpath = feature_paths[s]
        try:
            frames, valid, attrs, d = read_feature_index(fpath)
        except FeatureError as exc:
            raise ClassifierDataError(str(exc)) from exc
        frames = frames.astype(np.int64)
        if not attrs0:
            attrs0 = dict(attrs)
        if dim is None:
            dim = d
        elif d != dim:
            raise ClassifierDataError(f"{fpath} (subject {s}): feature dimension {d} != {dim} of the others")
        if intensity or median:
            table = read_intensity_table(label_paths[s], [au], subject=s, error=ClassifierDataError)
            seq_of = pd.Series(table["sequence"].to_numpy(), index=table["frame"].to_numpy())
        if intensity:  # unknown intensities (empty cells, NaN): neither trained on nor scored
            labels = pd.Series(table[f"AU{au}"].to_numpy(np.float32), index=table["frame"].to_numpy())
            unknown_frames = labels.index.to_numpy()[labels.isna().to_numpy()]
            labels = labels.dropna()
        else:
            labels = read_label_file(label_paths[s], au, threshold_for(threshold, s, error=ClassifierDataError),
                                     s)
            unknown_frames = labels.index.to_numpy()[labels.to_numpy() < 0]
            labels = labels[labels >= 0]  # unknown labels (-1): neither trained on nor scored
        labelled = np.isin(frames, labels.index.to_numpy())
        unknown = valid & np.isin(frames, unknown_frames)
        keep = valid & labelled
        n_missing = int((~np.isin(labels.index.to_numpy(), frames)).sum())
        faceless.append(faceless_frames(s, frames, valid, labels))
        counts[s] = {"total": len(frames), "invalid": int((~valid).sum()),
                     "unlabelled": int((valid & ~labelled & ~unknown).sum()), "unknown": int(unknown.sum()),
                     "labels_without_features": n_missing, "used": int(keep.sum()),
                     "labelled_without_face": len(faceless[-1])}
        log.info("AU%d %s: %d frames, %d invalid, %d valid but unlabelled, %d unknown label, %d labels without "
                 "features -> %d used", au, s, len(frames), counts[s]["invalid"], counts[s]["unlabelled"],
                 counts[s]["unknown"], n_missing, counts[s]["used"])
        idx = np.flatnonzero(keep)
        order = idx[np.argsort(frames[idx], kind="stable")]
        seq = (seq_of.reindex(frames[order]).fillna("").to_numpy(dtype=object) if intensity or median
               else np.full(len(order), "", dtype=object))
        if median:
            medians.update({(s, q): m for q, m in sequence_medians(fpath, frames, valid, seq_of, s).items()})
        parts.append((np.full(len(order), s, dtype=object), frames[order],
                      labels.loc[frames[order]].to_numpy().astype(np.float32 if intensity else np.int8),
                      order.astype(np.int64), seq))
    if not parts:
        raise ClassifierDataError("no subjects given")
    subj, fr, y, row, seq = (np.concatenate([p[i] for p in parts]) for i in range(5))
    return FrameIndex(subj.astype(str), fr, y, row, {s: str(feature_paths[s]) for s in subjects}, int(dim or 0),
                      counts, attrs0, seq.astype(str), medians if median else None,
                      pd.concat(faceless, ignore_index=True))


def sequence_medians(path: str | Path, frames: np.ndarray, valid: np.ndarray, seq_of: pd.Series,
                     subject: str = "?") -> dict[str, np.ndarray]:
    """Person-specific normalisation: the median feature vector (float32) of each sequence of one subject's feature
    file over its *valid* frames, labelled or not (OpenFace's trick for frozen features).

    ``seq_of`` maps frame -> sequence (the label table's ``sequence`` column); a table without sequences (every
    value ``""``) makes the whole subject one sequence. Each median sees only its own sequence's frames, so a test
    sequence is normalised by itself and never by another subject or sequence. Frames of a multi-sequence table
    that the table does not list belong to no sequence and are left out.
    """
    from ..feature_store import FeatureError, read_feature_rows

    known = set(seq_of.tolist())
    seq = (np.full(len(frames), "", dtype=object) if known <= {""}
           else seq_of.reindex(frames).to_numpy(dtype=object))
    out = {}
    for q in dict.fromkeys(x for x in seq.tolist() if isinstance(x, str)):
        rows = np.flatnonzero(valid & (seq == q))
        if not len(rows):
            continue
        try:
            X = read_feature_rows(path, rows).astype(np.float32)
        except FeatureError as exc:
            raise ClassifierDataError(f"{exc} (subject {subject})") from exc
        out[q] = np.median(X, axis=0).astype(np.float32)
    return out


def load_frames(feature_paths: Mapping[str, str | Path], label_paths: Mapping[str, str | Path], au: int,
                threshold: Threshold, subjects: Sequence[str] | None = None, *, intensity: bool = False) -> FrameData:
    """Features and binary labels of one AU for the given subjects: valid, labelled frames only.

    ``feature_paths`` and ``label_paths`` map subject -> file. Invalid frames (``valid`` False in the feature file)
    and unlabelled frames (beyond the label file) are excluded and counted (``FrameData.counts``, logged). NaN or
    infinite features on a valid frame are an error naming the file, subject and frame. The LSTM reads whole
    sequences this way; the LDA/SVM jobs read :func:`index_frames` and then only the rows they need.
    ``intensity``: ``y`` holds intensities (see :func:`index_frames`).
    """
    index = index_frames(feature_paths, label_paths, au, threshold, subjects, intensity=intensity)
    return FrameData(index.subject, index.frame, index.features(dtype=np.float32), index.y, index.counts,
                     index.attrs, index.faceless)


def check_subject_exclusive(train: Sequence[str], val: Sequence[str], test: Sequence[str], split: str = "") -> None:
    """Refuse overlapping train/val/test subject lists: :func:`au_transfer.config.check_subject_exclusive`,
    raising :class:`ClassifierDataError`."""
    config.check_subject_exclusive(train, val, test, split=split, error=ClassifierDataError)


def write_synthetic_subject(feature_path: str | Path, label_path: str | Path, subject: str, *, aus: Sequence[int],
                            n_frames: int = 120, dim: int = 16, n_labelled: int | None = None,
                            invalid: Sequence[int] = (), signal: float = 2.0, seed: int = 0,
                            backbone: str = "synthetic", region: str = "face", graded: bool = False,
                            offset: float = 0.0) -> None:
    """Write a synthetic feature file and label file with a planted linear signal per AU (for tests and benches).

    Each AU gets a random unit direction in feature space (the same for every subject, from ``seed``'s AU-wide
    stream) and bursts of activation (intensities 0..5); a present AU adds ``signal`` x its direction to the
    frame's features. ``invalid`` frames (0-based rows) get ``valid = False`` and NaN features; only the first
    ``n_labelled`` frames are labelled. ``graded``: the added signal grows with the intensity (``signal`` x
    intensity / 2.5) instead of being on/off, for the intensity regressors; ``offset`` is added to every feature of
    the subject (a person-specific appearance that per-sequence median normalisation removes).
    """
    import h5py

    dirs = np.random.default_rng(12345).standard_normal((max(aus) + 1, dim))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    frames = np.arange(1, n_frames + 1)
    X = rng.standard_normal((n_frames, dim)).astype(np.float32)
    labels = {"frame": frames}
    for au in aus:
        inten = np.zeros(n_frames, np.int64)
        t = 0
        while t < n_frames:  # alternate inactive stretches and activation bursts
            t += int(rng.integers(5, 25))
            length = int(rng.integers(4, 15))
            inten[t:t + length] = rng.integers(2, 6)
            inten[t:t + 1] = 1  # onset below threshold
            t += length
        labels[f"AU{au}"] = inten
        level = inten / 2.5 if graded else (inten >= 2)
        X += level[:, None] * signal * dirs[au][None, :].astype(np.float32)
    X += np.float32(offset)
    valid = np.ones(n_frames, bool)
    valid[list(invalid)] = False
    X[~valid] = np.nan
    Path(feature_path).parent.mkdir(parents=True, exist_ok=True)
    Path(label_path).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(feature_path, "w") as fh:
        fh["features"] = X.astype(np.float16)
        fh["frames"] = frames.astype(np.int32)
        fh["valid"] = valid
        fh.attrs.update({"backbone": backbone, "layer": "synthetic", "weights": "synthetic",
                         "weights_sha256": "0" * 64, "region": region, "input_size": 0, "subject": subject,
                         "dim": dim})
    n_lab = n_frames if n_labelled is None else n_labelled
    pd.DataFrame(labels).iloc[:n_lab].to_csv(label_path, index=False)
