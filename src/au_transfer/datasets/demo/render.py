"""Rendering one frame of a subject: AU motion and shading, mouth interior, head pose, defects, light, noise."""

from __future__ import annotations

import numpy as np

from ... import DISFA_AUS
from .appearance import Subject
from .facs import N_CONTROL, FaceFrame


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
