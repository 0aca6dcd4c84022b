"""Frame sources: decode a video in order (1-based frame numbers), or iterate images / image folders.

Decoding uses OpenCV (FFmpeg). Frames are returned as RGB ``uint8`` arrays of shape (H, W, 3).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".wmv", ".mpg", ".mpeg", ".m4v", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: names a folder of images may hold beside them that are videos (said so when they are skipped)
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".webm", ".wmv", ".mpg", ".mpeg", ".flv")


class VideoError(RuntimeError):
    """A video cannot be opened or decoding stopped early; the message names file, subject and frame."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (the frame count is a header value, not a decoded count)."""

    path: Path
    n_frames: int
    fps: float
    width: int
    height: int


def _open(path: Path, subject: str | None) -> cv2.VideoCapture:
    who = f" (subject {subject})" if subject else ""
    if not path.is_file():
        raise VideoError(f"video {path}{who} does not exist")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"video {path}{who} cannot be opened by OpenCV/FFmpeg (corrupt or unsupported file)")
    return cap


def image_files(folder: str | os.PathLike[str], subject: str | None = None) -> list[tuple[int, Path]]:
    """The images of a folder as ``(frame_number, path)`` in frame-number order: the number is parsed from the file
    name (the last run of digits of the stem, so ``7.jpg``, ``007.jpg`` and ``frame_0007.png`` are all frame 7;
    releases pad differently). A name without digits, or two files with the same number, is an error naming both."""
    from ..datasets.base import parse_frame_number

    folder = Path(folder)
    who = f" (subject {subject})" if subject else ""
    if not folder.is_dir():
        raise VideoError(f"image folder {folder}{who} does not exist")
    out: dict[int, Path] = {}
    for f in folder.iterdir():
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        n = parse_frame_number(f.name)
        if n is None:
            raise VideoError(f"image {f}{who}: no frame number in the file name")
        if n in out:
            raise VideoError(f"image folder {folder}{who}: frame {n} twice ({out[n].name} and {f.name})")
        out[n] = f
    if not out:
        raise VideoError(f"image folder {folder}{who} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return sorted(out.items())


def _folder_info(path: Path, subject: str | None) -> VideoInfo:
    files = image_files(path, subject)
    first = read_image(files[0][1])
    assert first is not None
    return VideoInfo(path, len(files), 0.0, int(first.shape[1]), int(first.shape[0]))


def video_info(path: str | os.PathLike[str], subject: str | None = None) -> VideoInfo:
    """Read a video's header: frame count (as stored in the container), fps and size. A folder of images (a
    recording of an image-sequence corpus) counts its images (:func:`image_files`), has fps 0 and the size of its
    first image."""
    path = Path(path)
    if path.is_dir():
        return _folder_info(path, subject)
    cap = _open(path, subject)
    try:
        return VideoInfo(path, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


def iter_video(path: str | os.PathLike[str], subject: str | None = None, *, expected: int | None = None,
               tolerance: int = 0, retrieve: Callable[[int], bool] | None = None, partial: bool = False,
               ) -> Iterator[tuple[int, np.ndarray | None]]:
    """Decode every frame of a video in order, yielding ``(frame_number, rgb)`` with 1-based frame numbers.

    With ``retrieve``, only frames for which ``retrieve(frame_number)`` is true are converted to RGB; the others
    are still decoded (so that counts and corruption are checked) but yielded as ``None`` (much faster).

    ``expected`` is the number of frames the caller needs (default: the container's frame count). When decoding
    stops more than ``tolerance`` frames before that, a :class:`VideoError` names the file, the subject, the
    frame where decoding stopped and the count expected; with ``partial`` it is one warning instead, after every
    decoded frame (only a video where nothing decodes stays an error). Extra frames beyond the header count are
    yielded too.

    A folder of images is decoded as a video whose frame ``i`` is its ``i``-th image in frame-number order
    (:func:`image_files`); an unreadable image is an error naming it (with ``partial``: one warning, and the frame
    is yielded as ``None``).
    """
    path = Path(path)
    if path.is_dir():
        yield from _iter_folder(path, subject, retrieve=retrieve, partial=partial)
        return
    cap = _open(path, subject)
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    want = header if expected is None else int(expected)
    n = 0
    try:
        while True:
            if not cap.grab():
                break
            n += 1
            if retrieve is not None and not retrieve(n):
                yield n, None
                continue
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                n -= 1
                break
            yield n, to_rgb(bgr)
    finally:
        cap.release()
    who = f" (subject {subject})" if subject else ""
    if n == 0:
        raise VideoError(f"video {path}{who}: no frame could be decoded (expected {want}); the file is corrupt "
                         "or empty")
    if n < want - tolerance:
        if partial:
            log.warning("video %s%s: decoding stopped after frame %d of the %d its header announces (truncated or "
                        "corrupt stream); the %d decoded frames are kept", path, who, n, header, n)
            return
        raise VideoError(f"video {path}{who}: decoding stopped after frame {n} of {want} expected "
                         f"(header says {header}); the file is truncated or corrupt")
    if n != header:
        log.warning("video %s%s: decoded %d frames, header says %d", path, who, n, header)


def _iter_folder(path: Path, subject: str | None, *, retrieve: Callable[[int], bool] | None, partial: bool,
                 ) -> Iterator[tuple[int, np.ndarray | None]]:
    for i, (_, f) in enumerate(image_files(path, subject), start=1):
        if retrieve is not None and not retrieve(i):
            yield i, None
            continue
        rgb = read_image(f, missing_ok=partial)
        yield i, rgb


def to_rgb(img: np.ndarray) -> np.ndarray:
    """An OpenCV image (BGR, BGRA, grayscale; 8 or 16 bits) as RGB uint8."""
    if img.dtype == np.uint16:
        img = (img / 257).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def truncated(path: str | os.PathLike[str]) -> str:
    """Why a JPEG or PNG file is incomplete ("" when it is whole): OpenCV decodes a truncated one without an error,
    its missing part grey, so that a cut-off photo would look like a frame without a face. Pillow's decoder,
    which needs every byte, says so."""
    if Path(path).suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return ""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001  (Pillow's errors for cut-off data vary: OSError, SyntaxError, ...)
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ""


def read_image(path: str | os.PathLike[str], *, missing_ok: bool = False, whole: bool = False) -> np.ndarray | None:
    """Read one image file as RGB uint8 (grayscale, RGBA and 16-bit images converted). An unreadable file is a
    clear error, or with ``missing_ok`` one warning and None. ``whole``: a truncated JPEG or PNG
    (:func:`truncated`) is unreadable too (the predictor's inputs)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        if missing_ok:
            log.warning("image %s cannot be read (corrupt or unsupported format): skipped", path)
            return None
        raise VideoError(f"image {path} cannot be read (missing, corrupt or unsupported format)")
    cut = truncated(path) if whole else ""
    if cut:
        if missing_ok:
            log.warning("image %s is truncated or damaged (%s): unreadable, its row says unreadable_frame", path, cut)
            return None
        raise VideoError(f"image {path} is truncated or damaged ({cut}): unreadable")
    return to_rgb(img)


def _skipped_note(folder: Path, used: list[Path]) -> None:
    """One warning naming what a folder of images holds besides its images (a video is an input of its own)."""
    keep = set(used)
    other = sorted(f for f in folder.iterdir() if f not in keep and not f.name.startswith("."))
    if not other:
        return
    def what(f: Path) -> str:
        if f.is_dir():
            return f"{f.name}/ (a folder: not searched)"
        if f.suffix.lower() in VIDEO_EXTENSIONS:
            return f"{f.name} (a video: give it as an input of its own)"
        return f.name
    log.warning("folder %s: %d file(s) skipped, not images: %s", folder, len(other), ", ".join(what(f) for f in other))


def _predictor_images(folder: Path) -> list[Path]:
    """Images of a folder for the predictor: in frame-number order when every name holds a distinct number
    (:func:`image_files`: ``2.jpg`` before ``10.jpg``), else in file-name order."""
    try:
        return [f for _, f in image_files(folder)]
    except VideoError:
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise VideoError(f"folder {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})") from None
        return files


def iter_frames(source: str | os.PathLike[str], *, tolerant: bool = False,
                keep: Callable[[int], bool] | None = None) -> Iterator[tuple[int, str, np.ndarray | None]]:
    """Iterate ``(frame_number, name, rgb)`` over a video file, one image file, or a folder of images.

    Frame numbers are 1-based. For a folder, images are taken in frame-number order (:func:`_predictor_images`)
    and ``name`` is the file name; for a video ``name`` is ``"{stem}:{frame}"``. ``tolerant`` (the predictor for new inputs) keeps what
    can be read: an unreadable image of a folder is yielded with ``rgb = None``, a video that stops decoding
    before its header's count yields its decoded frames and one warning; an input where nothing can be read stays
    an error. ``keep`` (frame sampling): only the frames ``n`` with ``keep(n)`` are yielded, keeping their numbers
    (a video's other frames are grabbed, not converted; a folder's other images are not read).
    """
    p = Path(source)
    if p.is_dir():
        files = _predictor_images(p)
        _skipped_note(p, files)
        for i, f in enumerate(files, start=1):
            if keep is None or keep(i):
                yield i, f.name, read_image(f, missing_ok=tolerant, whole=True)
    elif p.suffix.lower() in IMAGE_EXTENSIONS:
        yield 1, p.name, read_image(p, whole=True)
    elif p.is_file():
        for i, rgb in iter_video(p, partial=tolerant, retrieve=keep):
            if keep is None or keep(i):
                yield i, f"{p.stem}:{i}", rgb
    else:
        raise VideoError(f"input {p} is neither a video, an image nor a folder of images")
