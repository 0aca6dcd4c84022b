"""The two jobs of the faces stage (landmarks, then aligned faces) and the single-image API for new inputs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..io import atomic_path
from .align import align_face, alignment_transform, apply_transform
from .landmarks import (
    REASON,
    SOURCE,
    DlibLandmarker,
    Plausibility,
    check_points,
    jump_outliers,
    map_66_to_68,
)
from .regions import REGION_NAMES, boxes_array
from .store import FaceStoreWriter, LandmarkData, read_landmarks, write_landmarks
from .video import iter_video, video_info

log = logging.getLogger(__name__)


def detect_and_align(rgb: np.ndarray, size: int, landmarker: DlibLandmarker, margin: float = 0.15,
                     plausibility: Plausibility | None = None,
                     ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, bool, str]:
    """Landmarks (dlib) and alignment of one RGB image; for the predictor on new videos or images.

    Returns ``(crop (size,size,3) uint8, aligned points (68,2) or None, region boxes (3,4) or None, valid,
    reason)``; when no usable face is found the crop is black, ``valid`` is False and ``reason`` says why
    (a name of :data:`~au_transfer.faces.landmarks.REASON_NAMES`).
    """
    from .landmarks import REASON_NAMES

    pts, _conf = landmarker(rgb)
    reason = landmarker.last_reason if pts is None else check_points(pts, rgb.shape[:2],
                                                                    plausibility or Plausibility())
    if pts is None or reason:
        return np.zeros((size, size, 3), np.uint8), None, None, False, REASON_NAMES[reason]
    crop, aligned, _m = align_face(rgb, pts, size, margin)
    return crop, aligned, boxes_array(aligned, size), True, "ok"


# --------------------------------------------------------------------------------------------- landmarks job
def compute_landmarks(video: str | os.PathLike[str], out: str | os.PathLike[str], subject: str, *,
                      landmark_files: Mapping[int, Path] | None = None,
                      read_landmark_file: Callable[[Path], np.ndarray] | None = None,
                      source: str = "disfa", fallback: str = "dlib", n_frames_labels: int | None = None,
                      plausibility: Plausibility | None = None, dlib_upsample: int = 1,
                      dlib_detect_width: int | None = 640, min_confidence: float = 0.0,
                      progress: bool = True) -> dict:
    """Decode every frame of ``video`` and write 68 landmarks per frame to ``out`` (atomically).

    ``source``: ``disfa`` (the DISFA 66-point files, ``landmark_files`` = {1-based frame: path}, read with
    ``read_landmark_file``), ``dlib`` or ``dlib_cnn``. With ``source = disfa``, frames whose file is missing or whose
    points are implausible fall back to dlib when ``fallback = dlib`` (else they are invalid). Returns the counts
    (also stored as attributes and logged).
    """
    plaus = plausibility or Plausibility()
    if source not in ("disfa", "dlib", "dlib_cnn"):
        raise ValueError(f"faces.landmarks must be disfa, dlib or dlib_cnn, got {source!r}")
    if fallback not in ("dlib", "dlib_cnn", "none"):
        raise ValueError(f"faces.fallback must be dlib, dlib_cnn or none, got {fallback!r}")
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
        landmarker = DlibLandmarker("cnn" if fallback_name == "dlib_cnn" else "hog", upsample=dlib_upsample,
                                    detect_width=dlib_detect_width, min_confidence=min_confidence)

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
                  *, size: int = 160, margin: float = 0.15, encoding: str = "jpeg", compression: str = "gzip",
                  compression_level: int = 4, jpeg_quality: int = 95, region_pad: float = 0.15,
                  region_forehead: float = 0.4, min_image_std: float = 3.0, crop_aspect: str = "pad",
                  progress: bool = True) -> dict:
    """Decode ``video`` again and write the aligned faces, aligned landmarks and region boxes to ``out``.

    A frame is valid in the store when its landmarks are valid and its aligned crop is not flat (grey-level
    standard deviation >= ``min_image_std``; catches blank frames that still have tracker landmarks).
    """
    if crop_aspect not in ("pad", "stretch"):
        raise ValueError(f"faces.crop_aspect must be pad or stretch, got {crop_aspect!r}")
    lm = read_landmarks(landmarks)
    subject = str(lm.attrs.get("subject", Path(video).stem))
    n = len(lm)
    t0 = time.perf_counter()
    times = {"decode": 0.0, "align": 0.0, "write": 0.0}
    with atomic_path(out) as tmp:
        w = FaceStoreWriter(tmp, n, size, subject=subject, encoding=encoding, compression=compression,
                            compression_level=compression_level, jpeg_quality=jpeg_quality,
                            attrs={"margin": float(margin), "region_pad": float(region_pad),
                                   "region_forehead": float(region_forehead),
                                   "min_image_std": float(min_image_std), "crop_aspect": crop_aspect,
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
                m = alignment_transform(lm.points[i], size, margin)
                crop = _warp(rgb, m, size)
                if float(crop.std()) < min_image_std:
                    w.put(i, k, crop, None, None, m.astype(np.float32), False, REASON["blank_image"])
                    ta = time.perf_counter()
                    times["align"] += ta - tb
                    continue
                aligned = apply_transform(m, lm.points[i]).astype(np.float32)
                boxes = boxes_array(aligned, size, pad=region_pad, forehead=region_forehead)
                tc = time.perf_counter()
                times["align"] += tc - tb
                w.put(i, k, crop, aligned, boxes, m.astype(np.float32), True, 0)
                ta = time.perf_counter()
                times["write"] += ta - tc
            if k_last != n:
                from .video import VideoError

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


def _warp(rgb: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


__all__ = ["detect_and_align", "compute_landmarks", "compute_faces", "align_face", "REGION_NAMES"]
