"""Reading the feature store (``results/features/.../{subject}.h5``) with h5py alone.

Kept apart from :mod:`au_transfer.features` (which imports torch and the backbones) so that the hundreds of small
LDA/SVM jobs that only read features start fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np


class FeatureError(ValueError):
    """A feature file or its input is wrong; the message names the file, subject and frame."""


def read_features(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a feature file: ``(frames int32 (N,), X float32 (N, D), valid bool (N,), attrs)``.

    Invalid rows hold NaN; select rows with ``valid`` before using ``X``.
    """
    p = Path(path)
    if not p.is_file():
        raise FeatureError(f"feature file {p} does not exist")
    try:
        with h5py.File(p, "r") as h5:
            missing = [k for k in ("features", "frames", "valid") if k not in h5]
            if missing:
                raise FeatureError(f"{p}: not a feature file, dataset(s) {missing} missing")
            X = h5["features"][...].astype(np.float32)
            frames = h5["frames"][...].astype(np.int32)
            valid = h5["valid"][...].astype(bool)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v)
                     for k, v in h5.attrs.items()}
    except OSError as exc:
        raise FeatureError(f"{p}: cannot read feature file: {exc}") from exc
    if X.ndim != 2 or len(X) != len(frames) or len(valid) != len(frames):
        raise FeatureError(f"{p}: features {X.shape}, frames {frames.shape} and valid {valid.shape} do not line up")
    return frames, X, valid, attrs
