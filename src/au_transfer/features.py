"""The feature store: batched CNN feature extraction from the face store, and its HDF5 files.

One file per backbone, region and subject (``results/features/{backbone}/{region}/{subject}.h5``):

* ``features`` (N, D) float16: the backbone's feature layer for every frame of the face store, in its order;
* ``frames`` (N,) int32: 1-based video frame numbers; ``valid`` (N,) bool: the face store's mask;
* attributes ``backbone``, ``layer``, ``weights``, ``weights_sha256``, ``region``, ``input_size``, ``subject``,
  ``dim`` and more (normalisation, mean image, device, software versions).

Invalid frames keep their rows so that rows line up with the face store and the labels; their features are NaN
(never computed), so an accidental use of an invalid row fails loudly instead of passing as a real zero vector.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .backbones import Backbone, BackboneSpec, create_backbone, preprocess, preprocess_numpy
from .device import amp_dtype, resolve_device
from .feature_store import FeatureError, read_features  # noqa: F401  (re-exported)
from .io import atomic_path, iter_ahead

log = logging.getLogger(__name__)

CROP_REGIONS = ("face", "upper", "middle", "lower")
#: Opens a face store by path; the default is :class:`au_transfer.faces.store.FaceStore`.
StoreOpener = Callable[[str], Any]


def open_face_store(path: str | os.PathLike[str]) -> Any:
    """Open a face store (``results/faces/{subject}.h5``) read-only."""
    from .faces.store import FaceStore

    return FaceStore(str(path))


def resolve_num_workers(num_workers: int | str, device: torch.device, threads: int | None = None) -> int:
    """``auto`` -> 0 on CPU, ``threads - 1`` (at least 2) on CUDA; an int is taken as it is."""
    if num_workers == "auto":
        return 0 if device.type != "cuda" else max(2, int(threads or os.cpu_count() or 2) - 1)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise FeatureError(f"features.num_workers must be 'auto' or an integer >= 0, not {num_workers!r}")
    return num_workers


# ----------------------------------------------------------------------------------------------- data path
class _CropBatches(Dataset):
    """Batches of face crops read from one face store; each item is ``(batch number, tensor)``.

    The store is opened lazily in each worker process (HDF5 handles do not survive fork), one whole batch is read
    per call (no per-frame HDF5 reads) and the crop is resized to the network's input in the worker. With
    ``spec`` the worker also normalises (CPU extraction: the main process only runs the network); without it the
    batch stays uint8 (CUDA extraction: 4x less to copy to the GPU, which normalises).
    """

    def __init__(self, store_path: str, batches: Sequence[np.ndarray], region: str, size: int,
                 opener: StoreOpener, spec: BackboneSpec | None = None, mean_image: np.ndarray | None = None) -> None:
        self.store_path, self.batches, self.region, self.size, self.opener = store_path, batches, region, size, opener
        self.spec, self.mean_image = spec, mean_image
        self._store: Any = None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        if self._store is None:
            self._store = self.opener(self.store_path)
        crops = self._store.crops(self.batches[i], self.region, self.size)
        crops = np.ascontiguousarray(crops)
        if crops.dtype != np.uint8 or crops.shape != (len(self.batches[i]), self.size, self.size, 3):
            raise FeatureError(f"{self.store_path}: crops({self.region!r}) returned {crops.dtype} {crops.shape}, "
                               f"expected uint8 ({len(self.batches[i])}, {self.size}, {self.size}, 3)")
        if self.spec is not None:  # NumPy, one thread, GIL released: bit for bit preprocess(spec, crops, "cpu")
            return i, preprocess_numpy(self.spec, crops, mean_image=self.mean_image)
        return i, torch.from_numpy(crops)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(1)


def _read_ahead(ds: _CropBatches, depth: int, pin_memory: bool) -> Iterator[tuple[int, torch.Tensor]]:
    """``ds``'s items in order, read by one thread up to ``depth`` batches ahead (h5py, OpenCV's decode and resize
    and torch release the GIL, so reading overlaps with the network in the caller's thread; no copies between
    processes). An error of the thread is raised here; leaving the iteration early stops the thread."""

    def items() -> Iterator[tuple[int, torch.Tensor]]:
        for i in range(len(ds)):
            j, x = ds[i]
            yield j, (x.pin_memory() if pin_memory else x)

    return iter_ahead(items(), depth, name="au-transfer-read")


def iter_crop_batches(store_path: str, indices: np.ndarray, region: str, size: int, *, batch_size: int,
                      num_workers: int, opener: StoreOpener, pin_memory: bool = False, prefetch: int = 4,
                      spec: BackboneSpec | None = None, mean_image: np.ndarray | None = None,
                      mp_context: str | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(row indices, batch)`` for ``indices`` of a face store, in order, read by ``num_workers``.

    The batch is uint8 (B, S, S, 3), or with ``spec`` the network's normalised input (B, 3, S, S). With
    ``num_workers=0`` one thread of this process reads ``prefetch`` batches ahead (:func:`_read_ahead`);
    otherwise worker processes do. ``mp_context`` starts the workers another way than fork (e.g. ``spawn`` in a
    long-lived process whose threads make a forked child hang; a workflow job is a fresh process, where fork is
    safe and fastest).
    """
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    ds = _CropBatches(store_path, batches, region, size, opener, spec, mean_image)
    if num_workers == 0:
        for i, crops in _read_ahead(ds, prefetch, pin_memory):
            yield batches[int(i)], crops
        return
    loader = DataLoader(ds, batch_size=None, shuffle=False, num_workers=num_workers, pin_memory=pin_memory,
                        worker_init_fn=_worker_init, prefetch_factor=prefetch,
                        multiprocessing_context=mp_context)
    for i, crops in loader:
        yield batches[int(i)], crops


# ------------------------------------------------------------------------------------------------ extraction
#: Most batches in the network at once on a CPU: each one in flight holds its own activations (a VGG-16 batch of 64
#: at 224 px: ~2 GB), so the job's memory grows with this, not with its cores.
MAX_CPU_STREAMS = 4


def cpu_stream_split(threads: int) -> tuple[int, int]:
    """``(streams, threads per stream)`` of a CPU job with ``threads`` cores: as many batches side by side as cores,
    at most :data:`MAX_CPU_STREAMS`, the cores shared out between them (2 -> (2, 1), 8 -> (4, 2)); 1 core -> (1, 1)."""
    streams = max(1, min(int(threads), MAX_CPU_STREAMS))
    return streams, max(1, int(threads) // streams)


def _forward_in_order(batches: Iterator[tuple[np.ndarray, torch.Tensor]], forward: Callable[[torch.Tensor], torch.Tensor],
                      streams: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(rows, forward(batch))`` of every batch, in order. ``streams`` > 1: up to that many batches run at once, in
    a pool of threads (torch releases the GIL in its kernels), while this thread keeps them fed."""
    if streams <= 1:
        for idx, batch in batches:
            yield idx, forward(batch)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    with ThreadPoolExecutor(streams, thread_name_prefix="au-transfer-net") as pool:
        try:
            for idx, batch in batches:
                pending.append((idx, pool.submit(forward, batch)))
                if len(pending) > streams:
                    idx0, fut = pending.popleft()
                    yield idx0, fut.result()
            while pending:
                idx0, fut = pending.popleft()
                yield idx0, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def _store_meta(store_path: str, opener: StoreOpener) -> dict[str, Any]:
    store = opener(store_path)
    try:
        meta = {"frames": np.asarray(store.frames, dtype=np.int32), "valid": np.asarray(store.valid, dtype=bool),
                "subject": str(getattr(store, "subject", Path(store_path).stem)), "n": len(store)}
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    if len(meta["frames"]) != meta["n"] or len(meta["valid"]) != meta["n"]:
        raise FeatureError(f"{store_path}: frames ({len(meta['frames'])}), valid ({len(meta['valid'])}) and "
                           f"length ({meta['n']}) of the face store disagree")
    return meta


def extract_features(face_store: str | os.PathLike[str], out_path: str | os.PathLike[str],
                     backbone: Backbone | str, region: str, *, batch_size: int = 64, num_workers: int | str = "auto",
                     device: str = "auto", amp: str = "auto", weights: str = "pretrained", seed: int = 0,
                     key_map: Any = None, mean_image: str | os.PathLike[str] | None = None,
                     compression: str | None = "lzf", threads: int | None = None,
                     store_opener: StoreOpener | None = None, progress: bool = True,
                     mp_context: str | None = None, cpu_streams: bool = True) -> dict[str, Any]:
    """Extract one backbone's features of one region for every frame of one face store; write ``out_path``.

    ``backbone`` is a :class:`Backbone` or a registry name (built with ``weights``, ``seed``, ``key_map``).
    ``mean_image``: a ``.npy`` (S, S, 3) mean image on the 0-255 scale subtracted instead of the per-channel mean
    (VGG-Face, paper IV-A). ``num_workers="auto"``: 0 on CPU (reading, cropping and normalising in one thread of
    this process, a few batches ahead of the network: when the network already uses every allocated core, worker
    processes only add inter-process copies), ``threads - 1`` (at least
    2) on CUDA, where the cores are free for reading. ``cpu_streams`` (CPU, ``threads`` > 1, no workers): that
    many batches through the network at once (at most :data:`MAX_CPU_STREAMS`, the cores shared out between them:
    :func:`cpu_stream_split`), rather than each batch on every core (the same values; measured faster next to the
    reading thread, bench/features.py). Returns timing numbers (``frames``, ``seconds``, ``fps``).
    """
    t0 = time.perf_counter()
    if region not in CROP_REGIONS:
        raise FeatureError(f"region {region!r} has no crops; expected one of {CROP_REGIONS} (au_region models "
                           f"read the region of each AU)")
    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device, what="config key 'features.device'")
    opener = store_opener or open_face_store
    store_path = os.fspath(face_store)
    net = backbone if isinstance(backbone, Backbone) else create_backbone(backbone, weights, key_map=key_map, seed=seed)
    spec = net.spec
    meta = _store_meta(store_path, opener)
    subject, n = meta["subject"], meta["n"]
    mi = None
    mi_sha, mean_image_tag = "", os.fspath(mean_image) if mean_image is not None else ""
    if mean_image is not None:
        from .backbones.weights import file_sha256

        mi = np.load(mean_image).astype(np.float32)
        mi_sha = file_sha256(mean_image)
    gpu = dev.type == "cuda"
    net = net.to(dev).eval()
    if gpu:
        net = net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
    ac = amp_dtype(amp, dev, on_cpu=True, what="config key 'features.amp'")  # bf16/fp16 given: CPU autocast too
    valid_idx = np.flatnonzero(meta["valid"])
    num_workers = resolve_num_workers(num_workers, dev, threads)
    # Workers read, decode, crop and resize; uint8 batches cross to the main process (4x less shared memory than
    # float32: fewer page faults, measured cheaper than normalising in the workers) and are normalised there, on
    # the GPU when there is one (pinned, asynchronous copies). On CUDA the features stay on the device until the
    # end, so the host never waits for a batch.
    # Without workers on the CPU, the read-ahead thread also normalises (NumPy, bit for bit preprocess: no second
    # OpenMP team next to the network's, no copies between threads), so the network's threads only run the network.
    in_reader = num_workers == 0 and not gpu
    batches = iter_crop_batches(store_path, valid_idx, region, spec.input_size, batch_size=batch_size,
                                num_workers=num_workers, opener=opener, pin_memory=gpu, mp_context=mp_context,
                                spec=spec if in_reader else None, mean_image=mi if in_reader else None)
    mi_t = torch.as_tensor(mi, device=dev) if mi is not None else None
    feats = torch.empty((len(valid_idx), spec.feature_dim), dtype=torch.float16, device=dev)
    bar = tqdm(total=len(valid_idx), desc=f"{spec.name}/{region}/{subject}", unit="frame", disable=not progress,
               mininterval=2.0)
    done = underflow = 0

    def forward(batch: torch.Tensor) -> torch.Tensor:
        # inference mode and autocast are per thread: entered here, in whichever thread runs the batch
        with torch.inference_mode(), (torch.autocast(dev.type, dtype=ac) if ac else contextlib.nullcontext()):
            x = batch if in_reader else preprocess(spec, batch, dev, mean_image=mi_t, channels_last=gpu)
            return net.features(x)

    # On the CPU with several cores the batches run side by side (2 cores: one each, 1 intra-op thread) instead of
    # one batch at a time on every core: a network thread then never waits at a layer's end for a sibling that the
    # reading thread pushed off its core. Same values (each batch's forward pass is the same on 1 or n threads).
    streams, per_stream = cpu_stream_split(int(threads or 1)) if in_reader and cpu_streams else (1, 0)
    if streams > 1:
        torch.set_num_threads(per_stream)
    outputs = _forward_in_order(batches, forward, streams)
    try:
        for idx, f in outputs:
            if f.ndim != 2 or f.shape[1] != spec.feature_dim:
                raise FeatureError(f"{spec.name}: features of shape {tuple(f.shape)}, spec says dim {spec.feature_dim}")
            feats[done:done + len(idx)] = f
            underflow += int(((f != 0) & (f.abs() < 6e-8)).sum())  # would round to 0 in float16
            done += len(idx)
            bar.update(len(idx))
    finally:
        outputs.close()
        if streams > 1:
            torch.set_num_threads(int(threads))
    bar.close()
    if underflow > 0.01 * max(1, len(valid_idx) * spec.feature_dim):
        log.warning("%s %s %s: %d feature values are below float16's range and stored as 0 (weights %s); "
                    "check the weights and input scale", spec.name, region, subject, underflow, net.weights)
    out = np.full((n, spec.feature_dim), np.nan, dtype=np.float16)
    out[valid_idx] = feats.cpu().numpy()
    bad = ~np.isfinite(out[valid_idx]).all(axis=1)
    if bad.any():
        row = int(valid_idx[np.flatnonzero(bad)[0]])
        raise FeatureError(f"{store_path}: subject {subject}, frame {int(meta['frames'][row])}: {spec.name} features "
                           f"are not finite in float16 ({int(bad.sum())} frames); check the weights and input scale")
    attrs = {
        "backbone": spec.name, "family": spec.family, "layer": spec.layer, "weights": str(net.weights),
        "weights_sha256": str(net.weights_sha256 or ""),
        "weights_source": str(spec.extra.get("release", {}).get("source", "")),  # a converted release's file
        "weights_source_sha256": str(spec.extra.get("release", {}).get("source_sha256", "")),
        # the release's own mean image, subtracted when no training mean image is (part of the weights file)
        "release_mean_image_sha256": str(spec.extra.get("average_image_sha256", "")) if mean_image is None else "",
        "region": region, "input_size": int(spec.input_size),
        "subject": subject, "dim": int(spec.feature_dim), "mean": json.dumps(list(spec.mean)),
        "std": json.dumps(list(spec.std)), "mean_image": mean_image_tag, "mean_image_sha256": mi_sha, "invalid_rows": "nan", "face_store": store_path, "device": str(dev),
        "amp": str(ac).replace("torch.", "") if ac else "off", "num_workers": int(num_workers),
        "torch": torch.__version__,
        "n_frames": int(n), "n_valid": int(len(valid_idx)),
    }
    write_features(out_path, out, meta["frames"], meta["valid"], attrs, compression=compression)
    secs = time.perf_counter() - t0
    log.info("%s %s %s: %d frames (%d valid) in %.1fs -> %s", spec.name, region, subject, n, len(valid_idx), secs,
             out_path)
    return {"frames": int(len(valid_idx)), "seconds": secs, "fps": len(valid_idx) / secs if secs else float("nan")}


def write_features(path: str | os.PathLike[str], features: np.ndarray, frames: np.ndarray, valid: np.ndarray,
                   attrs: dict[str, Any], compression: str | None = "lzf") -> None:
    """Write a feature file atomically (layout in the module docstring)."""
    features = np.asarray(features, dtype=np.float16)
    n, d = features.shape
    comp = None if compression in (None, "none") else compression
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        chunks = (max(1, min(n, max(1, (1 << 20) // max(1, 2 * d)))), d) if n else None
        h5.create_dataset("features", data=features, chunks=chunks, compression=comp)
        h5.create_dataset("frames", data=np.asarray(frames, dtype=np.int32))
        h5.create_dataset("valid", data=np.asarray(valid, dtype=bool))
        for key, val in attrs.items():
            h5.attrs[key] = f"{val}" if isinstance(val, str) else val  # plain str (not TorchVersion / np.str_)


# ------------------------------------------------------------------------------------------------ mean image
def compute_mean_image(store_paths: Sequence[str | os.PathLike[str]], region: str, size: int, *,
                       batch_size: int = 256, num_workers: int = 0, store_opener: StoreOpener | None = None,
                       progress: bool = True) -> np.ndarray:
    """The mean (size, size, 3) float32 image (0-255 RGB) of one region's crops over the valid frames of
    ``store_paths`` (pass the training subjects only: the mean image is part of the fitted preprocessing)."""
    opener = store_opener or open_face_store
    total = np.zeros((size, size, 3), dtype=np.float64)
    count = 0
    for sp in tqdm(list(store_paths), desc=f"mean image {region}", disable=not progress):
        meta = _store_meta(os.fspath(sp), opener)
        idx = np.flatnonzero(meta["valid"])
        for _, crops in iter_crop_batches(os.fspath(sp), idx, region, size, batch_size=batch_size,
                                          num_workers=num_workers, opener=opener):
            total += crops.numpy().sum(axis=0, dtype=np.float64)
            count += len(crops)
    if count == 0:
        raise FeatureError(f"no valid frames in {[os.fspath(p) for p in store_paths]} to compute a mean image")
    return (total / count).astype(np.float32)
