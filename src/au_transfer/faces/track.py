"""Face boxes carried from frame to frame, so that a video needs face detection only every few frames.

The detector finds a face's box; the 68-point shape predictor fits the landmarks inside it. On the frames in
between detections, :class:`BoxTracker` places each face's box where the detector would: the detector's box is
recorded relative to the bounding box of the landmarks it gave (:func:`box_relation`), and the next frame's box is
that relation applied to the last landmarks (:func:`box_from_points`). On a still face this is the detector's box
itself, so the landmarks, and everything computed from them, are those of per-frame detection.

The tracker only keeps the boxes and the schedule; the caller fits the landmarks, checks them and reports back
(:meth:`BoxTracker.detected`, :meth:`BoxTracker.tracked`). A track is lost (and the caller detects again, on the
same frame) when its landmarks fail the checks or jump (:func:`points_jump`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .landmarks import interocular

Box = tuple[float, float, float, float]


def _points_box(pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, np.float64)
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])


def box_relation(box: Sequence[float], pts: np.ndarray) -> np.ndarray:
    """A detector box ``(x0, y0, x1, y1)`` relative to the bounding box of its landmarks: the offsets of its four
    sides in units of that box's width (x) and height (y)."""
    lb = _points_box(pts)
    w, h = max(lb[2] - lb[0], 1.0), max(lb[3] - lb[1], 1.0)
    b = np.asarray(box[:4], np.float64)
    return (b - lb) / np.array([w, h, w, h])


def box_from_points(pts: np.ndarray, relation: np.ndarray) -> Box:
    """The box that stands in the ``relation`` (:func:`box_relation`) to the bounding box of ``pts``."""
    lb = _points_box(pts)
    w, h = max(lb[2] - lb[0], 1.0), max(lb[3] - lb[1], 1.0)
    b = lb + np.asarray(relation) * np.array([w, h, w, h])
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def points_jump(prev: np.ndarray, pts: np.ndarray) -> float:
    """Mean displacement of the 68 points between two frames, in interocular distances (as the faces stage's
    ``faces.plausibility.jump``)."""
    p, q = np.asarray(prev, np.float64), np.asarray(pts, np.float64)
    return float(np.linalg.norm(q - p, axis=1).mean() / max(min(interocular(p), interocular(q)), 1e-6))


@dataclass
class Track:
    """One face between detections: its landmarks on the last frame, the detector's box relative to them, and
    the detection's confidence."""

    points: np.ndarray
    relation: np.ndarray
    confidence: float

    def box(self) -> Box:
        return box_from_points(self.points, self.relation)


class BoxTracker:
    """When to detect, and where the faces are in between.

    ``every``: detect on the first frame, then every ``every`` frames (1: every frame), and whenever there is no
    face to follow or the caller reports a lost track. ``max_jump``: a face whose landmarks move further than this
    (interocular distances, :func:`points_jump`) from one frame to the next counts as lost.
    """

    def __init__(self, every: int, max_jump: float = float("inf")) -> None:
        if int(every) < 1:
            raise ValueError(f"detection interval must be at least 1 frame, not {every!r}")
        self.every, self.max_jump = int(every), float(max_jump)
        self.tracks: list[Track] = []
        self._since = 0  # frames since the last detection

    def due(self) -> bool:
        """Whether the next frame needs the detector."""
        return self.every == 1 or not self.tracks or self._since + 1 >= self.every

    def boxes(self) -> list[tuple[Box, float]]:
        """``(box, confidence)`` of every followed face on the next frame, in the order of the last detection."""
        return [(t.box(), t.confidence) for t in self.tracks]

    def detected(self, faces: Sequence[tuple[Sequence[float], np.ndarray]]) -> None:
        """A detection frame's usable faces as ``(box with confidence at [4], landmarks)``: they replace the tracks."""
        self.tracks = [Track(np.asarray(pts, np.float64), box_relation(box, pts), float(box[4])) for box, pts in faces]
        self._since = 0

    def tracked(self, points: Sequence[np.ndarray | None]) -> bool:
        """The landmarks fitted in :meth:`boxes` (None: failed a check). Returns False, and changes nothing, when
        a face is lost (failed, or jumped further than ``max_jump``): the caller then detects on the frame."""
        if len(points) != len(self.tracks):
            raise ValueError(f"{len(points)} landmark sets for {len(self.tracks)} tracks")
        for t, pts in zip(self.tracks, points, strict=True):
            if pts is None or points_jump(t.points, pts) > self.max_jump:
                return False
        for t, pts in zip(self.tracks, points, strict=True):
            t.points = np.asarray(pts, np.float64)
        self._since += 1
        return True
