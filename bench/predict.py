"""Benchmark of `au-transfer predict`: frames per second and peak memory against video length.

    python bench/predict.py [--frames 60 240] [--width 640] [--height 480] [--chunk 64] [--members 2]

Generates a synthetic demo video per length, fits tiny dlib_resnet models on random features (the speed of the
classifiers does not matter; the face pipeline and the backbone do), and runs the predictor on each video in a
fresh process, printing frames per second and the peak resident memory. Flat memory means the peak does not grow
with the number of frames.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

CHILD = r"""
import json, resource, sys, time
from au_transfer.predict import predict_to_csv
video, models, model, out, chunk = sys.argv[1:6]
t = time.perf_counter()
stats = predict_to_csv(video, out, model=model, model_dir=models, chunk_size=int(chunk), progress=False)
secs = time.perf_counter() - t
print(json.dumps({**stats, "seconds": secs, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_models(models: Path, members: int) -> str:
    """dlib_resnet SVM/LDA bundles on random features for all 12 AUs, and an ensemble of ``members`` of them."""
    import numpy as np
    import pandas as pd

    from au_transfer import DISFA_AUS
    from au_transfer.classifiers.frame import make_bundle, make_estimator, save_model
    from au_transfer.ensemble import align, fit_ensemble
    from au_transfer.predict import write_manifest

    rng = np.random.default_rng(0)
    ids = []
    for region, clf in [("face", "svm"), ("face", "lda"), ("au_region", "svm")][:members]:
        mid = f"dlib_resnet-{region}-{clf}"
        ids.append(mid)
        for au in DISFA_AUS:
            X = rng.normal(0, 0.1, (80, 128)).astype(np.float32)
            est = make_estimator(clf, {}, C=1.0).fit(X, (X[:, au] > 0).astype(int))
            bundle = make_bundle({"estimator": est}, au=au, backbone="dlib_resnet", region=region,
                                 crop_region="face" if region == "face" else "lower", classifier=clf, params={},
                                 seed=0, threshold=2, balance=True, refit="train", split="b", train=[], val=[],
                                 test=[], attrs={}, counts={})
            save_model(bundle, models / mid / f"AU{au}.joblib")
    if members == 1:
        write_manifest(models / "predictor.json", split="b", aus=DISFA_AUS, faces={}, backbones={})
        return ids[0]
    preds = {m: pd.DataFrame([{"subject": "SN001", "frame": f, "au": au, "set": "val", "score": s, "pred": int(s > 0),
                               "label": f % 2} for au in DISFA_AUS for f, s in enumerate(rng.normal(size=20), 1)])
             for m in ids}
    params = fit_ensemble(align(preds, name="b"), name="b", method="majority", tie="score")
    (models / "ens-b").mkdir(parents=True)
    (models / "ens-b" / "ensemble.json").write_text(json.dumps(params))
    write_manifest(models / "predictor.json", split="b", aus=DISFA_AUS, faces={}, backbones={})
    return "ens-b"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[60, 240])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--members", type=int, default=2, choices=[1, 2, 3])
    args = ap.parse_args()

    from au_transfer.datasets.demo import generate_subject

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_models(tmp / "models" / "b", args.members)
        print(f"model {model}; {args.width}x{args.height} video; chunk {args.chunk}; OMP_NUM_THREADS="
              f"{os.environ['OMP_NUM_THREADS']}")
        print(f"{'frames':>7} {'faces':>6} {'seconds':>8} {'fps':>6} {'peak MB':>8}")
        for n in args.frames:
            root = tmp / f"corpus{n}"
            generate_subject(root, "SN001", n_frames=n, width=args.width, height=args.height, seed=1)
            video = next(root.glob("Video*/*SN001*"))
            proc = subprocess.run([sys.executable, "-c", CHILD, str(video), str(tmp / "models" / "b"), model,
                                   str(tmp / f"out{n}.csv"), str(args.chunk)], capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{r['frames']:>7} {r['faces']:>6} {r['seconds']:>8.1f} {r['frames'] / r['seconds']:>6.1f} "
                  f"{r['peak_rss_mb']:>8.0f}")


if __name__ == "__main__":
    main()
