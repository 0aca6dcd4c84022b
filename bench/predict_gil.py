"""How much the predictor's face front end slows its networks through the GIL (issue 15, docs/predict.md "Speed").

    python bench/predict_gil.py [--reps 5] [--batch-size 32] [--threads 1]

The predictor decodes frames and fits landmarks in a reader thread while the networks run in the main thread.
PyTorch releases the GIL inside each operation but needs it between them (a dlib_resnet forward pass dispatches
a few hundred operations); dlib's shape predictor keeps the GIL for its whole call (~1-2 ms a face). This script
times the bare forward pass of dlib_resnet (batches of ``--batch-size`` random crops) in three settings, in one
process, alternating, ``--reps`` times (medians printed):

* ``alone``: nothing else runs;
* ``dlib (GIL held)``: a thread fits the 68 landmarks on frames of a synthetic demo video, 8 calls then a pause of
  the same length (about the front end's duty cycle);
* ``GIL-free work``: the same duty cycle of work that releases the GIL (hashlib on a buffer sized so that one call
  takes as long as one landmark fit).

``wall`` against ``cpu`` (the forward thread's own CPU time) shows the waiting: the gap of ``GIL-free work`` is
what sharing the cores costs (large when other jobs load the machine), the extra gap of ``dlib`` is the GIL.
Run it with ``PYTHONPATH=<checkout>/src``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import threading
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import dlib
    import numpy as np
    import torch

    from au_transfer.backbones import create_backbone
    from au_transfer.datasets.demo import generate_subject
    from au_transfer.faces.settings import FaceSettings
    from au_transfer.faces.video import iter_frames

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        generate_subject(Path(tmp), "SN001", n_frames=16, width=640, height=480, seed=1)
        frames = [rgb for _, _, rgb in iter_frames(next(Path(tmp).glob("Video*/*SN001*")))]
    lm = FaceSettings.from_config({}).landmarker()
    box = lm.detect(frames[0])[0]
    rect = dlib.rectangle(*(int(round(v)) for v in box[:4]))

    def per_call(f) -> float:
        f()
        t = time.perf_counter()
        for _ in range(20):
            f()
        return (time.perf_counter() - t) / 20

    fit_s = per_call(lambda: lm._predictor(frames[1], rect))
    blob = np.random.default_rng(0).bytes(1 << 20)
    blob = blob * max(1, round(fit_s / per_call(lambda: hashlib.sha256(blob).digest())))
    stop = threading.Event()

    def duty(call) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            for f in frames[:8]:
                call(f)
            time.sleep(time.perf_counter() - t)

    background = {"alone": None,
                  "dlib (GIL held)": lambda: duty(lambda f: lm._predictor(f, rect)),
                  "GIL-free work": lambda: duty(lambda f: hashlib.sha256(blob).digest())}
    net = create_backbone("dlib_resnet").eval()
    x = torch.randn(args.batch_size, 3, net.spec.input_size, net.spec.input_size)

    def forward() -> tuple[float, float]:
        t, c = time.perf_counter(), time.thread_time()
        with torch.inference_mode():
            for _ in range(2):
                net.features(x)
        return time.perf_counter() - t, time.thread_time() - c

    forward()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in background}
    for _ in range(args.reps):
        for name, target in background.items():
            stop.clear()
            th = threading.Thread(target=target, daemon=True) if target else None
            if th:
                th.start()
            times[name].append(forward())
            stop.set()
            if th:
                th.join()
    print(f"dlib_resnet forward, 2 batches of {args.batch_size}, torch threads {torch.get_num_threads()}; one "
          f"landmark fit {1000 * fit_s:.2f} ms; load average {open('/proc/loadavg').read().split()[0]}")
    print(f"{'while':<18}{'wall s':>8}{'cpu s':>8}{'wall/alone':>11}")
    alone = statistics.median(w for w, _ in times["alone"])
    for name, v in times.items():
        wall = statistics.median(w for w, _ in v)
        print(f"{name:<18}{wall:>8.3f}{statistics.median(c for _, c in v):>8.3f}{wall / alone:>11.2f}")


if __name__ == "__main__":
    main()
