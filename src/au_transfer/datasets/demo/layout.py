"""Writing a synthetic subject in the DISFA layout: video, AU label files, landmark files and manifest."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ... import DISFA_AUS
from .. import disfa
from .appearance import _rng, make_subject
from .render import render_frame
from .schedule import _defect_frames, _pose_track, make_labels

log = logging.getLogger(__package__)  # au_transfer.datasets.demo, as before the package was split


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
        from ...io import write_text_atomic

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
