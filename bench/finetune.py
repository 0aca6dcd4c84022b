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

``--figure RESULTS`` instead prints the demo's figure from a finished run (after the fine-tune targets, e.g.
``snakemake --cores 2 results/metrics/demo/dlib_resnet_ft-face-softmax.csv ... --resources gpu=1``): test mean F1
of every fine-tuned model beside the frozen-feature SVM of the same network and region and the always-present
baseline (computed from the model's own test labels), and the wall time of each fine-tuning job (first to last
line of its log under ``logs/finetune/``)::

    python bench/finetune.py --figure results --logs logs
"""

from __future__ import annotations

import argparse
import re
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
from au_transfer.evaluation import always_present, au_metrics  # noqa: E402
from au_transfer.faces.store import FaceStoreWriter  # noqa: E402
from au_transfer.layout import Layout  # noqa: E402

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ ")


def _mean_f1(path: str) -> float:
    m = pd.read_csv(path)
    return float(m.loc[m["au"].astype(str) == "mean", "f1"].iloc[0])


def _log_seconds(path: Path) -> float:
    stamps = [pd.Timestamp(m[1]) for line in path.read_text().splitlines() if (m := _STAMP.match(line))]
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else float("nan")


def figure(results: str, logs: str) -> None:
    """Mean F1 of each fine-tuned model vs its network's frozen-feature SVM and the always-present baseline, and
    the wall time of the fine-tuning jobs (from their logs)."""
    lay = Layout.of(results)
    found = sorted(Path(lay.root, "metrics").glob("*/*_ft-*-softmax.csv"))
    if not found:
        raise SystemExit(f"no fine-tuned model metrics under {lay.root}/metrics: run the fine-tune targets first")
    print(f"{'split':8} {'model':34} {'mean F1':>8} {'SVM':>8} {'always':>8}   (test, %)")
    for path in found:
        split, model = path.parent.name, path.stem
        backbone, region, _ = model.split("-")
        svm_model = f"{backbone.removesuffix('_ft')}-{region}-svm"
        svm = lay.metrics(split, svm_model)
        svm_f1 = f"{100 * _mean_f1(svm):8.1f}" if Path(svm).exists() else f"{'n/a':>8}"
        pred = pd.read_csv(lay.predictions(split, model))
        base = au_metrics(always_present(pred), "always_present", split)
        base_f1 = float(base.loc[base["au"] == "mean", "f1"].iloc[0])
        print(f"{split:8} {model:34} {100 * _mean_f1(str(path)):8.1f} {svm_f1} {100 * base_f1:8.1f}")
    jobs = sorted(Path(logs, "finetune").glob("*/*/multilabel-*.log")) + sorted(Path(logs, "finetune").glob("*/*/AU*.log"))
    total = 0.0
    for log in jobs:
        sec = _log_seconds(log)
        total += sec
        print(f"job {str(log.relative_to(logs)):60} {sec:7.0f} s wall")
    print(f"fine-tuning jobs: {len(jobs)}, {total:.0f} s wall in all (log timestamps; the machine's load counts)")


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
    ap.add_argument("--figure", metavar="RESULTS", help="print the demo figure from a finished run's results folder")
    ap.add_argument("--logs", default="logs", help="with --figure: the workflow's log folder")
    args = ap.parse_args()
    if args.figure:
        figure(args.figure, args.logs)
        return
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
