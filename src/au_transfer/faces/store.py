"""HDF5 stores of the faces stage: the landmark file and the aligned-face store (:class:`FaceStore`).

Landmark file ``results/landmarks/{subject}.h5`` and face store ``results/faces/{subject}.h5``: see
docs/DESIGN.md and docs/faces.md for their exact content. Both keep one row per decoded video frame; frames
without a usable face keep their row with ``valid = False`` and a ``reason`` code.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np

from .landmarks import REASON_NAMES, SOURCE_NAMES
from .regions import CROP_REGIONS, REGION_NAMES, cut_region

log = logging.getLogger(__name__)

ENCODINGS = ("raw", "png", "jpeg")


class StoreError(ValueError):
    """A landmark or face store is missing, incomplete or inconsistent; the message names the file."""


def encode_image(rgb: np.ndarray, encoding: str, jpeg_quality: int) -> np.ndarray | None:
    """The bytes (1-D uint8) the face store holds for an aligned RGB face: ``jpeg`` (``jpeg_quality``) or ``png``;
    None for ``raw`` (stored as the array itself). :func:`decode_image` reads them back."""
    if encoding == "raw":
        return None
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if encoding == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    elif encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        raise ValueError(f"faces.encoding must be one of {ENCODINGS}, got {encoding!r}")
    if not ok:
        raise StoreError(f"could not encode a face image as {encoding}")
    return buf.reshape(-1)


def decode_image(buf: np.ndarray, rgb: bool = True) -> np.ndarray | None:
    """An RGB image from the bytes of :func:`encode_image` (None when they do not decode); ``rgb=False``: the
    decoder's BGR, for a caller that swaps the channels later on fewer pixels."""
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or not rgb:
        return img
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------------------ landmarks
@dataclass
class LandmarkData:
    """Content of a landmark file (one row per decoded video frame)."""

    frames: np.ndarray            # (N,) int32, 1-based
    points: np.ndarray            # (N, 68, 2) float32, frame pixels, NaN where none
    source: np.ndarray            # (N,) uint8 codes of SOURCE_NAMES
    confidence: np.ndarray        # (N,) float32
    valid: np.ndarray             # (N,) bool
    reason: np.ndarray            # (N,) uint8 codes of REASON_NAMES
    fallback_reason: np.ndarray   # (N,) uint8: why the primary source was not used (0 = it was)
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


def write_landmarks(path: str | os.PathLike[str], data: LandmarkData) -> None:
    """Write a landmark file (caller provides an atomic temporary path)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=data.frames.astype(np.int32))
        f.create_dataset("points", data=data.points.astype(np.float32), compression="gzip", compression_opts=4,
                         shuffle=True)
        f.create_dataset("source", data=data.source.astype(np.uint8))
        f.create_dataset("confidence", data=data.confidence.astype(np.float32))
        f.create_dataset("valid", data=data.valid.astype(bool))
        f.create_dataset("reason", data=data.reason.astype(np.uint8))
        f.create_dataset("fallback_reason", data=data.fallback_reason.astype(np.uint8))
        f.attrs["source_names"] = json.dumps(list(SOURCE_NAMES))
        f.attrs["reason_names"] = json.dumps(list(REASON_NAMES))
        for k, v in data.attrs.items():
            f.attrs[k] = v


def read_landmarks(path: str | os.PathLike[str]) -> LandmarkData:
    """Read a landmark file written by :func:`write_landmarks`."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"landmark file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            return LandmarkData(
                frames=f["frames"][()], points=f["points"][()], source=f["source"][()],
                confidence=f["confidence"][()], valid=f["valid"][()].astype(bool), reason=f["reason"][()],
                fallback_reason=f["fallback_reason"][()] if "fallback_reason" in f else np.zeros(len(f["frames"]),
                                                                                                np.uint8),
                attrs=dict(f.attrs))
    except (OSError, KeyError) as e:
        raise StoreError(f"landmark file {path} is unreadable or incomplete: {e}") from e


# ------------------------------------------------------------------------------------------------ face store
class FaceStoreWriter:
    """Write the aligned-face store frame by frame (use :func:`au_transfer.io.atomic_path` for the path).

    ``encoding``: ``raw`` (uint8 array, chunked one frame per chunk, ``compression`` gzip/lzf/none, lossless),
    ``png`` (lossless, encoded per frame) or ``jpeg`` (lossy, ``jpeg_quality``).
    """

    def __init__(self, path: str | os.PathLike[str], n: int, size: int, *, subject: str, encoding: str = "raw",
                 compression: str = "gzip", compression_level: int = 4, jpeg_quality: int = 95,
                 attrs: dict | None = None) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"faces.encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.f = h5py.File(path, "w")
        self.n, self.size, self.encoding = n, size, encoding
        self.jpeg_quality = int(jpeg_quality)
        f = self.f
        if encoding == "raw":
            comp = {"gzip": dict(compression="gzip", compression_opts=int(compression_level)),
                    "lzf": dict(compression="lzf"), "none": {}}
            if compression not in comp:
                raise ValueError(f"faces.compression must be gzip, lzf or none, got {compression!r}")
            self.images = f.create_dataset("images", (n, size, size, 3), np.uint8,
                                           chunks=(1, size, size, 3) if n else None, **comp[compression])
        else:
            self.images = f.create_dataset("images", (n,), h5py.vlen_dtype(np.uint8))
        self.landmarks = f.create_dataset("landmarks", (n, 68, 2), np.float32, fillvalue=np.nan)
        self.boxes = f.create_dataset("boxes", (n, len(REGION_NAMES), 4), np.float32, fillvalue=np.nan)
        self.transform = f.create_dataset("transform", (n, 2, 3), np.float32, fillvalue=np.nan)
        self.valid = np.zeros(n, bool)
        self.reason = np.zeros(n, np.uint8)
        self.frames = np.zeros(n, np.int32)
        f.attrs.update({"size": int(size), "subject": subject, "encoding": encoding,
                        "compression": compression if encoding == "raw" else encoding,
                        "region_names": json.dumps(list(REGION_NAMES)), "reason_names": json.dumps(list(REASON_NAMES)),
                        "source_names": json.dumps(list(SOURCE_NAMES))})
        for k, v in (attrs or {}).items():
            f.attrs[k] = v

    def put(self, i: int, frame: int, image: np.ndarray | None, landmarks: np.ndarray | None,
            boxes: np.ndarray | None, transform: np.ndarray | None, valid: bool, reason: int, *,
            encoded: np.ndarray | None = None) -> None:
        """Store row ``i`` (an invalid row keeps a black image and NaN geometry).

        ``encoded``: the image's bytes from :func:`encode_image` with this store's encoding, when the caller has
        them already (:class:`au_transfer.faces.pipeline.FaceFrame`); else ``image`` is encoded here.
        """
        self.frames[i] = frame
        self.valid[i] = valid
        self.reason[i] = reason
        if image is None:
            image = np.zeros((self.size, self.size, 3), np.uint8)
        if self.encoding == "raw":
            self.images[i] = image
        else:
            self.images[i] = encoded if encoded is not None else encode_image(image, self.encoding, self.jpeg_quality)
        if landmarks is not None:
            self.landmarks[i] = landmarks
        if boxes is not None:
            self.boxes[i] = boxes
        if transform is not None:
            self.transform[i] = transform

    def close(self, extra_attrs: dict | None = None) -> None:
        f = self.f
        f.create_dataset("frames", data=self.frames)
        f.create_dataset("valid", data=self.valid)
        f.create_dataset("reason", data=self.reason)
        f.attrs["n_frames"] = int(self.n)
        f.attrs["n_valid"] = int(self.valid.sum())
        for k, v in (extra_attrs or {}).items():
            f.attrs[k] = v
        f.close()

    def __enter__(self) -> FaceStoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self.f.id.valid:
            if exc[0] is None:
                self.close()
            else:
                self.f.close()


def _as_index(idx, n: int, path: Path) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(idx))
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"{path}: boolean index of length {len(arr)} for {n} frames")
        arr = np.flatnonzero(arr)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise IndexError(f"{path}: frame indices must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64)
    arr = np.where(arr < 0, arr + n, arr)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise IndexError(f"{path}: row index out of range 0..{n - 1}: {arr[(arr < 0) | (arr >= n)][:5].tolist()}")
    return arr


def _read_rows(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """The encoded images (variable-length bytes) of increasing unique ``rows``, in one HDF5 read (one read per
    row costs ~60 us, 10x the bytes' own share): the rows' span when they are nearly contiguous (a batch of valid
    frames), else the rows themselves."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if hi - lo <= 2 * len(rows):
        return ds[lo:hi][rows - lo]
    return ds[rows]


class FaceStore:
    """Read-only access to an aligned-face store, for the feature stage and for torch ``DataLoader`` workers.

    Small arrays (``frames``, ``valid``, ``reason``, ``landmarks``, ``boxes``) are read at construction; images are
    read on demand. ``aspect`` (``pad`` or ``stretch``, see :meth:`crops`) defaults to the store's ``crop_aspect``
    attribute (config ``faces.crop_aspect``). The HDF5 file is opened lazily and re-opened in every new process (the object pickles without
    its file handle, so it can be handed to ``DataLoader(num_workers>0)``); reads from threads are serialised
    by a lock. Indices are row positions (0..N-1), not frame numbers: use :meth:`rows_of` to convert.
    """

    def __init__(self, path: str | os.PathLike[str], aspect: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"face store {self.path} does not exist")
        try:
            with h5py.File(self.path, "r") as f:
                self.frames: np.ndarray = f["frames"][()]
                self.valid: np.ndarray = f["valid"][()].astype(bool)
                self.reason: np.ndarray = f["reason"][()]
                self.landmarks: np.ndarray = f["landmarks"][()]
                self.boxes: np.ndarray = f["boxes"][()]
                self.size: int = int(f.attrs["size"])
                self.subject: str = str(f.attrs["subject"])
                self.encoding: str = str(f.attrs.get("encoding", "raw"))
                self.attrs: dict = dict(f.attrs)
                n_img = len(f["images"])
        except (OSError, KeyError) as e:
            raise StoreError(f"face store {self.path} is unreadable or incomplete: {e}") from e
        if n_img != len(self.frames):
            raise StoreError(f"face store {self.path}: {n_img} images for {len(self.frames)} frames")
        # how region boxes become squares: the argument, else what the faces stage recorded (faces.crop_aspect)
        self.aspect: str = aspect or str(self.attrs.get("crop_aspect", "pad"))
        if self.aspect not in ("pad", "stretch"):
            raise ValueError(f"aspect must be 'pad' or 'stretch', got {self.aspect!r}")
        self.reason_names: list[str] = json.loads(self.attrs.get("reason_names", "[]"))
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    # -- pickling for DataLoader workers: never send the open file
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __enter__(self) -> FaceStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return f"FaceStore({str(self.path)!r}, subject={self.subject}, n={len(self)}, size={self.size})"

    def rows_of(self, frames: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row indices of 1-based frame numbers (KeyError naming the file for a frame not in the store)."""
        lookup = {int(fr): i for i, fr in enumerate(self.frames)}
        try:
            return np.array([lookup[int(fr)] for fr in np.atleast_1d(frames)], np.int64)
        except KeyError as e:
            raise KeyError(f"face store {self.path} (subject {self.subject}) has no frame {e.args[0]}") from None

    def images(self, idx) -> np.ndarray:
        """Aligned faces of rows ``idx`` (int, sequence, slice-free array or bool mask): (B, S, S, 3) uint8 RGB."""
        rows = _as_index(idx, len(self), self.path)
        out = np.empty((len(rows), self.size, self.size, 3), np.uint8)
        if not len(rows):
            return out
        if self.encoding != "raw":
            for j, img in enumerate(self._decoded(rows)):
                out[j] = img
            return out
        uniq, inv = np.unique(rows, return_inverse=True)
        with self._lock:
            ds = self._file()["images"]
            if len(uniq) > 1 and uniq[-1] - uniq[0] + 1 == len(uniq):
                block = ds[int(uniq[0]):int(uniq[-1]) + 1]   # contiguous: one hyperslab read
            else:
                block = np.empty((len(uniq), self.size, self.size, 3), np.uint8)
                for j, r in enumerate(uniq):
                    ds.read_direct(block, np.s_[int(r)], np.s_[j])
        out[:] = block[inv]
        return out

    def _decoded(self, rows: np.ndarray, rgb: bool = True) -> Iterator[np.ndarray]:
        """The images of (non-empty) ``rows`` of an encoded store, in order: the rows' bytes in one read
        (:func:`_read_rows`), then decoded one at a time, so a caller can use each before the next is decoded
        (``rgb=False``: in the decoder's BGR order)."""
        uniq, inv = np.unique(rows, return_inverse=True)
        with self._lock:
            bufs = _read_rows(self._file()["images"], uniq)
        for j, r in enumerate(inv):
            img = decode_image(bufs[r], rgb=rgb)
            if img is None:
                raise StoreError(f"face store {self.path}: row {rows[j]} (frame {self.frames[rows[j]]}) does not "
                                 "decode")
            yield img

    def region_boxes(self, idx, region: str) -> np.ndarray:
        """Boxes (B, 4) of one region in aligned pixels (the whole crop for ``face``)."""
        rows = _as_index(idx, len(self), self.path)
        if region == "face":
            return np.tile(np.array([0, 0, self.size, self.size], np.float32), (len(rows), 1))
        if region not in REGION_NAMES:
            raise ValueError(f"unknown region {region!r}; expected one of {CROP_REGIONS}")
        return self.boxes[rows, REGION_NAMES.index(region)]

    def crops(self, idx, region: str, out_size: int) -> np.ndarray:
        """Region crops of rows ``idx``: (B, out_size, out_size, 3) uint8 RGB.

        ``face`` is the whole aligned crop resized; ``upper``/``middle``/``lower`` are cut with their landmark
        boxes and letterboxed onto a black square (``aspect="pad"``) or stretched (``aspect="stretch"``). Rows
        without a face (``valid`` False) give black images.
        """
        if region not in CROP_REGIONS:
            raise ValueError(f"unknown region {region!r}; expected one of {CROP_REGIONS}")
        rows = _as_index(idx, len(self), self.path)
        boxes = None if region == "face" else self.region_boxes(rows, region)
        out = np.empty((len(rows), out_size, out_size, 3), np.uint8)
        if self.encoding == "raw" or not len(rows):
            for j, img in enumerate(self.images(rows)):
                cut_region(img, None if boxes is None else boxes[j], out_size, self.aspect, out=out[j])
            return out
        # encoded: each frame decoded and cut straight into ``out`` (no batch of decoded faces in between), in the
        # decoder's BGR order, and the channels swapped once on the crops (cutting, padding and resizing treat the
        # channels alike, so the crops are those of the RGB faces; a 48-px crop has 11x fewer pixels to swap)
        for j, img in enumerate(self._decoded(rows, rgb=False)):
            cut_region(img, None if boxes is None else boxes[j], out_size, self.aspect, out=out[j])
        flat = out.reshape(len(rows) * out_size, out_size, 3)
        return cv2.cvtColor(flat, cv2.COLOR_BGR2RGB).reshape(out.shape)
