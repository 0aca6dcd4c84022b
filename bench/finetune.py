"""Benchmark: fine-tuning throughput, the whole training epoch against the bare training step.

For one backbone, on one device and batch size:

* ``bare step``: forward + backward + optimiser step of :class:`au_transfer.finetune.FinetuneNet` on tensors that
  are already preprocessed and on the device (the ceiling);
* ``epoch``: :func:`au_transfer.finetune.train` for one epoch on a synthetic face store (read the store, crop,
  resize, preprocess, augment, forward, backward, step, validate, write the checkpoint);
* ``predict``: :func:`au_transfer.finetune.predict_proba` over the same frames.

It prints frames per second of each (wall clock and process CPU time). Example::

    python bench/finetune.py                                     # dlib_resnet on CPU, 128 frames
    python bench/finetune.py --device cuda --frames 4096 --batch-size 128 --num-workers 6 --amp bf16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from au_transfer import finetune as ft  # noqa: E402
from au_transfer.backbones import create_backbone, preprocess  # noqa: E402
from au_transfer.faces.store import FaceStoreWriter  # noqa: E402


def make_store(path: Path, n: int, size: int = 160) -> None:
    rng = np.random.default_rng(0)
    boxes = np.array([[0, 0, size, size / 2], [0, size / 4, size, size / 2], [0, size / 2, size, size]], np.float32)
    with FaceStoreWriter(path, n, size, subject="SN001") as w:
        for k in range(n):
            w.put(k, k + 1, rng.integers(0, 255, (size, size, 3), dtype=np.uint8), np.zeros((68, 2), np.float32),
                  boxes, np.zeros((2, 3), np.float32), True, 0)


def timed(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="dlib_resnet")
    ap.add_argument("--weights", default="pretrained")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--amp", default="none", choices=list(ft.AMP))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = ft.resolve_device(args.device)
    cfg = ft.FinetuneConfig(epochs=1, batch_size=args.batch_size, num_workers=args.num_workers, amp=args.amp,
                            optimizer="sgd", lr=1e-3)
    net = ft.FinetuneNet(create_backbone(args.backbone, args.weights), n_aus=1)
    ft.reinit_layers(net, "all", 0)
    net.to(dev)
    size = net.backbone.spec.input_size
    print(f"backbone {args.backbone} ({size}x{size}), device {dev}, batch {args.batch_size}, amp {args.amp}, "
          f"threads {args.threads}, workers {args.num_workers}, frames {args.frames}")

    x = preprocess(net.backbone.spec, np.zeros((args.batch_size, size, size, 3), np.uint8), dev)
    y = torch.zeros(args.batch_size, dtype=torch.long, device=dev)
    opt = ft._make_optimizer(net, cfg)
    dtype = ft._amp_dtype(args.amp, dev)
    n_steps = max(1, args.frames // args.batch_size)

    def steps() -> None:
        net.train()
        for _ in range(n_steps):
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                loss = torch.nn.functional.cross_entropy(net(x).float()[:, 0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    steps()  # warm-up
    wall, cpu = timed(steps)
    n = n_steps * args.batch_size
    print(f"bare step   {n / wall:8.1f} frames/s wall   {n / max(cpu, 1e-9):8.1f} frames/s per CPU-second")

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "SN001.h5"
        make_store(store, args.frames)
        table = pd.DataFrame({"subject": "SN001", "row": np.arange(args.frames), "frame": np.arange(1, args.frames + 1),
                              "AU1": np.arange(args.frames) % 2})
        ds = ft.FaceCropDataset(table, {"SN001": store}, "face", size, [1])
        wall, cpu = timed(lambda: ft.train(net, ds, None, cfg, device=dev, ckpt_path=Path(tmp) / "ckpt"))
        print(f"epoch       {args.frames / wall:8.1f} frames/s wall   {args.frames / max(cpu, 1e-9):8.1f} frames/s per "
              "CPU-second (incl. reading, cropping, augmenting, checkpoint)")
        wall, cpu = timed(lambda: ft.predict_proba(net, ds, batch_size=args.batch_size, device=dev, amp=args.amp,
                                                   num_workers=args.num_workers))
        print(f"predict     {args.frames / wall:8.1f} frames/s wall   {args.frames / max(cpu, 1e-9):8.1f} frames/s per "
              "CPU-second")
        ds.close()


if __name__ == "__main__":
    main()
