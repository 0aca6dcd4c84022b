"""Running a predictor over a video, an image or a folder of images: one OpenFace-style row per face and frame.

Columns: ``frame, face, timestamp, success, confidence, reason``, then ``AU01_p …`` (scores) and ``AU01_c …``
(0/1), then, when the run trained intensity regressors, ``AU01_r …`` (intensity 0-5, the regressor chosen on
validation, or ``regressor``), then ``file``. ``face`` numbers the faces of the input: 0 is the largest face of the first frame that has
one, and a face keeps its number from frame to frame while it stays near where it was (tracked by position); a
frame without a usable face has one row with an empty ``face``, ``success = 0`` and a ``reason`` (``no_face_detected``,
``low_confidence``, implausible landmarks such as ``face_size``, ``blank_image``, ``unreadable_frame``). With
``largest_only`` each frame gives one row, for its largest face (``face`` 0).

Real media are messy: a video that decodes fewer frames than its header says, or whose stream breaks, gives every
frame that decoded and one warning saying where and why decoding stopped; an unreadable image in a folder gives a
``success = 0`` row; only an input where nothing decodes at all is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..faces.landmarks import REASON, REASON_NAMES, check_points
from ..faces.pipeline import FaceFrame, process_frame
from ..faces.video import IMAGE_EXTENSIONS, iter_frames, video_info
from ..io import atomic_path
from .inputs import FaceChunk
from .manifest import PredictError
from .predictor import Predictor

log = logging.getLogger(__name__)

BASE_COLUMNS: tuple[str, ...] = ("frame", "face", "timestamp", "success", "confidence", "reason")
UNREADABLE = "unreadable_frame"


def au_columns(aus: Sequence[int]) -> list[str]:
    """``AU01_p … AU26_p`` then ``AU01_c … AU26_c`` (OpenFace groups the scores, then the classes)."""
    return [f"AU{au:02d}_p" for au in aus] + [f"AU{au:02d}_c" for au in aus]


# ------------------------------------------------------------------------------------------------- faces
def detect_faces(rgb: np.ndarray, settings: Any, landmarker: Any, largest_only: bool) -> tuple[list[FaceFrame], str]:
    """Every face of a frame through the face pipeline (largest first), and why there is none when so."""
    boxes = landmarker.detect(rgb)
    if not boxes:
        return [], REASON_NAMES[REASON["no_face_detected"]]
    faces: list[FaceFrame] = []
    reason = ""
    for box in boxes[:1] if largest_only else boxes:
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
        else:
            reason = reason or face.reason_name
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


# -------------------------------------------------------------------------------------------------- rows
def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def iter_predictions(input_path: str | os.PathLike[str], predictor: Predictor, *, chunk_size: int = 128,
                     progress: bool = True, largest_only: bool = False) -> Iterator[pd.DataFrame]:
    """Yield the per-face, per-frame table chunk by chunk (memory stays flat however long the video).

    Every face goes through :func:`au_transfer.faces.pipeline.process_frame` with the run's face settings, so the
    models see faces aligned, encoded and cut as the face store holds them.
    """
    from tqdm.auto import tqdm

    src = Path(input_path)
    if not src.exists():
        raise PredictError(f"input {src} does not exist")
    is_video = src.is_file() and src.suffix.lower() not in IMAGE_EXTENSIONS
    fps, total = np.nan, None
    if is_video:
        try:
            info = video_info(src)
            fps, total = (info.fps if info.fps > 0 else np.nan), (info.n_frames or None)
        except (OSError, ValueError, RuntimeError):
            pass  # iter_frames says why it cannot be decoded
    settings = predictor.face
    landmarker = settings.landmarker()
    tracker = FaceTracker()
    cols = au_columns(predictor.aus) + [f"AU{au:02d}_r" for au in predictor.reg_aus]
    bar = tqdm(total=total, desc=f"predict {src.name}", unit="frame", disable=not progress, mininterval=1.0)
    for frames in _chunks(iter_frames(src, tolerant=True), chunk_size):
        rows: list[dict[str, Any]] = []
        per_track: dict[int, list[tuple[int, FaceFrame]]] = {}
        for no, name, rgb in frames:
            base = {"frame": no, "timestamp": (no - 1) / fps if is_video and np.isfinite(fps) else np.nan,
                    "file": src.name if is_video else name}
            faces, reason = ([], UNREADABLE) if rgb is None else detect_faces(rgb, settings, landmarker, largest_only)
            ids = [0] * len(faces) if largest_only else tracker.assign(faces)
            if not faces:
                rows.append({**base, "face": pd.NA, "success": 0, "confidence": 0.0, "reason": reason})
            for face, fid in sorted(zip(faces, ids, strict=True), key=lambda t: t[1]):
                per_track.setdefault(fid, []).append((len(rows), face))
                rows.append({**base, "face": fid, "success": 1, "confidence": round(face.confidence, 4),
                             "reason": ""})
            bar.update(1)
        values = {c: np.full(len(rows), np.nan) for c in cols}
        for fid, items in per_track.items():
            idx = np.array([i for i, _ in items])
            chunk = FaceChunk(np.stack([f.image for _, f in items]), np.stack([f.boxes for _, f in items]),
                              settings.crop_aspect)
            for au, (score, pred) in predictor.score_chunk(chunk, track=fid).items():
                values[f"AU{au:02d}_p"][idx] = score
                values[f"AU{au:02d}_c"][idx] = pred
            for au, value in predictor.score_intensity(chunk, track=fid).items():
                values[f"AU{au:02d}_r"][idx] = value
        table = pd.DataFrame(rows, columns=[*BASE_COLUMNS, "file"])
        table["face"] = table["face"].astype("Int64")
        table["success"] = table["success"].astype(np.int8)
        for c in cols:
            table[c] = pd.array(values[c], dtype="Int8") if c.endswith("_c") else values[c]
        yield table[[*BASE_COLUMNS, *cols, "file"]]
    bar.close()


def check_output(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, an output path that cannot be written (a folder, a missing or read-only parent)."""
    out = Path(path)
    if out.is_dir():
        raise PredictError(f"output {out} is a folder; name a CSV file, e.g. {out / 'predictions.csv'}")
    if not out.parent.is_dir():
        raise PredictError(f"output {out}: its folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise PredictError(f"output {out} cannot be written (permission denied)")
    return out


def predict(input_path: str | os.PathLike[str], model_dir: str | os.PathLike[str] | None = None, *, model: str,
            results: str | os.PathLike[str] | None = None, split: str | None = None, device: str = "auto",
            batch_size: int = 32, chunk_size: int = 128, aus: Sequence[int] | None = None,
            progress: bool = True, largest_only: bool = False, detector: str | None = None,
            regressor: str | None = "auto") -> pd.DataFrame:
    """AU occurrence per face and frame of a video, an image or a folder of images (OpenFace-style DataFrame).

    ``model`` is a model id (``dlib_resnet-face-svm``) or an ensemble (``ens-paper3``); ``regressor`` an intensity
    regressor for the ``AUxx_r`` columns (``auto``: the best on validation when the run trained any; None: none);
    the trained files come from
    ``model_dir`` (``results/models/<split>``) or from ``results`` and ``split``.
    """
    predictor = Predictor(model, results=results, split=split, model_dir=model_dir, device=device,
                          batch_size=batch_size, aus=aus, detector=detector, regressor=regressor)
    parts = list(iter_predictions(input_path, predictor, chunk_size=chunk_size, progress=progress,
                                  largest_only=largest_only))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*BASE_COLUMNS, *au_columns(predictor.aus), *[f"AU{a:02d}_r" for a in predictor.reg_aus],
                 "file"])


def predict_to_csv(input_path: str | os.PathLike[str], out_csv: str | os.PathLike[str], *, model: str,
                   model_dir: str | os.PathLike[str] | None = None, results: str | os.PathLike[str] | None = None,
                   split: str | None = None, device: str = "auto", batch_size: int = 32, chunk_size: int = 128,
                   aus: Sequence[int] | None = None, progress: bool = True, largest_only: bool = False,
                   detector: str | None = None, regressor: str | None = "auto") -> dict[str, int]:
    """Stream the table into ``out_csv`` (written atomically; checked before any work); returns
    ``{frames, rows, faces}`` (decoded frames, rows written, rows with a face)."""
    check_output(out_csv)
    if not Path(input_path).exists():
        raise PredictError(f"input {input_path} does not exist")
    predictor = Predictor(model, results=results, split=split, model_dir=model_dir, device=device,
                          batch_size=batch_size, aus=aus, detector=detector, regressor=regressor)
    frames = rows = faces = 0
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        for i, part in enumerate(iter_predictions(input_path, predictor, chunk_size=chunk_size, progress=progress,
                                                  largest_only=largest_only)):
            part.to_csv(fh, header=i == 0, index=False, float_format="%.6g")
            frames += int(part["frame"].nunique())
            rows += len(part)
            faces += int(part["success"].sum())
    log.info("%s: %d frames, %d rows, %d with a face -> %s", input_path, frames, rows, faces, out_csv)
    return {"frames": frames, "rows": rows, "faces": faces}
