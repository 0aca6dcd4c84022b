"""Quality checks a person can look at: a contact sheet of aligned faces and a per-frame status table."""

from __future__ import annotations

import json
import logging
import os

import cv2
import numpy as np
import pandas as pd

from ..io import atomic_path, write_csv_atomic
from .landmarks import REASON_NAMES, SOURCE_NAMES
from .store import FaceStore, read_landmarks

log = logging.getLogger(__name__)

#: Region box colours (RGB) on the contact sheet.
REGION_COLOURS = {"upper": (230, 60, 60), "middle": (240, 200, 40), "lower": (60, 120, 255)}
SOURCE_COLOURS = {"disfa": (60, 230, 60), "dlib": (60, 230, 230), "dlib_cnn": (230, 60, 230)}


def status_table(landmarks_path: str | os.PathLike[str], faces_path: str | os.PathLike[str] | None = None,
                 ) -> pd.DataFrame:
    """Per-frame status: ``frame, source, confidence, valid, reason, fallback_reason`` (and ``aligned``)."""
    lm = read_landmarks(landmarks_path)
    src_names = json.loads(lm.attrs.get("source_names", json.dumps(SOURCE_NAMES)))
    rsn_names = json.loads(lm.attrs.get("reason_names", json.dumps(REASON_NAMES)))
    df = pd.DataFrame({
        "frame": lm.frames.astype(int),
        "source": [src_names[s] for s in lm.source],
        "confidence": np.round(lm.confidence.astype(float), 4),
        "valid": lm.valid.astype(int),
        "reason": [rsn_names[r] for r in lm.reason],
        "fallback_reason": [rsn_names[r] for r in lm.fallback_reason],
    })
    if faces_path is not None:
        with FaceStore(faces_path) as fs:
            if not np.array_equal(fs.frames, lm.frames):
                raise ValueError(f"face store {faces_path} and landmark file {landmarks_path} list different frames")
            df["aligned"] = fs.valid.astype(int)
    return df


def sample_rows(valid: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows spread evenly over the video; up to a quarter are invalid rows (when any) so they are seen."""
    total = len(valid)
    if total == 0:
        return np.zeros(0, np.int64)
    n = min(n, total)
    rows = np.unique(np.linspace(0, total - 1, n).round().astype(np.int64))
    bad = np.flatnonzero(~valid)
    n_bad_shown = int((~valid[rows]).sum())
    want_bad = min(len(bad), max(1, n // 4)) if len(bad) else 0
    if n_bad_shown < want_bad:
        extra = bad[np.unique(np.linspace(0, len(bad) - 1, want_bad).round().astype(np.int64))]
        extra = np.setdiff1d(extra, rows)[: want_bad - n_bad_shown]
        good_rows = rows[valid[rows]]
        drop = good_rows[np.unique(np.linspace(0, len(good_rows) - 1, len(extra)).round().astype(np.int64))] \
            if len(extra) and len(good_rows) else np.zeros(0, np.int64)
        rows = np.union1d(np.setdiff1d(rows, drop), extra)
    return rows


def _video_frames(video: str | os.PathLike[str], frames: set[int]) -> dict[int, np.ndarray]:
    from .video import iter_video

    out: dict[int, np.ndarray] = {}
    last = max(frames) if frames else 0
    for k, rgb in iter_video(video, retrieve=lambda k: k in frames, expected=0):
        if rgb is not None:
            out[k] = rgb
        if k >= last:
            break
    return out


def _letterbox(rgb: np.ndarray, tile: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = tile / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.zeros((tile, tile, 3), np.uint8)
    oy, ox = (tile - small.shape[0]) // 2, (tile - small.shape[1]) // 2
    out[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    return out


def contact_sheet(faces_path: str | os.PathLike[str], landmarks_path: str | os.PathLike[str] | None = None, *,
                  n_samples: int = 24, columns: int = 6, tile: int = 160,
                  video: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Draw a contact sheet (RGB uint8): sampled aligned faces with landmarks and region boxes; invalid frames
    are crossed out in red with their reason, over the (dimmed) whole video frame when ``video`` is given."""
    lm = read_landmarks(landmarks_path) if landmarks_path is not None else None
    with FaceStore(faces_path) as fs:
        rows = sample_rows(fs.valid, n_samples)
        imgs = fs.images(rows) if len(rows) else np.zeros((0, fs.size, fs.size, 3), np.uint8)
        size, frames, valid, reason = fs.size, fs.frames, fs.valid, fs.reason
        landmarks, boxes, subject = fs.landmarks, fs.boxes, fs.subject
        reason_names = fs.reason_names or list(REASON_NAMES)
        n_all, n_valid = len(fs), int(fs.valid.sum())
    scale = tile / size
    raw = _video_frames(video, {int(frames[r]) for r in rows if not valid[r]}) if video is not None else {}
    cols = max(1, min(columns, len(rows)))
    nrows = max(1, int(np.ceil(len(rows) / cols)))
    cap_h, head_h = 16, 28
    sheet = np.full((head_h + nrows * (tile + cap_h), cols * tile, 3), 255, np.uint8)
    head = f"{subject}: {n_valid}/{n_all} frames valid; upper=red middle=yellow lower=blue"
    cv2.putText(sheet, head, (4, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for j, r in enumerate(rows):
        y, x = head_h + (j // cols) * (tile + cap_h), (j % cols) * tile
        img = cv2.resize(imgs[j], (tile, tile), interpolation=cv2.INTER_LINEAR)
        src_name = SOURCE_NAMES[lm.source[r]] if lm is not None else "?"
        if valid[r]:
            for name, b in zip(("upper", "middle", "lower"), boxes[r], strict=True):
                p0 = (int(round(b[0] * scale)), int(round(b[1] * scale)))
                p1 = (int(round(b[2] * scale)) - 1, int(round(b[3] * scale)) - 1)
                cv2.rectangle(img, p0, p1, REGION_COLOURS[name], 1, cv2.LINE_AA)
            colour = SOURCE_COLOURS.get(src_name, (60, 230, 60))
            for px, py in landmarks[r]:
                cv2.circle(img, (int(round(px * scale)), int(round(py * scale))), 1, colour, -1, cv2.LINE_AA)
            caption, ccol = f"#{frames[r]} {src_name}", (0, 0, 0)
        else:
            if int(frames[r]) in raw:
                img = _letterbox(raw[int(frames[r])], tile)
            img = (img * 0.45).astype(np.uint8)
            cv2.line(img, (0, 0), (tile - 1, tile - 1), (255, 0, 0), 2)
            cv2.line(img, (0, tile - 1), (tile - 1, 0), (255, 0, 0), 2)
            caption, ccol = f"#{frames[r]} {reason_names[reason[r]]}", (200, 0, 0)
        sheet[y:y + tile, x:x + tile] = img
        cv2.putText(sheet, caption, (x + 3, y + tile + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, ccol, 1, cv2.LINE_AA)
    return sheet


def write_qc(landmarks_path: str | os.PathLike[str], faces_path: str | os.PathLike[str],
             out_png: str | os.PathLike[str], out_csv: str | os.PathLike[str], *, n_samples: int = 24,
             columns: int = 6, tile: int = 160, video: str | os.PathLike[str] | None = None) -> dict:
    """Write the contact sheet (PNG) and the per-frame status table (CSV), atomically; returns the counts.

    With ``video``, invalid frames show the whole video frame (so a person sees why no face was found)."""
    df = status_table(landmarks_path, faces_path)
    sheet = contact_sheet(faces_path, landmarks_path, n_samples=n_samples, columns=columns, tile=tile, video=video)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode the QC sheet {out_png}")
    with atomic_path(out_png) as tmp:
        tmp.write_bytes(buf.tobytes())
    write_csv_atomic(df, out_csv)
    counts = {"n_frames": len(df), "n_valid": int(df["valid"].sum()),
              "by_source": df["source"].value_counts().to_dict(),
              "invalid_reasons": df.loc[df["valid"] == 0, "reason"].value_counts().to_dict()}
    log.info("QC %s: %s", out_png, counts)
    return counts
