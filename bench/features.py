"""Benchmark: the whole feature extraction job against the bare forward pass of the same backbone.

For each backbone, on the same machine, device and batch size:

* ``bare``: ``backbone.features`` on tensors that are already preprocessed and on the device (the ceiling);
* ``job``: :func:`au_transfer.features.extract_features` on a synthetic face store (read and decode the store,
  crop, resize, preprocess, forward, write the float16 HDF5 file), the network already built.

It prints frames per second of both and their ratio (target: job / bare >= 0.9), by wall clock and by CPU time
(process + DataLoader workers): on a busy shared machine the wall-clock numbers measure the neighbours, while the
CPU-time ratio is what the job reaches when every core is busy with the network (the worst case; idle cores let
the workers' reading and cropping overlap with the forward pass). ``read ms`` is the reading alone (the job's
reader without a network: HDF5 read, JPEG decode, crop and resize, normalisation) in CPU milliseconds per frame,
next to the bare forward's CPU milliseconds per frame (``fwd ms``): when every core runs the network, the job can
reach about fwd / (fwd + read) of the bare pass, so a network that costs little next to decoding (mtcnn_onet) is
bounded by the reading. Default backbones: the offline ones the configs extract (``dlib_resnet``, ``mtcnn_onet``,
``cnn_f`` with random weights) and ``resnet50`` (random weights) as a large network. Example::

    python bench/features.py                                   # the four default backbones, CPU
    python bench/features.py --device cuda --frames 2048 --batch-size 128 --num-workers 6
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from au_transfer.backbones import create_backbone, get_spec, preprocess  # noqa: E402
from au_transfer.device import amp_dtype, resolve_device  # noqa: E402
from au_transfer.faces.store import FaceStore, FaceStoreWriter  # noqa: E402
from au_transfer.features import extract_features, iter_crop_batches, open_face_store  # noqa: E402


def make_store(path: Path, n: int, size: int, encoding: str, invalid_every: int = 50) -> None:
    """A face store like the faces stage writes (default encoding and size), with a few invalid frames."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, size, size * 0.45], [0, size * 0.3, size, size * 0.7], [0, size * 0.55, size, size]],
                     np.float32)
    with FaceStoreWriter(path, n, size, subject="SN001", encoding=encoding) as w:
        for i in range(n):
            ok = i % invalid_every != 7
            img = np.roll(base[i % 8], i, axis=1) if ok else None
            w.put(i, i + 1, img, None, boxes if ok else None, None, ok, 0 if ok else 1)


def bare_forward(net, store_path: Path, n: int, batch_size: int, device: torch.device, amp: str,
                 reps: int) -> tuple[float, float]:
    """Frames per second (wall, CPU time) of the forward pass alone, on preprocessed tensors on the device."""
    spec = net.spec
    with FaceStore(store_path) as st:
        idx = np.flatnonzero(st.valid)[:n]
        crops = st.crops(idx, "face", spec.input_size)
    cl = device.type == "cuda"
    x_all = preprocess(spec, crops, device, channels_last=cl)
    batches = list(torch.split(x_all, batch_size))
    ac = amp_dtype(amp, device)
    with torch.inference_mode(), (torch.autocast(device.type, dtype=ac) if ac else contextlib.nullcontext()):
        net.features(batches[0])  # warm-up (cudnn autotuning, allocator)
        sync(device)
        best, best_cpu = float("inf"), float("inf")
        for _ in range(reps):
            t0, c0 = time.perf_counter(), cpu_seconds()
            for x in batches:
                f = net.features(x)
                f.to(torch.float16).cpu()  # the job also brings the features back; count it on both sides
            sync(device)
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, cpu_seconds() - c0)
    return len(idx) / best, len(idx) / best_cpu


def read_only(spec, store_path: Path, batch_size: int, reps: int) -> float:
    """CPU seconds per frame of the job's reading alone (read-ahead thread, normalised as on the CPU)."""
    with FaceStore(store_path) as st:
        idx = np.flatnonzero(st.valid)
    best = float("inf")
    for _ in range(reps):
        c0 = cpu_seconds()
        for _ in iter_crop_batches(str(store_path), idx, "face", spec.input_size, batch_size=batch_size,
                                   num_workers=0, opener=open_face_store, spec=spec):
            pass
        best = min(best, cpu_seconds() - c0)
    return best / len(idx)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the DataLoader workers)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def job(net, store_path: Path, out: Path, batch_size: int, num_workers: int, device: str, amp: str, reps: int,
        threads: int) -> tuple[float, float]:
    """Frames per second (wall, CPU time) of the whole extraction job (best of ``reps``)."""
    best, best_cpu = 0.0, 0.0
    for _ in range(reps):
        c0 = cpu_seconds()
        info = extract_features(store_path, out, net, "face", batch_size=batch_size, num_workers=num_workers,
                                device=device, amp=amp, threads=threads, progress=False)
        best, best_cpu = max(best, info["fps"]), max(best_cpu, info["frames"] / (cpu_seconds() - c0))
    return best, best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=["dlib_resnet", "mtcnn_onet", "cnn_f", "resnet50"])
    ap.add_argument("--frames", type=int, default=None, help="frames in the store (default 192 CPU, 2048 CUDA)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 128 on CUDA")
    ap.add_argument("--num-workers", type=int, default=None, help="default 0 on CPU (as features.num_workers: auto), 6 on CUDA")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--size", type=int, default=160, help="face store crop size (faces.size)")
    ap.add_argument("--encoding", default="jpeg", help="face store encoding (faces.encoding)")
    ap.add_argument("--reps", type=int, default=4, help="alternated runs of each, best of each (default 4)")
    args = ap.parse_args()

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    frames = args.frames or (2048 if gpu else 192)
    batch_size = args.batch_size or (128 if gpu else 32)
    workers = args.num_workers if args.num_workers is not None else (6 if gpu else 0)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if gpu:
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({threads} threads)"
    print(f"device: {name}; frames: {frames}; batch size: {batch_size}; workers: {workers}; "
          f"store: {args.size}px {args.encoding}; amp: {amp_dtype(args.amp, device)}")
    print(f"{'backbone':<14}{'input':>6}{'dim':>6}{'bare fps':>10}{'job fps':>9}{'job/bare':>9}"
          f"{'bare fps/cpu-s':>16}{'job fps/cpu-s':>15}{'job/bare':>9}{'fwd ms':>8}{'read ms':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "SN001.h5"
        make_store(store, frames, args.size, args.encoding)
        for b in args.backbones:
            spec = get_spec(b)
            weights = "pretrained" if spec.pretrained == "package" else "random"  # weights do not change speed
            net = create_backbone(b, weights).to(device)
            if gpu:
                net = net.to(memory_format=torch.channels_last)
            # alternated, best of each: a neighbour's load changes both alike
            bare = bare_c = full = full_c = 0.0
            for _ in range(args.reps):
                bw, bc = bare_forward(net, store, frames, batch_size, device, args.amp, 1)
                jw, jc = job(net, store, Path(tmp) / f"{b}.h5", batch_size, workers, str(device), args.amp, 1,
                             threads)
                bare, bare_c, full, full_c = max(bare, bw), max(bare_c, bc), max(full, jw), max(full_c, jc)
            read = read_only(spec, store, batch_size, args.reps) if not gpu else float("nan")
            print(f"{b:<14}{spec.input_size:>6}{spec.feature_dim:>6}{bare:>10.1f}{full:>9.1f}{full / bare:>9.2f}"
                  f"{bare_c:>16.1f}{full_c:>15.1f}{full_c / bare_c:>9.2f}{1000 / bare_c:>8.2f}{1000 * read:>8.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
