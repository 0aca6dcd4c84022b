"""What happens in each frame of a video: AU intensities (onset-apex-offset episodes of co-occurring AUs),
head-pose jitter and the defect frames."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ... import DISFA_AUS

# Episode patterns: (name, weight, {AU: apex scale}). Weights are tuned so that a long video has DISFA-like
# proportions of frames >= 2 (Table IV: AU25 > AU4 > AU12 > AU26 > AU6 > AU17 ~ AU1 > AU2 ~ AU9 > AU20 ~ AU15
# > AU5); see bench/demo_labels.py.
_PATTERNS: tuple[tuple[str, float, dict[int, float]], ...] = (
    ("smile", 3.6, {12: 1.0, 6: 0.8}),
    ("open_smile", 1.4, {12: 1.0, 6: 0.9, 25: 1.0, 26: 0.6}),
    ("surprise", 0.4, {1: 1.0, 2: 1.0, 5: 0.8, 25: 0.9, 26: 1.0}),
    ("brows_up", 1.0, {1: 1.0, 2: 0.9}),
    ("frown", 3.2, {4: 1.0}),
    ("sad", 0.6, {1: 0.8, 4: 0.8, 15: 1.0, 17: 0.8}),
    ("doubt", 1.6, {4: 0.7, 17: 1.0}),
    ("disgust", 2.0, {9: 1.0, 4: 0.7, 25: 0.6}),
    ("fear", 0.25, {1: 0.8, 2: 0.6, 4: 0.7, 5: 0.7, 20: 1.0, 25: 1.0}),
    ("stretch", 0.45, {20: 1.0, 25: 0.7}),
    ("talk", 2.8, {25: 1.0, 26: 0.7}),
    ("lips_part", 3.4, {25: 1.0}),
    ("jaw", 0.6, {26: 1.0, 25: 0.9}),
    ("squint", 0.8, {6: 1.0, 4: 0.4}),
    ("pout", 0.45, {15: 1.0, 17: 0.7}),
)
#: Patterns that together cover all 12 AUs: one episode of each is placed in every video.
_COVER: tuple[str, ...] = ("surprise", "smile", "sad", "disgust", "stretch")


# ------------------------------------------------------------------------------------------------ the labels
def _envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth onset-apex-offset envelope of ``n`` frames, 0 -> 1 -> 0."""
    onset = max(1, int(round(n * rng.uniform(0.2, 0.35))))
    offset = max(1, int(round(n * rng.uniform(0.2, 0.35))))
    apex = max(1, n - onset - offset)
    up = np.linspace(0, 1, onset + 1)[1:]
    down = np.linspace(1, 0, offset + 1)[:-1]
    env = np.concatenate([up * up * (3 - 2 * up), np.ones(apex), down * down * (3 - 2 * down)])
    return env[:n] if len(env) >= n else np.pad(env, (0, n - len(env)))


def make_labels(n_frames: int, fps: float, rng: np.random.Generator, *,
                cover: bool = True, rate: float = 0.27) -> pd.DataFrame:
    """AU intensities 0-5 of one video: a DataFrame with ``frame`` (1-based) and ``AU1`` ... ``AU26``.

    Episodes of co-occurring AUs rise, hold and fall smoothly; ``rate`` episodes start per second. With
    ``cover``, one episode of each covering pattern (together all 12 AUs) reaches intensity >= 2.
    """
    col = {au: i for i, au in enumerate(DISFA_AUS)}
    inten = np.zeros((n_frames, len(DISFA_AUS)))
    patterns = {name: aus for name, _, aus in _PATTERNS}
    weights = np.array([w for _, w, _ in _PATTERNS])

    def add(start: int, length: int, aus: Mapping[int, float], required: bool) -> None:
        length = max(3, min(length, n_frames - start))
        env = _envelope(length, rng)
        for au, scale in aus.items():
            if not required and rng.random() > 0.85 and len(aus) > 1:
                continue
            apex = scale * rng.uniform(1.6, 5.2)
            if required:
                apex = max(apex, rng.uniform(2.6, 4.6))
            apex = min(apex, 5.0)
            seg = inten[start:start + length, col[au]]
            np.maximum(seg, apex * env, out=seg)

    if cover and n_frames >= 20:
        order = list(rng.permutation(len(_COVER)))
        slot = n_frames / len(order)
        for k, idx in enumerate(order):
            length = int(min(slot * rng.uniform(0.8, 1.0), fps * rng.uniform(1.5, 4.0)))
            length = max(length, 5)
            start = int(k * slot + rng.uniform(0, max(0.0, slot - length)))
            add(start, length, patterns[_COVER[idx]], required=True)
    n_extra = rng.poisson(rate * n_frames / fps)
    for _ in range(n_extra):
        name, _, aus = _PATTERNS[int(rng.choice(len(_PATTERNS), p=weights / weights.sum()))]
        length = int(fps * rng.uniform(0.8, 5.0))
        start = int(rng.integers(0, max(1, n_frames - 3)))
        add(start, length, aus, required=False)
    values = np.clip(np.floor(inten + 0.5), 0, 5).astype(np.int64)
    df = pd.DataFrame(values, columns=[f"AU{a}" for a in DISFA_AUS])
    df.insert(0, "frame", np.arange(1, n_frames + 1))
    return df


# ----------------------------------------------------------------------------------------- pose and defects
def _pose_track(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth head-pose jitter per frame: rotation (deg), scale, tx, ty (fractions of the face size)."""
    t = np.arange(n) / fps
    out = np.zeros((n, 4))
    amp = np.array([3.0, 0.025, 0.04, 0.03])
    for k in range(4):
        for _ in range(2):
            f = rng.uniform(0.05, 0.4)
            out[:, k] += amp[k] / 2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out


def _defect_frames(n_frames: int, rng: np.random.Generator) -> dict[int, str]:
    """1-based frames with a defect: one occluded frame (n >= 30) and one blank frame (n >= 100)."""
    out: dict[int, str] = {}
    if n_frames >= 30:
        out[int(rng.integers(n_frames // 4, 3 * n_frames // 4)) + 1] = "occluded"
    if n_frames >= 100:
        while True:
            f = int(rng.integers(n_frames // 8, 7 * n_frames // 8)) + 1
            if f not in out:
                out[f] = "blank"
                break
    return out
