"""Benchmark of `au-transfer predict`: the predictor against the bare forward passes of the networks it runs.

    python bench/predict.py [--frames 960] [--width 640] [--height 480] [--chunk 64] [--threads 1]
                            [--detect-every N] [--models single ensemble] [--front-ends process thread]
    python bench/predict.py --batch [--workers 1 2]

``--batch``: the demo's six videos (config.yaml's data.demo: subjects, frames, size, seed) through
``au-transfer predict`` with the single model: six separate calls (``-o VIDEO.csv`` each: six start-ups, six
network loads) against one call with all six (``-o OUTDIR/``), with 1 and 2 face front ends side by side
(``--workers``); frames/s is the six videos' frames over each way's wall-clock seconds, start-ups included.

Fits tiny models on random features (the classifiers' speed barely matters; the face front end and the networks
do): ``single`` is ``dlib_resnet-face-svm``; ``ensemble`` is like ``ens-paper3``: SVMs on dlib_resnet and
mtcnn_onet features of the face and of each AU's region, an LSTM on dlib_resnet, and fine-tuned dlib_resnet
networks (multilabel: one for the face, one per region, written once per AU as the workflow does). For each, in
fresh processes, it prints:

* ``startup``: one image predicted from a fresh process, in seconds, beyond ``import torch`` (also printed);
* ``fps``: frames per second of the predictor over a synthetic demo video (models already loaded, one image
  predicted first);
* ``ratio``: that against the bare forward passes of the networks the model needs, in the same process right
  after: every distinct (network, crop) pair once per face, on preprocessed tensors, in batches of the
  predictor's ``--batch-size``, best of 5 (target >= 0.8);
* ``peak MB``: the peak resident memory of the video run (with ``--front-ends process``: the predictor's process
  plus the front end's, each at its peak).

Each model is measured with the face front end in a worker process and in a thread (``--front-ends``, the
predictor's ``front_end``), one after the other. ``--threads`` sets torch's threads in both (default 1: on a 2-core
machine the front end has the other core; ``0`` leaves torch's default, all cores). Run it with
``PYTHONPATH=<checkout>/src`` to measure that checkout's code (``--detect-every`` is passed only when given, and
``--front-ends -`` passes none, so older code runs too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REGION_OF = {1: "upper", 2: "upper", 4: "upper", 5: "upper", 6: "upper", 9: "middle", 12: "lower", 15: "lower",
             17: "lower", 20: "lower", 25: "lower", 26: "lower"}

STARTUP = r"""
import json, sys, time
t = time.perf_counter()
import torch
t_torch = time.perf_counter() - t
threads = int(sys.argv[5])
if threads:
    torch.set_num_threads(threads)
t = time.perf_counter()
from au_transfer.predict import predict_to_csv
kw = {} if sys.argv[6] == "-" else {"front_end": sys.argv[6]}
predict_to_csv(sys.argv[1], sys.argv[4], model=sys.argv[3], model_dir=sys.argv[2], progress=False, **kw)
print(json.dumps({"torch_s": t_torch, "startup_s": time.perf_counter() - t}))
"""

VIDEO = r"""
import json, resource, sys, time
import numpy as np, torch
video, models, model, chunk, batch, threads, every, image, front = sys.argv[1:10]
if int(threads):
    torch.set_num_threads(int(threads))
from au_transfer.predict import Predictor, iter_predictions
p = Predictor(model, model_dir=models, batch_size=int(batch), **({} if front == "-" else {"front_end": front}))
for _ in iter_predictions(image, p, progress=False):  # start-up (measured separately) and the networks' first call
    pass
kw = {} if every == "-" else {"detect_every": int(every)}
t = time.perf_counter()
frames = faces = 0
for part in iter_predictions(video, p, chunk_size=int(chunk), progress=False, **kw):
    frames += part["frame"].nunique()
    faces += int(part["success"].sum())
secs = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if getattr(p, "front_end", "") == "process":  # the front end's process: its peak adds to this one's (both held at once)
    p.close()
    peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

# the bare forward passes: every distinct (network, crop) the model reads, once per face
from au_transfer.backbones import create_backbone
from au_transfer.finetune import load_finetuned
from au_transfer.finetune.bundle import load_bundle
def leaves(node):
    return [x for c in node.members for x in leaves(c)] if node.members else [node.model]
nets = {}
for tree in p._trees.values():
    for m in leaves(tree):
        n = m.needs
        if n.kind == "features":
            nets.setdefault(("features", n.backbone, n.crop_region), lambda b=n.backbone: create_backbone(b))
        else:
            sha = load_bundle(n.network)["weights_sha256"]
            nets.setdefault(("finetuned", sha, n.crop_region), lambda f=n.network: load_finetuned(f, "cpu")[0])
bs = int(batch)
per_face = 0.0
with torch.inference_mode():
    for key, make in nets.items():
        net = make().eval()
        size = (net.spec if key[0] == "features" else net.backbone.spec).input_size
        x = torch.randn(bs, 3, size, size)
        run = net.features if key[0] == "features" else net
        run(x)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            run(x).float().cpu()
            best = min(best, time.perf_counter() - t0)
        per_face += best / bs
print(json.dumps({"frames": frames, "faces": faces, "seconds": secs, "peak_mb": peak, "bare_s": per_face * faces,
                  "networks": len(nets), "threads": torch.get_num_threads()}))
"""


def _svm(models: Path, mid: str, backbone: str, dim: int, region: str, rng) -> None:
    import numpy as np

    from au_transfer import DISFA_AUS
    from au_transfer.classifiers.frame import make_bundle, make_estimator, save_model
    from au_transfer.layout import MODEL_EXT

    for au in DISFA_AUS:
        X = rng.normal(0, 0.1, (80, dim)).astype(np.float32)
        est = make_estimator("svm", {}, C=1.0).fit(X, (X[:, au] > 0).astype(int))
        bundle = make_bundle({"estimator": est}, au=au, backbone=backbone, region=region,
                             crop_region="face" if region == "face" else REGION_OF[au], classifier="svm", params={},
                             seed=0, threshold=2, balance=True, refit="train", split="b", train=[], val=[], test=[],
                             attrs={}, counts={})
        save_model(bundle, models / mid / f"AU{au}{MODEL_EXT}")


def _lstm(models: Path, rng) -> None:
    import numpy as np

    from au_transfer import DISFA_AUS
    from au_transfer.classifiers.frame import make_bundle, save_model
    from au_transfer.classifiers.lstm import LSTMClassifier
    from au_transfer.layout import MODEL_EXT

    for au in DISFA_AUS:
        X = [rng.normal(0, 0.1, (30, 128)).astype(np.float32) for _ in range(2)]
        y = [(x[:, au] > 0).astype(int) for x in X]
        est = LSTMClassifier(hidden=200, epochs=1, batch_size=2, device="cpu").fit(X, y)
        bundle = make_bundle({"estimator": est}, au=au, backbone="dlib_resnet", region="face", crop_region="face",
                             classifier="lstm", params={}, seed=0, threshold=2, balance=False, refit="train",
                             split="b", train=[], val=[], test=[], attrs={}, counts={})
        save_model(bundle, models / "dlib_resnet-face-lstm" / f"AU{au}{MODEL_EXT}")


def _finetuned(root: Path, region: str) -> None:
    """Multilabel dlib_resnet networks (random weights), written once per AU as the workflow's unpack step does."""
    import torch

    from au_transfer import DISFA_AUS
    from au_transfer.backbones import create_backbone
    from au_transfer.finetune.bundle import save_bundle
    from au_transfer.finetune.net import FinetuneNet
    from au_transfer.layout import Layout

    layout = Layout.of(root)
    crops = ["face"] if region == "face" else sorted(set(REGION_OF.values()))
    for i, crop in enumerate(crops):
        aus = [a for a in DISFA_AUS if region == "face" or REGION_OF[a] == crop]
        torch.manual_seed(i)
        net = FinetuneNet(create_backbone("dlib_resnet", "random", seed=i), len(aus))
        group = Path(layout.ft_network("b", "dlib_resnet", region, f"multilabel-{crop}"))
        group.parent.mkdir(parents=True, exist_ok=True)
        save_bundle(group, net, backbone="dlib_resnet", weights="random", region=region, crop_region=crop, aus=aus,
                    au=aus[0], au_index=0, input_size=150, status="ok", model=f"dlib_resnet_ft-{region}-softmax")
        bundle = torch.load(group, weights_only=True)
        for au in aus:
            torch.save(dict(bundle, au=au, au_index=aus.index(au)), layout.finetune_net("b", "dlib_resnet", region, au))


def make_models(root: Path, which: str) -> str:
    """Models under ``root/models/b`` (a results folder); returns the model id."""
    import numpy as np
    import pandas as pd

    from au_transfer import DISFA_AUS
    from au_transfer.ensemble import align, fit_ensemble
    from au_transfer.predict import write_manifest

    models = root / "models" / "b"
    rng = np.random.default_rng(0)
    ids = ["dlib_resnet-face-svm"]
    _svm(models, "dlib_resnet-face-svm", "dlib_resnet", 128, "face", rng)
    if which == "ensemble":
        _svm(models, "mtcnn_onet-face-svm", "mtcnn_onet", 256, "face", rng)
        _svm(models, "dlib_resnet-au_region-svm", "dlib_resnet", 128, "au_region", rng)
        _svm(models, "mtcnn_onet-au_region-svm", "mtcnn_onet", 256, "au_region", rng)
        _lstm(models, rng)
        _finetuned(root, "face")
        _finetuned(root, "au_region")
        ids = ["dlib_resnet-face-svm", "mtcnn_onet-face-svm", "dlib_resnet_ft-face-softmax", "dlib_resnet-face-lstm",
               "dlib_resnet-au_region-svm", "mtcnn_onet-au_region-svm", "dlib_resnet_ft-au_region-softmax"]
    write_manifest(models / "predictor.json", split="b", aus=DISFA_AUS, faces={}, backbones={})
    if len(ids) == 1:
        return ids[0]
    preds = {m: pd.DataFrame([{"subject": "SN001", "frame": f, "au": au, "set": "val", "score": s, "pred": int(s > 0),
                               "label": f % 2} for au in DISFA_AUS for f, s in enumerate(rng.normal(size=20), 1)])
             for m in ids}
    params = fit_ensemble(align(preds, name="p3"), name="p3", method="majority", tie="score")
    (models / "ens-p3").mkdir(parents=True)
    (models / "ens-p3" / "ensemble.json").write_text(json.dumps(params))
    return "ens-p3"


def _child(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


BATCH_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cli(*args: object) -> float:
    """Wall-clock seconds of one ``au-transfer predict`` call in a fresh process."""
    import time

    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "au_transfer.cli", "predict", *map(str, args), "-q"],
                          capture_output=True, text=True, env=dict(os.environ, **BATCH_ENV))
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-3000:])
    return time.perf_counter() - t


def batch(args: argparse.Namespace) -> None:
    """Six separate calls against one call of six inputs (module docstring)."""
    import yaml

    from au_transfer.config import schema_defaults
    from au_transfer.datasets.demo import generate_subject
    from au_transfer.faces.video import video_info

    demo = {**schema_defaults("data")["demo"],
            **yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())["data"]["demo"]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for subject in demo["subjects"]:
            generate_subject(tmp / "corpus", subject, n_frames=demo["n_frames"], seed=demo["seed"],
                             width=demo["width"], height=demo["height"], fps=demo["fps"])
        videos = sorted((tmp / "corpus").glob("Video*/*"))
        frames = sum(video_info(v).n_frames for v in videos)
        model = make_models(tmp / "single", "single")
        where = ["--models", tmp / "single" / "models" / "b", "--model", model]
        print(f"{len(videos)} demo videos, {frames} frames; model {model}; {os.cpu_count()} cores; "
              f"torch threads 1", flush=True)
        print(f"{'way':<34}{'seconds':>9}{'frames/s':>10}", flush=True)
        runs = [("six separate calls", None)] + [(f"one call, {w} worker(s)", w) for w in args.workers]
        for label, workers in runs:
            if workers is None:
                secs = sum(_cli(v, "-o", tmp / f"{v.stem}.csv", *where) for v in videos)
            else:
                secs = _cli(*videos, "-o", f"{tmp / f'out{workers}'}/", "--workers", workers, *where)
            print(f"{label:<34}{secs:>9.1f}{frames / secs:>10.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=960,
                    help="frames of the demo video (default 960, 32 s at 30 fps: the pipe's start, ~0.2 s before "
                         "the networks get their first batch, weighs a few percent; --frames 120 for a quick look)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--detect-every", default="-", help="the predictor's detection interval (default: its own)")
    ap.add_argument("--models", nargs="+", default=["single", "ensemble"], choices=["single", "ensemble"])
    ap.add_argument("--front-ends", nargs="+", default=["process", "thread"],
                    help="where the face front end runs (the predictor's front_end), each measured; '-': the "
                         "predictor's default (for code without the option)")
    ap.add_argument("--batch", action="store_true", help="six demo videos: one call against six (docstring)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="with --batch: front ends side by side")
    args = ap.parse_args()
    if args.batch:
        batch(args)
        return

    import cv2

    from au_transfer.datasets.demo import generate_subject

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_subject(tmp / "corpus", "SN001", n_frames=args.frames, width=args.width, height=args.height, seed=1)
        video = next((tmp / "corpus").glob("Video*/*SN001*"))
        cap = cv2.VideoCapture(str(video))
        ok, frame = cap.read()
        cap.release()
        image = tmp / "frame1.png"
        cv2.imwrite(str(image), frame)
        print(f"{args.width}x{args.height} video, {args.frames} frames; chunk {args.chunk}; batch {args.batch_size}; "
              f"torch threads {args.threads or 'default'}; detect every {args.detect_every}; {os.cpu_count()} cores")
        print(f"{'model':<22}{'front':>8}{'nets':>5}{'torch s':>8}{'startup s':>10}{'fps':>7}{'bare fps':>9}"
              f"{'ratio':>7}{'peak MB':>8}")
        for which in args.models:
            root = tmp / which
            model = make_models(root, which)
            models = root / "models" / "b"
            for front in args.front_ends:
                s = _child(STARTUP, image, models, model, tmp / f"{which}-image.csv", args.threads, front)
                r = _child(VIDEO, video, models, model, args.chunk, args.batch_size, args.threads, args.detect_every,
                           image, front)
                fps = r["frames"] / r["seconds"]
                bare_fps = r["faces"] / r["bare_s"]
                print(f"{model:<22}{front:>8}{r['networks']:>5}{s['torch_s']:>8.1f}{s['startup_s']:>10.1f}"
                      f"{fps:>7.1f}{bare_fps:>9.1f}{r['bare_s'] / r['seconds']:>7.2f}{r['peak_mb']:>8.0f}",
                      flush=True)


if __name__ == "__main__":
    main()
