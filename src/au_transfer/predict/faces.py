"""The predictor's front end: the faces of every frame (detected, or followed between detections), numbered, and
read ahead of the networks (in a worker process, :mod:`au_transfer.predict.face_worker`, or a thread).

* :func:`detect_faces`: dlib detection, the 68 points in each box, the checks and the faces stage's alignment.
* :class:`FaceFinder`: per input, detection on the first frame and then every ``detect_every`` frames (or when a
  face is lost); in between, each face's landmarks are fitted in the box its last landmarks give
  (:class:`au_transfer.faces.track.BoxTracker`), which is what the detector would give on a still face.
* :class:`FaceTracker`: a face's number (column ``face``) by position.
* :class:`FaceStream`: decoding, faces, alignment and crops of one input, frame by frame (what the worker process
  and the thread run).
* :class:`FrameReader`: a :class:`FaceStream` in a thread of this process, a bounded queue ahead of the models
  (``front_end="thread"``; dlib's shape predictor keeps the GIL for its ~1-2 ms call, which the worker process
  avoids).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..faces.landmarks import REASON, REASON_NAMES, check_points
from ..faces.pipeline import FaceFrame, process_frame
from ..faces.regions import REGION_NAMES, cut_region
from ..faces.track import BoxTracker
from ..faces.video import iter_frames
from ..io import iter_ahead

log = logging.getLogger(__name__)

UNREADABLE = "unreadable_frame"
#: Default detection interval of a video (frames): the first frame, then every 30 (about a second of video).
DETECT_EVERY = 30


def frame_sampling(src: str | Path, *, every: int = 1, fps: float | None = None, video: bool = True
                   ) -> tuple[Callable[[int], bool] | None, float]:
    """Which source frames of an input to read (``--every N``: frames 1, 1 + N, 1 + 2N ...; ``--fps F``: a video
    resampled to F frames per second, the first frame of each 1/F-second step, every frame when F is not below the
    video's own rate) as ``(keep(frame number) or None for every frame, source frames per kept frame)``."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an integer >= 1 (read every Nth frame), not {every!r}")
    if fps is not None:
        if every != 1:
            raise ValueError("sample frames with every or with fps, not both")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, not {fps!r}")
        if not video:
            raise ValueError(f"{src}: fps resamples a video, and this is a folder of images or an image; use every")
        from ..faces.video import video_info

        rate = float(video_info(src).fps or 0.0)
        if not rate > 0:
            raise ValueError(f"{src}: the video's header gives no frame rate to resample from; use every instead")
        if fps >= rate:
            return None, 1.0
        ratio = fps / rate
        return (lambda n: n == 1 or int((n - 1) * ratio) > int((n - 2) * ratio)), rate / fps
    if every == 1:
        return None, 1.0
    return (lambda n: (n - 1) % every == 0), float(every)


# ------------------------------------------------------------------------------------------------- faces
def _faces_in_boxes(rgb: np.ndarray, boxes: Sequence[Sequence[float]], settings: Any,
                    landmarker: Any) -> tuple[list[FaceFrame], str, list[np.ndarray | None]]:
    """Landmarks, checks and alignment in each box ``(x0, y0, x1, y1, confidence)``: the usable faces, why a box
    gave none (the first reason), and per box its landmarks (None when it gave no usable face)."""
    faces: list[FaceFrame] = []
    reason = ""
    fitted: list[np.ndarray | None] = []
    for box in boxes:
        fitted.append(None)
        if box[4] < settings.min_confidence:
            reason = reason or REASON_NAMES[REASON["low_confidence"]]
            continue
        pts = landmarker.landmarks_in_box(rgb, box[:4])
        bad = check_points(pts, rgb.shape[:2], settings.plausibility)
        if bad:
            reason = reason or REASON_NAMES[bad]
            continue
        face = replace(process_frame(rgb, settings, pts), confidence=float(box[4]))
        if face.valid:
            faces.append(face)
            fitted[-1] = pts
        else:
            reason = reason or face.reason_name
    return faces, reason, fitted


def _detect(rgb: np.ndarray, settings: Any, landmarker: Any, largest_only: bool
            ) -> tuple[list[FaceFrame], str, list[tuple[Any, np.ndarray]]]:
    boxes = landmarker.detect(rgb)
    if not boxes:
        return [], REASON_NAMES[REASON["no_face_detected"]], []
    boxes = boxes[:1] if largest_only else boxes
    faces, reason, fitted = _faces_in_boxes(rgb, boxes, settings, landmarker)
    return faces, reason, [(b, p) for b, p in zip(boxes, fitted, strict=True) if p is not None]


def detect_faces(rgb: np.ndarray, settings: Any, landmarker: Any, largest_only: bool) -> tuple[list[FaceFrame], str]:
    """Every face of a frame through the face pipeline (largest first), and why there is none when so."""
    faces, reason, _ = _detect(rgb, settings, landmarker, largest_only)
    return faces, reason


class FaceFinder:
    """The faces of consecutive frames of one input: detected every ``detect_every`` frames (1: every frame) and
    whenever a face is lost or none is followed, else followed from the last landmarks (module docstring). A
    followed face keeps the confidence of its last detection."""

    def __init__(self, settings: Any, landmarker: Any, *, largest_only: bool = False, detect_every: int = 1):
        self.settings, self.landmarker, self.largest_only = settings, landmarker, largest_only
        self.boxes = BoxTracker(detect_every, max_jump=settings.plausibility.jump)
        self.detections = 0

    def __call__(self, rgb: np.ndarray) -> tuple[list[FaceFrame], str]:
        if not self.boxes.due():
            boxes = [(*box, conf) for box, conf in self.boxes.boxes()]
            faces, reason, fitted = _faces_in_boxes(rgb, boxes, self.settings, self.landmarker)
            if self.boxes.tracked(fitted):
                return faces, reason
        faces, reason, kept = _detect(rgb, self.settings, self.landmarker, self.largest_only)
        self.detections += 1
        self.boxes.detected(kept)
        return faces, reason


@dataclass
class _Track:
    face: int
    center: np.ndarray
    size: float


class FaceTracker:
    """Numbers faces by position: a face keeps the number of the nearest face of the last frames (within half
    its size); a new face gets the next number. The first faces are numbered largest first."""

    def __init__(self, memory: int = 25):
        self.tracks: list[_Track] = []
        self.memory = memory
        self._age: dict[int, int] = {}
        self._next = 0

    def assign(self, faces: Sequence[FaceFrame]) -> list[int]:
        ids: list[int] = []
        taken: set[int] = set()
        for face in faces:  # largest first
            inv = np.linalg.inv(np.vstack([face.transform, [0, 0, 1]]))
            center = (inv @ np.array([face.crop.shape[1] / 2, face.crop.shape[0] / 2, 1.0]))[:2]
            size = float(np.hypot(*inv[:2, 0])) * face.crop.shape[1]
            best = None
            for t in self.tracks:
                d = float(np.linalg.norm(t.center - center))
                if t.face not in taken and d < 0.5 * max(size, t.size) and (best is None or d < best[0]):
                    best = (d, t)
            if best is None:
                track = _Track(self._next, center, size)
                self._next += 1
                self.tracks.append(track)
            else:
                track = best[1]
                track.center, track.size = center, size
            taken.add(track.face)
            ids.append(track.face)
        for t in self.tracks:
            self._age[t.face] = 0 if t.face in taken else self._age.get(t.face, 0) + 1
        self.tracks = [t for t in self.tracks if self._age[t.face] <= self.memory]
        return ids


# --------------------------------------------------------------------------------------- frames of an input
@dataclass
class FoundFace:
    """What the networks' side needs of a face the front end found: the aligned face as the face store gives it
    back (:attr:`FaceFrame.image`), its region boxes and the detector's confidence."""

    image: np.ndarray
    boxes: np.ndarray
    confidence: float
    points: np.ndarray | None = None  # (68, 2) landmarks in the frame's pixels (the overlay draws them)


@dataclass
class FrameFaces:
    """One frame's faces, numbered (``(face number, FoundFace)`` by number), or why it has none."""

    no: int
    name: str
    faces: list[tuple[int, FoundFace]]
    reason: str
    crops: list[dict[tuple[str, int], np.ndarray]] = field(default_factory=list)  # per face: (region, size) -> crop


def _frame_points(face: FaceFrame) -> np.ndarray:
    """A face's 68 landmarks back in the frame's pixels (from the aligned ones and the alignment)."""
    inv = np.linalg.inv(np.vstack([face.transform, [0, 0, 1]]))
    pts = np.column_stack([face.landmarks, np.ones(len(face.landmarks))]) @ inv[:2].T
    return pts.astype(np.float32)


class FaceStream:
    """The :class:`FrameFaces` of every frame of one input, in order, computed in the iterating thread (the
    predictor runs it in a worker process, :mod:`au_transfer.predict.face_worker`, or in a thread,
    :class:`FrameReader`). ``crops``: the ``(region, size)`` crops to cut of each face; :attr:`detections` counts
    the face detections so far."""

    def __init__(self, src: str | Path, settings: Any, landmarker: Any, *, largest_only: bool, detect_every: int,
                 video: bool, crops: Sequence[tuple[str, int]] = (), every: int = 1, fps: float | None = None):
        self.src, self.settings, self.landmarker = Path(src), settings, landmarker
        self.crops = sorted(crops)
        self.largest_only = largest_only
        # frame sampling: ``detect_every`` counts source frames, so it is converted to read frames (at least 1)
        self.keep, step = frame_sampling(self.src, every=every, fps=fps, video=video)
        # a folder's images are unrelated: each one is detected
        self.detect_every = max(1, round(int(detect_every) / step)) if video else 1
        self.detections = 0

    def _cut(self, face: FaceFrame) -> dict[tuple[str, int], np.ndarray]:
        """The face's crops (after the store's encode round trip), cut here rather than in the networks' thread."""
        out = {}
        for region, size in self.crops:
            box = None if region == "face" else face.boxes[REGION_NAMES.index(region)]
            out[(region, size)] = cut_region(face.image, box, size, self.settings.crop_aspect)
        return out

    def __iter__(self) -> Iterator[FrameFaces]:
        finder = FaceFinder(self.settings, self.landmarker, largest_only=self.largest_only,
                            detect_every=self.detect_every)
        numbers = FaceTracker()
        for no, name, rgb in iter_frames(self.src, tolerant=True, keep=self.keep):
            if rgb is None:
                faces, reason = [], UNREADABLE
            else:
                faces, reason = finder(rgb)
            ids = [0] * len(faces) if self.largest_only else numbers.assign(faces)
            numbered = sorted(zip(ids, faces, strict=True), key=lambda t: t[0])
            self.detections = finder.detections
            yield FrameFaces(no, name, [(i, FoundFace(f.image, f.boxes, float(f.confidence), _frame_points(f)))
                                        for i, f in numbered], reason, [self._cut(f) for _, f in numbered])


class FrameReader:
    """Iterates the :class:`FrameFaces` of an input (:class:`FaceStream`), produced in a background thread of this
    process at most ``ahead`` frames ahead (the predictor's ``front_end="thread"``).

    ``landmarker`` is called (in the thread) to get the detector; ``on_frame`` after each frame (e.g. a progress
    bar's update). An error of the thread is raised by the iteration; closing the iteration stops the thread.
    """

    def __init__(self, src: Path, settings: Any, landmarker: Callable[[], Any], *, largest_only: bool,
                 detect_every: int, video: bool, ahead: int = 64, on_frame: Callable[[], Any] | None = None,
                 crops: Sequence[tuple[str, int]] = (), every: int = 1, fps: float | None = None):
        self.src, self.settings, self._landmarker, self.crops = src, settings, landmarker, crops
        self.largest_only, self.detect_every, self.video = largest_only, detect_every, video
        self.every, self.fps = every, fps
        self.ahead, self.on_frame = ahead, on_frame
        self.detections = 0

    def _frames(self) -> Iterator[FrameFaces]:
        stream = FaceStream(self.src, self.settings, self._landmarker(), largest_only=self.largest_only,
                            detect_every=self.detect_every, video=self.video, crops=self.crops,
                            every=self.every, fps=self.fps)
        for item in stream:
            self.detections = stream.detections
            yield item

    def __iter__(self) -> Iterator[FrameFaces]:
        return iter_ahead(self._frames(), self.ahead, name="au-transfer-faces", on_item=self.on_frame)
