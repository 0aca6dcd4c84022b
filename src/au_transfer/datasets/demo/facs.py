"""FACS-like Action Unit motion: the 68+5 control points of a face, its own axes, and each DISFA AU's
displacement of those points at intensity 5 (plus the AUs' names)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np

#: Left-right mirror permutation of the iBUG 68 points.
MIRROR_68: np.ndarray = np.array(
    list(range(16, -1, -1))                       # jaw
    + list(range(26, 16, -1))                     # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]        # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]            # inner lips
)

# Virtual mesh points (not written out) that AUs may move: forehead right/centre/left, cheek right/left.
_V_FOREHEAD_R, _V_FOREHEAD_C, _V_FOREHEAD_L, _V_CHEEK_R, _V_CHEEK_L = 68, 69, 70, 71, 72
N_CONTROL = 73

# (right-side index, left-side index) pairs of the 68+5 control points; a single index is on the midline.
_PAIRS: dict[int, int] = {}
for _i in range(68):
    _PAIRS[_i] = int(MIRROR_68[_i])
_PAIRS.update({68: 70, 70: 68, 69: 69, 71: 72, 72: 71})

# AU displacements at intensity 5, in units of the inter-ocular distance, as {point: (dx_out, dy)}: dx_out > 0
# moves away from the face's midline, dy > 0 moves towards the chin. A right-side point implies its mirror.
_AU_TABLE: dict[int, dict[int, tuple[float, float]]] = {
    1: {21: (-0.02, -0.22), 20: (0.0, -0.15), 19: (0.0, -0.07), 18: (0.0, -0.02), 37: (0.0, -0.02),
        38: (0.0, -0.03), 68: (0.0, -0.06), 69: (0.0, -0.12)},
    2: {17: (0.01, -0.22), 18: (0.0, -0.20), 19: (0.0, -0.13), 20: (0.0, -0.05), 37: (0.0, -0.02),
        68: (0.0, -0.10)},
    4: {21: (-0.08, 0.13), 20: (-0.05, 0.12), 19: (-0.03, 0.10), 18: (0.0, 0.07), 17: (0.0, 0.04),
        37: (0.0, 0.03), 38: (0.0, 0.04), 69: (0.0, 0.06), 68: (-0.02, 0.05)},
    5: {37: (0.0, -0.10), 38: (0.0, -0.10), 19: (0.0, -0.03), 20: (0.0, -0.02)},
    6: {41: (0.0, -0.06), 40: (0.0, -0.05), 36: (0.0, -0.02), 71: (0.0, -0.14), 1: (0.0, -0.04),
        2: (0.0, -0.05), 3: (0.0, -0.03), 48: (0.01, -0.02), 17: (0.0, 0.03), 18: (0.0, 0.02)},
    9: {31: (0.02, -0.08), 32: (0.0, -0.07), 33: (0.0, -0.06), 30: (0.0, -0.04), 29: (0.0, -0.02),
        50: (0.0, -0.05), 51: (0.0, -0.05), 49: (0.0, -0.03), 61: (0.0, -0.03), 62: (0.0, -0.03),
        21: (-0.03, 0.06), 20: (0.0, 0.04), 71: (0.0, -0.04)},
    12: {48: (0.10, -0.12), 60: (0.09, -0.10), 49: (0.04, -0.06), 59: (0.05, -0.06), 61: (0.03, -0.04),
         67: (0.03, -0.05), 50: (0.01, -0.02), 58: (0.02, -0.03), 71: (0.02, -0.08), 3: (0.01, -0.02)},
    15: {48: (0.01, 0.12), 60: (0.01, 0.10), 49: (0.0, 0.05), 59: (0.0, 0.06), 61: (0.0, 0.04),
         67: (0.0, 0.05), 58: (0.0, 0.02), 5: (0.0, 0.02)},
    17: {8: (0.0, -0.10), 7: (0.0, -0.09), 6: (0.0, -0.05), 57: (0.0, -0.09), 58: (0.0, -0.08),
         59: (0.0, -0.04), 66: (0.0, -0.07), 67: (0.0, -0.06), 62: (0.0, -0.07), 61: (0.0, -0.06),
         51: (0.0, -0.05), 50: (0.0, -0.04), 48: (0.0, 0.02)},
    20: {48: (0.12, 0.02), 60: (0.11, 0.01), 49: (0.06, 0.0), 59: (0.06, 0.0), 61: (0.04, 0.0),
         67: (0.04, 0.0), 50: (0.02, 0.0), 58: (0.02, 0.0), 57: (0.0, -0.02), 51: (0.0, 0.01),
         4: (0.02, 0.0), 5: (0.02, 0.0), 71: (0.03, 0.02)},
    25: {66: (0.0, 0.16), 67: (0.0, 0.13), 57: (0.0, 0.12), 58: (0.0, 0.10), 59: (0.0, 0.06),
         62: (0.0, -0.03), 61: (0.0, -0.025), 51: (0.0, -0.02), 50: (0.0, -0.02), 60: (0.0, 0.01),
         8: (0.0, 0.03), 7: (0.0, 0.03)},
    26: {8: (0.0, 0.24), 7: (0.0, 0.22), 6: (0.0, 0.18), 5: (0.0, 0.12), 4: (0.0, 0.07), 3: (0.0, 0.03),
         57: (0.0, 0.16), 58: (0.0, 0.15), 59: (0.0, 0.10), 66: (0.0, 0.14), 67: (0.0, 0.12),
         48: (0.0, 0.05), 60: (0.0, 0.05), 71: (0.0, 0.04)},
}


# ------------------------------------------------------------------------------------------------ face frames
@dataclass(frozen=True)
class FaceFrame:
    """A face's own axes: ``ex`` along the eye line (image left to right), ``ey`` towards the chin; ``u`` is
    the inter-ocular distance (eye centres) in pixels; ``mid`` a point on the midline."""

    ex: np.ndarray
    ey: np.ndarray
    u: float
    mid: np.ndarray

    @classmethod
    def of(cls, pts68: np.ndarray) -> FaceFrame:
        er, el = pts68[36:42].mean(0), pts68[42:48].mean(0)
        v = el - er
        u = float(np.hypot(*v))
        ex = v / u
        ey = np.array([-ex[1], ex[0]])
        return cls(ex, ey, u, 0.5 * (er + el))

    def side(self, pts: np.ndarray) -> np.ndarray:
        """-1 for points on the image-left (subject's right) half, +1 on the right, 0 on the midline."""
        s = np.sign((pts - self.mid) @ self.ex)
        return s

    def to_image(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """Face-axis offsets (in units of u) -> image-pixel offsets."""
        return self.u * (dx[:, None] * self.ex[None, :] + dy[:, None] * self.ey[None, :])


def control_points(pts68: np.ndarray) -> np.ndarray:
    """68 landmarks plus 5 virtual points: forehead right/centre/left and the two cheeks."""
    f = FaceFrame.of(pts68)
    up = -0.55 * f.u * f.ey
    fr = pts68[19] + up
    fc = 0.5 * (pts68[21] + pts68[22]) + up
    fl = pts68[24] + up
    out = 0.22 * f.u * f.ex
    cr = 0.5 * (pts68[41] + pts68[48]) - out
    cl = 0.5 * (pts68[46] + pts68[54]) + out
    return np.vstack([pts68, fr, fc, fl, cr, cl])


def _table_to_offsets(table: Mapping[int, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Expand a one-sided {point: (dx_out, dy)} table to all control points (dx signed per side later)."""
    dx_out = np.zeros(N_CONTROL)
    dy = np.zeros(N_CONTROL)
    for i, (ox, oy) in table.items():
        for j in {i, _PAIRS[i]}:
            dx_out[j], dy[j] = ox, oy
    return dx_out, dy


def au_displacements(ctrl: np.ndarray) -> dict[int, np.ndarray]:
    """Pixel displacements (N_CONTROL, 2) of each AU at intensity 5 for a face with control points ``ctrl``."""
    f = FaceFrame.of(ctrl[:68])
    side = np.array([_side_of(i) for i in range(N_CONTROL)], dtype=np.float64)
    out = {}
    for au, table in _AU_TABLE.items():
        dx_out, dy = _table_to_offsets(table)
        out[au] = f.to_image(dx_out * side, dy)
    return out


@cache
def _side_of(i: int) -> float:
    """Side of control point ``i`` by index: -1 image-left (subject's right), +1 image-right, 0 midline."""
    j = _PAIRS[i]
    if j == i:
        return 0.0
    right = {*range(0, 8), *range(17, 22), 31, 32, *range(36, 42), 48, 49, 50, 58, 59, 60, 61, 67, 68, 71}
    return -1.0 if i in right else 1.0


# -------------------------------------------------------------------------------------------------- AU names
AU_NAMES: dict[int, str] = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser", 6: "cheek raiser",
    9: "nose wrinkler", 12: "lip corner puller", 15: "lip corner depressor", 17: "chin raiser",
    20: "lip stretcher", 25: "lips part", 26: "jaw drop",
}
