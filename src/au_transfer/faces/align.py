"""Similarity alignment of a face to a canonical 68-point template.

The template (:data:`TEMPLATE_68`, unit square: x from the left to the right face contour, y from the top of the
brows to the chin) was derived once from dlib's 68 landmarks on scikit-image's ``astronaut`` photo: rotated so that
the eyes are level, made left-right symmetric (averaged with its mirror image), normalised to the unit square, and
the (smiling) mouth narrowed by 15 % about the midline to approximate a neutral face.

A face is aligned by a least-squares similarity transform (rotation, uniform scale, translation; Umeyama 1991)
fitted on stable points (eye corners, nose, mouth corners: :data:`STABLE_POINTS`) that maps the landmarks onto the
template placed in an ``size`` x ``size`` crop with ``margin`` (fraction of ``size``) around the landmark box.
"""

from __future__ import annotations

import cv2
import numpy as np

_T = np.array([
    [0.0, 0.1906], [0.0161, 0.3252], [0.0322, 0.4486], [0.0536, 0.5836], [0.0965, 0.7074], [0.1666, 0.814],
    [0.2684, 0.9039], [0.3763, 0.9829], [0.5, 1.0], [0.6237, 0.9829], [0.7316, 0.9039], [0.8334, 0.814],
    [0.9035, 0.7074], [0.9464, 0.5836], [0.9678, 0.4486], [0.9839, 0.3252], [1.0, 0.1906],
    [0.0747, 0.0843], [0.1341, 0.0112], [0.2198, 0.0], [0.3063, 0.0112], [0.3924, 0.0392],
    [0.6076, 0.0392], [0.6937, 0.0112], [0.7802, 0.0], [0.8659, 0.0112], [0.9253, 0.0843],
    [0.5, 0.1455], [0.5, 0.2469], [0.5, 0.3364], [0.5, 0.4259],
    [0.3924, 0.4769], [0.4464, 0.4937], [0.5, 0.5049], [0.5536, 0.4937], [0.6076, 0.4769],
    [0.177, 0.1573], [0.2312, 0.1126], [0.3063, 0.1126], [0.3653, 0.1801], [0.2952, 0.1853], [0.2255, 0.1857],
    [0.6347, 0.1801], [0.6937, 0.1126], [0.7688, 0.1126], [0.823, 0.1573], [0.7745, 0.1857], [0.7048, 0.1853],
    [0.258, 0.5724], [0.3442, 0.5668], [0.4353, 0.5664], [0.5, 0.5832], [0.5647, 0.5664], [0.6558, 0.5668],
    [0.742, 0.5724], [0.6612, 0.6902], [0.5697, 0.7409], [0.5, 0.7525], [0.4303, 0.7409], [0.3388, 0.6902],
    [0.2905, 0.5892], [0.4357, 0.6056], [0.5, 0.6175], [0.5643, 0.6056], [0.7095, 0.5892], [0.5643, 0.6846],
    [0.5, 0.6958], [0.4357, 0.6846],
], dtype=np.float64)
_T[48:68, 0] = 0.5 + 0.85 * (_T[48:68, 0] - 0.5)
#: Canonical 68-point template in unit coordinates (x right, y down).
TEMPLATE_68: np.ndarray = _T
#: Points used to fit the similarity: eye corners, nose bridge/tip/base, nostril wings, mouth corners.
STABLE_POINTS: tuple[int, ...] = (36, 39, 42, 45, 27, 30, 31, 33, 35, 48, 54)


def template_points(size: int, margin: float) -> np.ndarray:
    """The template in pixel coordinates of a ``size`` x ``size`` crop with ``margin`` (fraction) on each side."""
    if not 0 <= margin < 0.5:
        raise ValueError(f"margin must be in [0, 0.5), got {margin}")
    return (size * (margin + (1.0 - 2.0 * margin) * TEMPLATE_68)).astype(np.float64)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2, 3) mapping ``src`` (K, 2) onto ``dst`` (K, 2) (Umeyama 1991)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("degenerate landmarks: all points coincide")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1.0
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / var_s)
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def apply_transform(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine transform to points (..., 2)."""
    pts = np.asarray(pts, np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def alignment_transform(pts68: np.ndarray, size: int, margin: float) -> np.ndarray:
    """The (2, 3) similarity mapping frame coordinates of ``pts68`` into the aligned crop."""
    pts68 = np.asarray(pts68, np.float64)
    if pts68.shape != (68, 2) or not np.isfinite(pts68).all():
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {pts68.shape}")
    idx = list(STABLE_POINTS)
    return umeyama(pts68[idx], template_points(size, margin)[idx])


def align_face(rgb: np.ndarray, pts68: np.ndarray, size: int, margin: float,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp a face to the canonical pose: returns ``(crop (size,size,3) uint8, aligned pts (68,2), M (2,3))``.

    Pixels outside the frame are black. Interpolation is bilinear.
    """
    m = alignment_transform(pts68, size, margin)
    crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    return crop, apply_transform(m, pts68).astype(np.float32), m.astype(np.float32)
