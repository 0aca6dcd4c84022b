"""The faces stage: the per-frame face pipeline (:func:`process_frame`) and the two jobs, landmarks then faces.

:func:`process_frame` is the one place where a frame becomes an aligned face: the similarity alignment, the face
store's encode round trip (``raw`` / ``png`` / ``jpeg``), the blank-image rule and the region boxes. The faces job
(:func:`compute_faces`) calls it on every frame with landmarks and stores what it returns; the predictor
(:mod:`au_transfer.predict`) calls it on new frames with a dlib landmarker and scores :attr:`FaceFrame.image`,
which is exactly what the feature stage reads back from the face store.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from ..io import atomic_path
from .align import align_face
from .landmarks import (
    REASON,
    REASON_NAMES,
    SOURCE,
    check_points,
    jump_outliers,
    map_66_to_68,
)
from .regions import REGION_NAMES, boxes_array
from .settings import FaceSettings
from .store import FaceStoreWriter, LandmarkData, decode_image, encode_image, read_landmarks, write_landmarks
from .video import VideoError, iter_video, video_info

log = logging.getLogger(__name__)


class Landmarker(Protocol):
    """What :func:`process_frame` needs of a detector (:class:`~au_transfer.faces.landmarks.DlibLandmarker`)."""

    last_reason: int

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray | None, float]: ...


# ----------------------------------------------------------------------------------------- one frame, one face
@dataclass(eq=False)
class FaceFrame:
    """One frame through the face pipeline (:func:`process_frame`).

    ``crop`` is the aligned crop as warped (black when there are no usable landmarks); :attr:`encoded` the bytes the
    face store holds for it and :attr:`image` what the store gives back (``crop`` itself for ``raw``), both made on
    first use. ``landmarks`` (68, 2) and ``boxes`` (3, 4: upper, middle, lower; x0, y0, x1, y1) are in aligned
    pixels and set only for a valid frame; ``transform`` (2, 3) maps frame to aligned pixels (None without
    landmarks). ``reason`` is a code of :data:`~au_transfer.faces.landmarks.REASON_NAMES` (0 = ok);
    ``confidence`` the detector's, None when the landmarks were given.
    """

    crop: np.ndarray
    landmarks: np.ndarray | None
    boxes: np.ndarray | None
    transform: np.ndarray | None
    valid: bool
    reason: int
    confidence: float | None
    encoding: str
    jpeg_quality: int

    @property
    def reason_name(self) -> str:
        return REASON_NAMES[self.reason]

    @cached_property
    def encoded(self) -> np.ndarray | None:
        """The face store's bytes of :attr:`crop` (JPEG or PNG), None for ``raw``."""
        return encode_image(self.crop, self.encoding, self.jpeg_quality)

    @cached_property
    def image(self) -> np.ndarray:
        """(S, S, 3) uint8 RGB: the aligned face as the face store gives it back (after the encode round trip)."""
        if self.encoded is None:
            return self.crop
        img = decode_image(self.encoded)
        if img is None:
            raise ValueError(f"an aligned face encoded as {self.encoding} does not decode")
        return img


def process_frame(rgb: np.ndarray, settings: FaceSettings,
                  landmarks: np.ndarray | Landmarker) -> FaceFrame:
    """Align one RGB frame as the faces stage does, for the face store and for the predictor alike.

    ``landmarks``: the frame's 68 points in frame pixels, already checked (the faces job reads them from the
    landmark file), or a landmarker (called on ``rgb``; its points are checked with ``settings.plausibility``, and
    when it finds none or they are implausible the frame is invalid with its reason). A frame is then aligned
    (``settings.size``, ``margin``); it is invalid with reason ``blank_image`` when the aligned crop is flat
    (grey-level standard deviation < ``settings.min_image_std``, on the crop before encoding); otherwise it gets its
    aligned landmarks and region boxes (``region_pad``, ``region_forehead``). The encode round trip
    (``encoding``, ``jpeg_quality``) is :attr:`FaceFrame.encoded` / :attr:`FaceFrame.image`.
    """
    confidence = None
    if callable(landmarks):
        pts, confidence = landmarks(rgb)
        confidence = float(confidence)
        reason = landmarks.last_reason if pts is None else check_points(pts, rgb.shape[:2], settings.plausibility)
        if pts is None or reason:
            return FaceFrame(np.zeros((settings.size, settings.size, 3), np.uint8), None, None, None, False,
                             int(reason), confidence, settings.encoding, settings.jpeg_quality)
    else:
        pts = landmarks
    crop, aligned, m = align_face(rgb, pts, settings.size, settings.margin)
    if float(crop.std()) < settings.min_image_std:
        return FaceFrame(crop, None, None, m, False, REASON["blank_image"], confidence, settings.encoding,
                         settings.jpeg_quality)
    boxes = boxes_array(aligned, settings.size, pad=settings.region_pad, forehead=settings.region_forehead)
    return FaceFrame(crop, aligned, boxes, m, True, 0, confidence, settings.encoding, settings.jpeg_quality)


# --------------------------------------------------------------------------------------------- landmarks job
def compute_landmarks(video: str | os.PathLike[str], out: str | os.PathLike[str], subject: str,
                      settings: FaceSettings | Mapping[str, Any] | None = None, *,
                      landmark_files: Mapping[int, Path] | None = None,
                      read_landmark_file: Callable[[Path], np.ndarray] | None = None,
                      n_frames_labels: int | None = None, progress: bool = True, **overrides: Any) -> dict:
    """Decode every frame of ``video`` and write 68 landmarks per frame to ``out`` (atomically).

    ``settings``: the ``faces`` section (:class:`FaceSettings`, or a mapping; ``overrides`` are section keys on
    top). It uses ``landmarks``: ``disfa`` (the DISFA 66-point files, ``landmark_files`` = {1-based frame: path},
    read with ``read_landmark_file``), ``dlib`` or ``dlib_cnn``; with ``disfa``, frames whose file is missing or
    whose points are implausible (``plausibility``) fall back to dlib when ``fallback`` is ``dlib`` / ``dlib_cnn``
    (else they are invalid); dlib uses ``dlib_upsample``, ``dlib_detect_width`` and ``min_confidence``. Returns the
    counts (also stored as attributes and logged).
    """
    s = FaceSettings.from_config(settings, **overrides)
    source, fallback, plaus = s.landmarks, s.fallback, s.plausibility
    if source == "disfa" and (landmark_files is None or read_landmark_file is None):
        raise ValueError("faces.landmarks = disfa needs the DISFA landmark files and a reader")
    info = video_info(video, subject)
    h, w = info.height, info.width
    n_header = info.n_frames
    t0 = time.perf_counter()

    # Pass 1 (DISFA): read and check every file; no video needed for that except its size.
    n_alloc = max(n_header, max(landmark_files) if landmark_files else 0) + 1
    points = np.full((n_alloc, 68, 2), np.nan, np.float32)
    src = np.zeros(n_alloc, np.uint8)
    conf = np.zeros(n_alloc, np.float32)
    reason = np.zeros(n_alloc, np.uint8)
    fb_reason = np.zeros(n_alloc, np.uint8)
    need_dlib = np.zeros(n_alloc, bool)
    if source == "disfa":
        assert landmark_files is not None and read_landmark_file is not None
        for i in range(n_alloc):
            path = landmark_files.get(i + 1)
            if path is None:
                fb_reason[i] = REASON["no_landmark_file"]
                continue
            try:
                pts = map_66_to_68(read_landmark_file(Path(path)))
            except Exception as e:  # a bad file is not fatal: the frame falls back to dlib or is invalid
                log.warning("subject %s frame %d: landmark file %s unreadable (%s)", subject, i + 1, path, e)
                fb_reason[i] = REASON["unreadable_file"]
                continue
            r = check_points(pts, (h, w), plaus)
            if r == 0:
                points[i] = pts
                src[i] = SOURCE["disfa"]
                conf[i] = 1.0
            else:
                fb_reason[i] = r
        usable = src == SOURCE["disfa"]
        jumps = jump_outliers(points, usable, plaus.jump)
        fb_reason[jumps] = REASON["jump"]
        points[jumps] = np.nan
        src[jumps] = SOURCE["none"]
        conf[jumps] = 0.0
        need_dlib = src == SOURCE["none"]
        fallback_name = fallback
    else:
        need_dlib[:] = True
        fallback_name = source
    t_disfa = time.perf_counter() - t0

    landmarker = None
    t_setup = time.perf_counter()
    if need_dlib.any() and fallback_name != "none":
        landmarker = s.landmarker()  # the detector of fallback_name (FaceSettings.dlib_detector)

    # Pass 2: decode every frame (checks the count); convert to RGB only frames that need dlib.
    t1 = time.perf_counter()
    t_setup = t1 - t_setup
    t_dlib = 0.0
    n_dec = 0
    def retrieve(k: int) -> bool:
        return landmarker is not None and (k > len(need_dlib) or bool(need_dlib[k - 1]))

    # the container's frame count may be estimated (off by a few frames for some codecs): a video that decodes a
    # little short is logged below; one that stops early (truncated, corrupt) is an error
    tolerance = max(2, int(0.002 * n_header))
    for k, rgb in tqdm(iter_video(video, subject, expected=n_header, tolerance=tolerance, retrieve=retrieve),
                       total=n_header,
                       desc=f"landmarks {subject}", disable=not progress, mininterval=5):
        n_dec = k
        if k > len(src):  # more frames than the header said: grow the arrays
            grow = k - len(src) + 255
            old = len(src)
            points = np.concatenate([points, np.full((grow, 68, 2), np.nan, np.float32)])
            src, conf, reason, fb_reason = (np.concatenate([a, np.zeros(grow, a.dtype)])
                                            for a in (src, conf, reason, fb_reason))
            need_dlib = np.concatenate([need_dlib, np.full(grow, landmarker is not None)])
            if source == "disfa":
                fb_reason[old:] = REASON["no_landmark_file"]
        i = k - 1
        if rgb is None or landmarker is None:
            continue
        ts = time.perf_counter()
        pts, c = landmarker(rgb)
        t_dlib += time.perf_counter() - ts
        conf[i] = c
        if pts is None:
            reason[i] = landmarker.last_reason
            continue
        r = check_points(pts, (h, w), plaus)
        if r:
            reason[i] = r
            continue
        points[i] = pts
        src[i] = landmarker.source
    t_decode = time.perf_counter() - t1 - t_dlib
    n = n_dec
    points, src, conf, reason, fb_reason = points[:n], src[:n], conf[:n], reason[:n], fb_reason[:n]
    valid = src != SOURCE["none"]
    # frames with no source at all
    no_try = ~valid & (reason == 0)
    reason[no_try] = np.where(fb_reason[no_try] > 0, fb_reason[no_try], REASON["not_attempted"])
    reason[valid] = 0
    n_files = len(landmark_files) if landmark_files is not None else 0
    counts = {
        "subject": subject, "video": str(video), "n_frames_video": int(n), "n_frames_header": int(n_header),
        "n_frames_labels": int(n_frames_labels) if n_frames_labels is not None else -1,
        "n_frames_landmark_files": int(n_files), "n_valid": int(valid.sum()), "n_invalid": int((~valid).sum()),
        "n_disfa": int((src == SOURCE["disfa"]).sum()), "n_dlib": int(((src == SOURCE["dlib"]) |
                                                                        (src == SOURCE["dlib_cnn"])).sum()),
        "landmarks_source": source, "fallback": fallback,
        "frame_height": int(h), "frame_width": int(w),
    }
    if n_frames_labels is not None and n_frames_labels != n:
        log.warning("subject %s: %d labelled frames but %d video frames (%s)", subject, n_frames_labels, n, video)
    if source == "disfa" and n_files != n:
        log.warning("subject %s: %d DISFA landmark files for %d video frames", subject, n_files, n)
    data = LandmarkData(frames=np.arange(1, n + 1, dtype=np.int32), points=points, source=src, confidence=conf,
                        valid=valid, reason=reason, fallback_reason=fb_reason, attrs=counts)
    tw = time.perf_counter()
    with atomic_path(out) as tmp:
        write_landmarks(tmp, data)
    elapsed = time.perf_counter() - t0
    counts["seconds"] = {"disfa_files": t_disfa, "dlib_setup": t_setup, "decode": t_decode, "dlib": t_dlib,
                         "write": time.perf_counter() - tw, "total": elapsed}
    log.info("subject %s: %d frames, %d valid (%d DISFA, %d dlib), %d invalid; %.1f s (%.0f frames/s)", subject,
             n, counts["n_valid"], counts["n_disfa"], counts["n_dlib"], counts["n_invalid"], elapsed,
             n / max(elapsed, 1e-9))
    return counts


# ------------------------------------------------------------------------------------------------- faces job
def compute_faces(video: str | os.PathLike[str], landmarks: str | os.PathLike[str], out: str | os.PathLike[str],
                  settings: FaceSettings | Mapping[str, Any] | None = None, *, progress: bool = True,
                  **overrides: Any) -> dict:
    """Decode ``video`` again and write the aligned faces, aligned landmarks and region boxes to ``out``.

    ``settings``: the ``faces`` section (:class:`FaceSettings`, or a mapping; ``overrides`` are section keys on
    top); it uses ``size``, ``margin``, ``min_image_std``, ``region_pad``, ``region_forehead``, ``crop_aspect``,
    ``encoding``, ``compression``, ``compression_level`` and ``jpeg_quality``. Every frame with valid landmarks
    goes through :func:`process_frame`: it is valid in the store unless its aligned crop is flat (reason
    ``blank_image``; catches blank frames that still have tracker landmarks).
    """
    s = FaceSettings.from_config(settings, **overrides)
    size = s.size
    lm = read_landmarks(landmarks)
    subject = str(lm.attrs.get("subject", Path(video).stem))
    n = len(lm)
    t0 = time.perf_counter()
    times = {"decode": 0.0, "align": 0.0, "write": 0.0}
    with atomic_path(out) as tmp:
        w = FaceStoreWriter(tmp, n, size, subject=subject, encoding=s.encoding, compression=s.compression,
                            compression_level=s.compression_level, jpeg_quality=s.jpeg_quality,
                            attrs={"margin": float(s.margin), "region_pad": float(s.region_pad),
                                   "region_forehead": float(s.region_forehead),
                                   "min_image_std": float(s.min_image_std), "crop_aspect": s.crop_aspect,
                                   "video": str(video),
                                   "landmarks": str(landmarks)})
        try:
            it = iter_video(video, subject, expected=n, retrieve=lambda k: k - 1 < n and bool(lm.valid[k - 1]))
            k_last = 0
            ta = time.perf_counter()
            for k, rgb in tqdm(it, total=n, desc=f"faces {subject}", disable=not progress, mininterval=5):
                tb = time.perf_counter()
                times["decode"] += tb - ta
                if k > n:
                    break  # frames beyond the landmark file (it was made from the same video; counts agree)
                i = k - 1
                k_last = k
                if rgb is None or not lm.valid[i]:
                    w.put(i, k, None, None, None, None, False, int(lm.reason[i]) or REASON["not_attempted"])
                    ta = time.perf_counter()
                    times["write"] += ta - tb
                    continue
                fr = process_frame(rgb, s, lm.points[i])
                tc = time.perf_counter()
                times["align"] += tc - tb
                w.put(i, k, fr.crop, fr.landmarks, fr.boxes, fr.transform, fr.valid, fr.reason, encoded=fr.encoded)
                ta = time.perf_counter()
                times["write"] += ta - tc
            if k_last != n:
                raise VideoError(f"video {video} (subject {subject}): decoded {k_last} frames but the landmark file "
                                 f"{landmarks} has {n}")
            w.close({"n_frames_video": int(lm.attrs.get("n_frames_video", n)),
                     "n_frames_labels": int(lm.attrs.get("n_frames_labels", -1))})
        except BaseException:
            w.f.close()
            raise
    elapsed = time.perf_counter() - t0
    summary = {"subject": subject, "n_frames": n, "n_valid": int(w.valid.sum()), "size": size,
               "bytes": Path(out).stat().st_size, "seconds": {**times, "total": elapsed}}
    log.info("subject %s: %d aligned faces (%d valid) at %d px, %.1f kB/frame, %.1f s (%.0f frames/s)", subject, n,
             summary["n_valid"], size, summary["bytes"] / max(n, 1) / 1e3, elapsed, n / max(elapsed, 1e-9))
    return summary


__all__ = ["FaceFrame", "process_frame", "compute_landmarks", "compute_faces", "REGION_NAMES"]
