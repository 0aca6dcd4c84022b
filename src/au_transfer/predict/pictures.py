"""Pictures of a prediction: each AU over time (``--plot``) and the video annotated (``--overlay``).

* :func:`plot_predictions`: a PNG (matplotlib, Agg backend), one panel per AU: the model's score ``AUxx_p`` per
  face over time (timestamp in seconds, else frame number), the frames where it is predicted present
  (``AUxx_c = 1``) tinted, the intensity ``AUxx_r`` (0-5, right axis, dashed) where the run trained regressors,
  and the frames without a usable face shaded grey.
* :func:`write_overlay`: the input's (sampled) frames with, per face, its box (around its 68 landmarks), the
  landmarks, its number and the AUs predicted present with their intensity; a frame without a face says why.
  MP4 (OpenCV's ``mp4v``), at the input's rate divided by the sampling step (a folder of images: 5 frames/s).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import atomic_path

#: the PNG and the annotated video beside ``NAME.csv``
PLOT_SUFFIX = ".png"
OVERLAY_SUFFIX = ".overlay.mp4"
MAX_FACES_PLOTTED = 4


def plot_path(csv: str | os.PathLike[str]) -> Path:
    return Path(csv).with_suffix(PLOT_SUFFIX)


def overlay_path(csv: str | os.PathLike[str]) -> Path:
    return Path(csv).with_suffix(OVERLAY_SUFFIX)


def _aus(table: pd.DataFrame) -> list[str]:
    return [c[:-2] for c in table.columns if c.startswith("AU") and c.endswith("_p")]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` index pairs (inclusive) of the runs of True in ``mask``."""
    runs, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        if not m and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(mask) - 1))
    return runs


def plot_predictions(table: pd.DataFrame, out: str | os.PathLike[str], *, title: str = "") -> Path:
    """Write the PNG of a prediction table (module docstring); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aus = _aus(table)
    if not aus:
        raise ValueError(f"{out}: the table has no AU columns (AUxx_p) to plot")
    frames = table.groupby("frame", sort=True)
    t = frames["timestamp"].first()
    use_time = bool(np.isfinite(t.to_numpy(float)).all())
    x_of = t if use_time else pd.Series(t.index.to_numpy(float), index=t.index)
    xs = x_of.to_numpy(float)
    half = float(np.median(np.diff(xs))) / 2 if len(xs) > 1 else 0.5
    faceless = ~frames["success"].max().astype(bool).to_numpy()
    faces = table.loc[table["success"] == 1, "face"].dropna().astype(int).value_counts()
    faces = sorted(faces.index[:MAX_FACES_PLOTTED])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(len(aus), 1, figsize=(10, 1.3 + 1.25 * len(aus)), sharex=True, squeeze=False)
    for ax, au in zip(axes[:, 0], aus, strict=True):
        for a, b in _runs(faceless):
            ax.axvspan(xs[a] - half, xs[b] + half, color="0.8", lw=0, zorder=0)
        reg = ax.twinx() if f"{au}_r" in table.columns else None
        for k, face in enumerate(faces):
            rows = table[(table["face"] == face) & (table["success"] == 1)].set_index("frame").reindex(x_of.index)
            color = colors[k % len(colors)]
            ax.plot(xs, rows[f"{au}_p"].to_numpy(float), color=color, lw=1.2, label=f"face {face} score")
            present = rows[f"{au}_c"].fillna(0).to_numpy(float) > 0
            for a, b in _runs(present):
                ax.axvspan(xs[a] - half, xs[b] + half, color=color, alpha=0.15, lw=0, zorder=0)
            if reg is not None:
                reg.plot(xs, rows[f"{au}_r"].to_numpy(float), color=color, lw=1.0, ls="--",
                         label=f"face {face} intensity")
        ax.set_ylabel(f"{au}\nscore", fontsize=8)
        ax.tick_params(labelsize=7)
        if reg is not None:
            reg.set_ylim(-0.1, 5.1)
            reg.set_ylabel("intensity", fontsize=7)
            reg.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time (s)" if use_time else "frame")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[0], alpha=0.15, label="predicted present (AUxx_c = 1)"),
               plt.Rectangle((0, 0), 1, 1, color="0.8", label="no face")]
    h, _ = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles=[*h, *handles], loc="upper right", fontsize=7, ncol=min(4, len(h) + 1))
    fig.suptitle(title or Path(out).stem, fontsize=9, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(out)


# ---------------------------------------------------------------------------------------------- overlay
def _labels(row: pd.Series, aus: Sequence[str]) -> list[str]:
    out = []
    for au in aus:
        if row.get(f"{au}_c") == 1:
            r = row.get(f"{au}_r")
            out.append(f"{au} {r:.1f}" if r is not None and np.isfinite(r) else au)
    return out


def annotate(rgb: np.ndarray, rows: pd.DataFrame, points: Mapping[int, np.ndarray | None],
             aus: Sequence[str]) -> np.ndarray:
    """One frame (RGB) annotated: per face its box, landmarks, number and active AUs (``rows``: its table rows;
    ``points``: face number -> (68, 2) landmarks in the frame's pixels)."""
    import cv2

    img = np.ascontiguousarray(rgb).copy()
    h, w = img.shape[:2]
    scale = max(0.35, min(w, h) / 700)
    thick = max(1, round(scale * 2))
    for _, row in rows.iterrows():
        if row["success"] != 1 or pd.isna(row["face"]):
            cv2.putText(img, f"no face: {row['reason']}", (8, int(24 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, (255, 80, 80), thick, cv2.LINE_AA)
            continue
        face = int(row["face"])
        pts = points.get(face)
        if pts is None:
            continue
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int)
        color = (60, 220, 60)
        cv2.rectangle(img, (x0, y0), (x1, y1), color, thick)
        for px, py in pts.astype(int):
            cv2.circle(img, (int(px), int(py)), max(1, thick), (255, 230, 0), -1)
        for c, t in (((0, 0, 0), thick + 2), (color, thick)):
            cv2.putText(img, f"face {face}", (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, scale, c, t,
                        cv2.LINE_AA)
        for k, text in enumerate(_labels(row, aus)):
            y = y0 + int((k + 1) * 22 * scale)
            cv2.putText(img, text, (x1 + 6, y), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.9, (255, 255, 255),
                        thick + 2, cv2.LINE_AA)
            cv2.putText(img, text, (x1 + 6, y), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.9, (200, 30, 30), thick,
                        cv2.LINE_AA)
    return img


def write_overlay(src: str | os.PathLike[str], table: pd.DataFrame,
                  faces: Mapping[int, Sequence[tuple[int, np.ndarray | None]]], out: str | os.PathLike[str], *,
                  every: int = 1, fps: float | None = None) -> Path:
    """Write the annotated video of an input (module docstring): its frames sampled as they were predicted,
    ``faces``: frame number -> ``(face number, landmarks)`` as the front end found them."""
    import cv2

    from ..faces.video import IMAGE_EXTENSIONS, iter_frames, video_info
    from .faces import frame_sampling

    src, out = Path(src), Path(out)
    video = src.is_file() and src.suffix.lower() not in IMAGE_EXTENSIONS
    keep, step = frame_sampling(src, every=every, fps=fps, video=video)
    rate = 5.0
    if video:
        info_fps = video_info(src).fps
        rate = info_fps / step if info_fps > 0 else 5.0
    aus = _aus(table)
    by_frame = {int(k): g for k, g in table.groupby("frame")}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".mp4", dir=out.parent)  # OpenCV needs the suffix
    os.close(fd)
    writer: Any = None
    size: tuple[int, int] | None = None
    try:
        for no, _, rgb in iter_frames(src, tolerant=True, keep=keep):
            if rgb is None:
                rgb = np.zeros((size[1], size[0], 3), np.uint8) if size else np.zeros((240, 320, 3), np.uint8)
            if writer is None:
                size = (rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2)
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), rate, size)
                if not writer.isOpened():
                    raise RuntimeError(f"{out}: OpenCV cannot write an mp4v video here")
            rows = by_frame.get(int(no), table.iloc[:0])
            img = annotate(rgb, rows, dict(faces.get(int(no), [])), aus)
            if (img.shape[1], img.shape[0]) != size:
                img = cv2.resize(img, size)
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if writer is None:
            raise RuntimeError(f"{src}: no frame to annotate")
        writer.release()
        writer = None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600: the permissions a plain open() gives
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.release()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
