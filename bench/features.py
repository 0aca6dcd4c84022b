"""Benchmark: the whole feature extraction job against the bare forward pass of the same backbone.

For each backbone, on the same machine, device and batch size:

* ``bare``: ``backbone.features`` on tensors that are already preprocessed and on the device (the ceiling): on
  a CPU with several threads the better of one batch at a time on every core (``bare 1xN``) and N batches side by
  side, one core each (``bare Nx1``);
* ``job``: :func:`au_transfer.features.extract_features` on a face store of real faces (the demo corpus's two
  public-domain photos, 8 poses; read and decode the store, crop, resize, preprocess, forward, write the float16
  HDF5 file), the network already built, as the workflow runs it; beside it (``job 1xN``) the job with one batch at
  a time on every core (``cpu_streams=False``, the way before batches ran side by side).

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from au_transfer.backbones import create_backbone, get_spec, preprocess  # noqa: E402
from au_transfer.device import amp_dtype, resolve_device  # noqa: E402
from au_transfer.faces.store import FaceStore, FaceStoreWriter  # noqa: E402
from au_transfer.features import extract_features, iter_crop_batches, open_face_store  # noqa: E402


def face_images(size: int, n: int = 8) -> np.ndarray:
    """``n`` (size, size, 3) uint8 faces: the demo corpus's two public-domain source photos, each cut around its
    landmarks and turned / scaled a little per image. Real faces, not noise: a JPEG of noise is several times
    larger and slower to decode than a face's (the store's bytes per frame and decoding time are the reading's
    cost)."""
    import cv2

    from au_transfer.datasets.demo.sources import SOURCES, source_face

    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img, pts = source_face(SOURCES[i % len(SOURCES)])
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        side = 1.3 * max(x1 - x0, y1 - y0)
        angle, scale = 4.0 * ((i // len(SOURCES)) % 3 - 1), size / side * (1 + 0.03 * (i // len(SOURCES)))
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)  # keeps the centre
        m[:, 2] += size / 2 - np.asarray(centre)  # ... and moves it to the middle of the crop
        out[i] = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def make_store(path: Path, n: int, size: int, encoding: str, invalid_every: int = 50,
               compression: str = "gzip") -> None:
    """A face store like the faces stage writes (default encoding and size) of real faces (:func:`face_images`),
    with a few invalid frames."""
    base = face_images(size)
    boxes = np.array([[0, 0, size, size * 0.45], [0, size * 0.3, size, size * 0.7], [0, size * 0.55, size, size]],
                     np.float32)
    with FaceStoreWriter(path, n, size, subject="SN001", encoding=encoding, compression=compression) as w:
        for i in range(n):
            ok = i % invalid_every != 7
            img = np.roll(base[i % 8], i % 5 - 2, axis=1) if ok else None  # no two frames alike
            w.put(i, i + 1, img, None, boxes if ok else None, None, ok, 0 if ok else 1)


def bare_forward(net, store_path: Path, n: int, batch_size: int, device: torch.device, amp: str,
                 reps: int, streams: int = 1) -> tuple[float, float]:
    """Frames per second (wall, CPU time) of the forward pass alone, on preprocessed tensors on the device.
    ``streams`` > 1 (CPU): that many batches at once, one thread each (the job's way on a CPU with several
    cores); else one batch at a time on every core."""
    spec = net.spec
    with FaceStore(store_path) as st:
        idx = np.flatnonzero(st.valid)[:n]
        crops = st.crops(idx, "face", spec.input_size)
    cl = device.type == "cuda"
    x_all = preprocess(spec, crops, device, channels_last=cl)
    batches = list(torch.split(x_all, batch_size))
    ac = amp_dtype(amp, device)
    threads = torch.get_num_threads()

    def run(xs) -> None:
        with torch.inference_mode(), (torch.autocast(device.type, dtype=ac) if ac else contextlib.nullcontext()):
            for x in xs:
                f = net.features(x)
                f.to(torch.float16).cpu()  # the job also brings the features back; count it on both sides

    run(batches[:1])  # warm-up (cudnn autotuning, allocator)
    sync(device)
    best, best_cpu = float("inf"), float("inf")
    if streams > 1:
        torch.set_num_threads(1)
    try:
        for _ in range(reps):
            t0, c0 = time.perf_counter(), cpu_seconds()
            if streams > 1:
                with ThreadPoolExecutor(streams) as pool:
                    list(pool.map(run, [batches[k::streams] for k in range(streams)]))
            else:
                run(batches)
            sync(device)
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, cpu_seconds() - c0)
    finally:
        torch.set_num_threads(threads)
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
        threads: int, cpu_streams: bool = True) -> tuple[float, float]:
    """Frames per second (wall, CPU time) of the whole extraction job (best of ``reps``)."""
    best, best_cpu = 0.0, 0.0
    for _ in range(reps):
        c0 = cpu_seconds()
        info = extract_features(store_path, out, net, "face", batch_size=batch_size, num_workers=num_workers,
                                device=device, amp=amp, threads=threads, progress=False, cpu_streams=cpu_streams)
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
    ap.add_argument("--compression", default="gzip", help="raw stores' HDF5 filter (faces.compression)")
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
          f"store: {args.size}px {args.encoding}{'/' + args.compression if args.encoding == 'raw' else ''}; amp: {amp_dtype(args.amp, device)}")
    streams = threads if not gpu and threads > 1 else 1
    print(f"{'backbone':<14}{'input':>6}{'dim':>6}{'bare fps':>10}{'job fps':>9}{'job/bare':>9}"
          f"{'bare fps/cpu-s':>16}{'job fps/cpu-s':>15}{'job/bare':>9}{'fwd ms':>8}{'read ms':>8}"
          + (f"{'bare 1x' + str(threads):>10}{'bare ' + str(streams) + 'x1':>10}{'job 1x' + str(threads):>10}"
             f"{'job/bare':>9}" if streams > 1 else ""))
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "SN001.h5"
        make_store(store, frames, args.size, args.encoding, compression=args.compression)
        for b in args.backbones:
            spec = get_spec(b)
            weights = "pretrained" if spec.pretrained == "package" else "random"  # weights do not change speed
            net = create_backbone(b, weights).to(device)
            if gpu:
                net = net.to(memory_format=torch.channels_last)
            # alternated, best of each: a neighbour's load changes both alike
            # bare: the better of one batch at a time on every core and (CPU, several cores) one batch per core;
            # job: as the workflow runs it (one batch per core on such a CPU) and, beside it, one batch at a time
            bare1 = bare1_c = bare_s = bare_s_c = full = full_c = full1 = 0.0
            for _ in range(args.reps):
                bw, bc = bare_forward(net, store, frames, batch_size, device, args.amp, 1)
                bare1, bare1_c = max(bare1, bw), max(bare1_c, bc)
                if streams > 1:
                    bw, bc = bare_forward(net, store, frames, batch_size, device, args.amp, 1, streams)
                    bare_s, bare_s_c = max(bare_s, bw), max(bare_s_c, bc)
                    jw, _ = job(net, store, Path(tmp) / f"{b}.h5", batch_size, workers, str(device), args.amp, 1,
                                threads, cpu_streams=False)
                    full1 = max(full1, jw)
                jw, jc = job(net, store, Path(tmp) / f"{b}.h5", batch_size, workers, str(device), args.amp, 1,
                             threads)
                full, full_c = max(full, jw), max(full_c, jc)
            bare, bare_c = max(bare1, bare_s), max(bare1_c, bare_s_c)
            read = read_only(spec, store, batch_size, args.reps) if not gpu else float("nan")
            print(f"{b:<14}{spec.input_size:>6}{spec.feature_dim:>6}{bare:>10.1f}{full:>9.1f}{full / bare:>9.2f}"
                  f"{bare_c:>16.1f}{full_c:>15.1f}{full_c / bare_c:>9.2f}{1000 / bare_c:>8.2f}{1000 * read:>8.2f}"
                  + (f"{bare1:>10.1f}{bare_s:>10.1f}{full1:>10.1f}{full1 / bare:>9.2f}" if streams > 1 else ""),
                  flush=True)


if __name__ == "__main__":
    main()
