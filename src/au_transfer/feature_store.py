"""Reading the feature store (``results/features/.../{subject}.h5``) with h5py alone.

Kept apart from :mod:`au_transfer.features` (which imports torch and the backbones) so that the hundreds of small
LDA/SVM jobs that only read features start fast. :func:`read_features` reads a whole file; the classifiers read
:func:`read_feature_index` (frames, valid, attributes, no features) first and then only the rows they need with
:func:`read_feature_rows`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

#: Bytes of features that :func:`read_feature_rows` reads at a time (a block of consecutive rows).
BLOCK_BYTES = 16 << 20


class FeatureError(ValueError):
    """A feature file or its input is wrong; the message names the file, subject and frame."""


@contextmanager
def _open(path: str | os.PathLike[str]) -> Iterator[tuple[Path, h5py.File]]:
    """Open a feature file for reading, checked: its datasets exist and line up (errors name the file)."""
    p = Path(path)
    if not p.is_file():
        raise FeatureError(f"feature file {p} does not exist")
    try:
        with h5py.File(p, "r") as h5:
            missing = [k for k in ("features", "frames", "valid") if k not in h5]
            if missing:
                raise FeatureError(f"{p}: not a feature file, dataset(s) {missing} missing")
            shapes = h5["features"].shape, h5["frames"].shape, h5["valid"].shape
            if len(shapes[0]) != 2 or shapes[0][0] != shapes[1][0] or shapes[2][0] != shapes[1][0]:
                raise FeatureError(f"{p}: features {shapes[0]}, frames {shapes[1]} and valid {shapes[2]} do not "
                                   "line up")
            yield p, h5
    except OSError as exc:
        raise FeatureError(f"{p}: cannot read feature file: {exc}") from exc


def _attrs(h5: h5py.File) -> dict[str, Any]:
    return {k: (v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v)
            for k, v in h5.attrs.items()}


def read_features(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a feature file: ``(frames int32 (N,), X float32 (N, D), valid bool (N,), attrs)``.

    Invalid rows hold NaN; select rows with ``valid`` before using ``X``.
    """
    with _open(path) as (_, h5):
        X = h5["features"][...].astype(np.float32)
        frames = h5["frames"][...].astype(np.int32)
        valid = h5["valid"][...].astype(bool)
        attrs = _attrs(h5)
    return frames, X, valid, attrs


def read_feature_index(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any], int]:
    """Everything of a feature file but its features: ``(frames int32 (N,), valid bool (N,), attrs, dim)``."""
    with _open(path) as (_, h5):
        frames = h5["frames"][...].astype(np.int32)
        valid = h5["valid"][...].astype(bool)
        attrs = _attrs(h5)
        dim = int(h5["features"].shape[1])
    return frames, valid, attrs, dim


def read_feature_rows(path: str | os.PathLike[str], rows: np.ndarray, *, block_bytes: int = BLOCK_BYTES
                      ) -> np.ndarray:
    """Rows ``rows`` (0-based, any order) of a feature file's features, in that order and in the stored dtype
    (float16): ``(len(rows), D)``.

    The file is read in blocks of consecutive rows (about ``block_bytes`` each) that start at a requested row, so
    memory is the rows asked for plus one block, and only the stretches of the file that hold them are read.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    with _open(path) as (p, h5):
        ds = h5["features"]
        n, d = ds.shape
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise FeatureError(f"{p}: row {int(rows.max() if rows.max() >= n else rows.min())} asked for; the file "
                               f"has {n} rows")
        out = np.empty((len(rows), d), dtype=ds.dtype)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        step = max(1, block_bytes // max(1, d * ds.dtype.itemsize))
        i = 0
        while i < len(srt):
            a = int(srt[i])
            j = int(np.searchsorted(srt, a + step, side="left"))
            block = ds[a:int(srt[j - 1]) + 1]
            out[order[i:j]] = block[srt[i:j] - a]
            i = j
    return out
