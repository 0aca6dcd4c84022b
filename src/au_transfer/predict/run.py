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

import itertools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..faces.video import IMAGE_EXTENSIONS, video_info
from ..io import atomic_path
from .faces import DETECT_EVERY, FoundFace, FrameFaces, frame_sampling
from .inputs import FaceChunk, Inputs
from .manifest import PredictError
from .predictor import Predictor

log = logging.getLogger(__name__)
_STREAMS = itertools.count()  # one key per input read: its face tracks' sequence state is its own

BASE_COLUMNS: tuple[str, ...] = ("frame", "face", "timestamp", "success", "confidence", "reason")


def au_columns(aus: Sequence[int]) -> list[str]:
    """``AU01_p … AU26_p`` then ``AU01_c … AU26_c`` (OpenFace groups the scores, then the classes)."""
    return [f"AU{au:02d}_p" for au in aus] + [f"AU{au:02d}_c" for au in aus]


# -------------------------------------------------------------------------------------------------- rows
Outputs = dict[int, list[dict[tuple, np.ndarray]]]


def _chunks(frames: Iterator[FrameFaces], size: int, inputs: Inputs) -> Iterator[tuple[list[FrameFaces], Outputs]]:
    """Chunks of ``size`` frames, each with its face tracks' network outputs (:meth:`Inputs.batch_outputs` of
    consecutive ``batch_size`` faces of a track), computed as soon as a batch has arrived: the networks start on
    the first batch instead of waiting for a whole chunk to be read, and run the batches they would run on it."""
    buf: list[FrameFaces] = []
    waiting: dict[int, list[dict]] = {}  # per track: crops of faces not yet through the networks
    done: Outputs = {}
    ahead = bool(inputs.outputs)

    def run(fid: int) -> None:
        cuts = waiting.pop(fid)
        batch = {k: np.stack([c[k] for c in cuts]) for k in cuts[0]}
        done.setdefault(fid, []).append(inputs.batch_outputs(batch))

    for fr in frames:
        buf.append(fr)
        for (fid, _), cut in zip(fr.faces, fr.crops, strict=True):
            if ahead:
                waiting.setdefault(fid, []).append(cut)
                if len(waiting[fid]) >= inputs.batch_size:
                    run(fid)
        if len(buf) >= size:
            for fid in list(waiting):
                run(fid)
            yield buf, done
            buf, done = [], {}
    for fid in list(waiting):
        run(fid)
    if buf:
        yield buf, done


def iter_predictions(input_path: str | os.PathLike[str], predictor: Predictor, *, chunk_size: int = 128,
                     progress: bool = True, largest_only: bool = False, detect_every: int = DETECT_EVERY,
                     every: int = 1, fps: float | None = None, slot: int = 0,
                     on_frame: Callable[[], Any] | None = None,
                     on_faces: Callable[[FrameFaces], Any] | None = None) -> Iterator[pd.DataFrame]:
    """Yield the per-face, per-frame table chunk by chunk (memory stays flat however long the video).

    Every face goes through :func:`au_transfer.faces.pipeline.process_frame` with the run's face settings, so the
    models see faces aligned, encoded and cut as the face store holds them. In a video, faces are detected on the
    first frame, then every ``detect_every`` frames and whenever a face is lost, and followed from their
    landmarks in between (:class:`~au_transfer.predict.faces.FaceFinder`; 1: detect on every frame); the images
    of a folder are each detected. Frames are decoded and their faces found by the front end
    (:meth:`Predictor.read_frames`: a worker process, or a thread) while the networks run on the faces already read, a batch of a face track at a time (:func:`_chunks`); the progress
    bar counts frames as they pass that stage (at most about a second between updates).

    Frame sampling: ``every`` (every Nth frame) or ``fps`` (a video resampled to F frames per second,
    :func:`~au_transfer.predict.faces.frame_sampling`); rows keep the source frame number and its timestamp, and
    ``detect_every`` still counts source frames. ``slot``: the front end that reads this input (several inputs are
    read side by side, :mod:`au_transfer.predict.batch`); ``on_frame`` replaces the progress bar (called per frame);
    ``on_faces`` is given every frame's faces (their landmarks in frame pixels: the overlay).
    """
    from tqdm.auto import tqdm

    src = Path(input_path)
    if not src.exists():
        raise PredictError(f"input {src} does not exist")
    if isinstance(detect_every, bool) or not isinstance(detect_every, int) or detect_every < 1:
        raise PredictError(f"detect_every must be an integer >= 1 (frames between face detections), not "
                           f"{detect_every!r}")
    is_video = src.is_file() and src.suffix.lower() not in IMAGE_EXTENSIONS
    fps_src, total = np.nan, None
    if is_video:
        try:
            info = video_info(src)
            fps_src, total = (info.fps if info.fps > 0 else np.nan), (info.n_frames or None)
        except (OSError, ValueError, RuntimeError):
            pass  # iter_frames says why it cannot be decoded
    try:
        _, step = frame_sampling(src, every=every, fps=fps, video=is_video)  # checked here, before any work
    except ValueError as exc:
        raise PredictError(str(exc)) from None
    if total is not None and step > 1:
        total = int(np.ceil(total / step))
    cols = au_columns(predictor.aus) + [f"AU{au:02d}_r" for au in predictor.reg_aus]
    bar = tqdm(total=total, desc=f"predict {src.name}", unit="frame", disable=not progress or on_frame is not None,
               mininterval=1.0)
    reader = predictor.read_frames(src, largest_only=largest_only, detect_every=detect_every, video=is_video,
                                   ahead=chunk_size, on_frame=on_frame or (lambda: bar.update(1)), every=every,
                                   fps=fps, slot=slot)
    stream = next(_STREAMS)
    try:
        yield from _tables(src, is_video, fps_src, reader, chunk_size, predictor, cols, stream, on_faces)
    finally:
        predictor.forget(stream)
        bar.close()
    log.debug("%s: %d face detections", src, predictor.detections_of(slot))


def _tables(src: Path, is_video: bool, fps: float, reader: Iterator[FrameFaces], chunk_size: int,
            predictor: Predictor, cols: list[str], stream: int,
            on_faces: Callable[[FrameFaces], Any] | None) -> Iterator[pd.DataFrame]:
    """The rows of :func:`iter_predictions`, chunk by chunk."""
    settings = predictor.face
    for frames, outputs in _chunks(reader, chunk_size, predictor.inputs):
        rows: list[dict[str, Any]] = []
        per_track: dict[int, list[tuple[int, FoundFace, dict]]] = {}
        for fr in frames:
            if on_faces is not None:
                on_faces(fr)
            base = {"frame": fr.no, "timestamp": (fr.no - 1) / fps if is_video and np.isfinite(fps) else np.nan,
                    "file": src.name if is_video else fr.name}
            if not fr.faces:
                rows.append({**base, "face": pd.NA, "success": 0, "confidence": 0.0, "reason": fr.reason})
            for (fid, face), cut in zip(fr.faces, fr.crops, strict=True):
                per_track.setdefault(fid, []).append((len(rows), face, cut))
                rows.append({**base, "face": fid, "success": 1, "confidence": round(face.confidence, 4),
                             "reason": ""})
        values = {c: np.full(len(rows), np.nan) for c in cols}
        for fid, items in per_track.items():
            idx = np.array([i for i, _, _ in items])
            chunk = FaceChunk(np.stack([f.image for _, f, _ in items]), np.stack([f.boxes for _, f, _ in items]),
                              settings.crop_aspect, {k: np.stack([c[k] for _, _, c in items]) for k in items[0][2]})
            if fid in outputs:
                predictor.inputs.attach(chunk, outputs[fid])
            for au, (score, pred) in predictor.score_chunk(chunk, track=(stream, fid)).items():
                values[f"AU{au:02d}_p"][idx] = score
                values[f"AU{au:02d}_c"][idx] = pred
            for au, value in predictor.score_intensity(chunk, track=(stream, fid)).items():
                values[f"AU{au:02d}_r"][idx] = value
        table = pd.DataFrame(rows, columns=[*BASE_COLUMNS, "file"])
        table["face"] = table["face"].astype("Int64")
        table["success"] = table["success"].astype(np.int8)
        for c in cols:
            table[c] = pd.array(values[c], dtype="Int8") if c.endswith("_c") else values[c]
        yield table[[*BASE_COLUMNS, *cols, "file"]]


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
            regressor: str | None = "auto", detect_every: int = DETECT_EVERY,
            front_end: str = "auto", every: int = 1, fps: float | None = None) -> pd.DataFrame:
    """AU occurrence per face and frame of a video, an image or a folder of images (OpenFace-style DataFrame).

    ``model`` is a model id (``dlib_resnet-face-svm``) or an ensemble (``ens-paper3``); ``regressor`` an intensity
    regressor for the ``AUxx_r`` columns (``auto``: the best on validation when the run trained any; None: none);
    the trained files come from ``model_dir`` (``results/models/<split>``) or from ``results`` and ``split``.
    ``detect_every``: frames between face detections in a video (faces are followed from their landmarks in
    between; 1: every frame). ``front_end``: where faces are found (:data:`~au_transfer.predict.predictor.FRONT_ENDS`;
    ``auto``: a worker process on POSIX). ``every`` / ``fps``: frame sampling (:func:`iter_predictions`).
    """
    with Predictor(model, results=results, split=split, model_dir=model_dir, device=device, batch_size=batch_size,
                   aus=aus, detector=detector, regressor=regressor, front_end=front_end) as predictor:
        parts = list(iter_predictions(input_path, predictor, chunk_size=chunk_size, progress=progress,
                                      largest_only=largest_only, detect_every=detect_every, every=every, fps=fps))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*BASE_COLUMNS, *au_columns(predictor.aus), *[f"AU{a:02d}_r" for a in predictor.reg_aus],
                 "file"])


def predict_to_csv(input_path: str | os.PathLike[str], out_csv: str | os.PathLike[str], *, model: str,
                   model_dir: str | os.PathLike[str] | None = None, results: str | os.PathLike[str] | None = None,
                   split: str | None = None, device: str = "auto", batch_size: int = 32, chunk_size: int = 128,
                   aus: Sequence[int] | None = None, progress: bool = True, largest_only: bool = False,
                   detector: str | None = None, regressor: str | None = "auto",
                   detect_every: int = DETECT_EVERY, front_end: str = "auto", every: int = 1,
                   fps: float | None = None) -> dict[str, int]:
    """Stream the table into ``out_csv`` (written atomically; checked before any work); returns
    ``{frames, rows, faces}`` (decoded frames, rows written, rows with a face)."""
    check_output(out_csv)
    if not Path(input_path).exists():
        raise PredictError(f"input {input_path} does not exist")
    predictor = Predictor(model, results=results, split=split, model_dir=model_dir, device=device,
                          batch_size=batch_size, aus=aus, detector=detector, regressor=regressor, front_end=front_end)
    frames = rows = faces = 0
    with predictor, atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        for i, part in enumerate(iter_predictions(input_path, predictor, chunk_size=chunk_size, progress=progress,
                                                  largest_only=largest_only, detect_every=detect_every,
                                                  every=every, fps=fps)):
            part.to_csv(fh, header=i == 0, index=False, float_format="%.6g")
            frames += int(part["frame"].nunique())
            rows += len(part)
            faces += int(part["success"].sum())
    log.info("%s: %d frames, %d rows, %d with a face -> %s", input_path, frames, rows, faces, out_csv)
    return {"frames": frames, "rows": rows, "faces": faces}
