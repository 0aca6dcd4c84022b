"""Benchmark: peak memory and time of one LDA and one SVM fit job (``run_frame_job``) on DISFA-sized features.

Writes a synthetic feature store like the features stage's (default: 27 subjects x 4845 frames x 4096 float16
dims, chunked and lzf-compressed, about 1 GB; a few invalid frames; label CSVs with one AU per ``--rates`` value,
e.g. ~5% and ~35% of frames present, in bursts) into a temporary folder, then runs each (AU, classifier) job in a
fresh Python process on the paper's split (12 train / 6 val / 9 test subjects) with the schema's default
classifier options, and prints the share of positive training frames, the balanced training rows, the child's
peak RSS (``ru_maxrss``), wall and CPU time and the sha256 of its predictions file (the same for the same store:
compare two checkouts with ``--src``, or scikit-learn's fits with the lean ones with ``--lean-above none`` and
``--out``).

    python bench/classifiers.py                                   # DISFA-sized: minutes, ~1 GB in /tmp
    python bench/classifiers.py --subjects 9 --frames 1000 --dim 512 --train 4 --val 2
    python bench/classifiers.py --src /path/to/other/checkout/src --store /tmp/store   # same store, other code
    python bench/classifiers.py --store /tmp/store --lean-above none --out /tmp/sk    # scikit-learn's own fits
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

SRC = Path(__file__).resolve().parents[1] / "src"
FIRST_AU = 1  # the AUs are numbered FIRST_AU, FIRST_AU + 1, ... in the order of --rates

CHILD = r"""
import json, resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from au_transfer.classifiers.jobs import run_frame_job
from au_transfer.config import schema_defaults
a = json.loads(sys.argv[1])
params = schema_defaults("classifiers")[a["classifier"]]
if a.get("lean_above", "schema") != "schema":
    params["lean_above"] = a["lean_above"]
bundle = run_frame_job(feature_paths=a["features"], label_paths=a["labels"], train=a["train"], val=a["val"],
                       test=a["test"], au=a["au"], backbone="synthetic", region="face", crop_region="face",
                       classifier=a["classifier"], params=params, seed=0, threshold=2,
                       refit=params.get("refit", "train"), model_out=a["model"], pred_out=a["pred"], split="bench")
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"peak_rss_mb": ru.ru_maxrss / 1024, "wall_s": time.perf_counter() - t0,
                  "cpu_s": time.process_time() - c0, "n_pos": bundle["n_train_pos"], "n_neg": bundle["n_train_neg"],
                  "chosen": bundle["chosen"], "implementation": bundle.get("implementation", "scikit-learn"), "torch_imported": "torch" in sys.modules}))
"""


def au_intensities(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Intensities 0-5 with bursts of activation (present = >= 2) covering about ``rate`` of the frames."""
    inten = np.zeros(n, np.int64)
    mean_burst = 60.0
    mean_gap = (mean_burst - 1) / max(rate, 1e-6) - mean_burst  # the onset frame is below threshold
    t = int(rng.exponential(mean_gap))
    while t < n:
        length = max(2, int(rng.exponential(mean_burst)))
        inten[t:t + length] = rng.integers(2, 6)
        inten[t] = 1  # onset below threshold
        t += length + max(1, int(rng.exponential(mean_gap)))
    return inten


def write_store(root: Path, n_subjects: int, n_frames: int, dim: int, rates: list[float], seed: int = 0
                ) -> tuple[dict[str, str], dict[str, str]]:
    """Feature files (the features stage's layout) and label CSVs of ``n_subjects`` synthetic subjects."""
    dirs = np.random.default_rng(seed).standard_normal((len(rates), dim)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    fp, lp = {}, {}
    for i in range(n_subjects):
        s = f"SN{i + 1:03d}"
        fp[s], lp[s] = str(root / "features" / f"{s}.h5"), str(root / "labels" / f"{s}.csv")
        if Path(fp[s]).is_file() and Path(lp[s]).is_file():
            continue
        Path(fp[s]).parent.mkdir(parents=True, exist_ok=True)
        Path(lp[s]).parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed + 1 + i)
        X = rng.standard_normal((n_frames, dim), dtype=np.float32)
        X += 0.5 * rng.standard_normal(dim, dtype=np.float32)  # the subject's own offset
        labels = {"frame": np.arange(1, n_frames + 1)}
        for k, rate in enumerate(rates):
            inten = au_intensities(n_frames, rate, rng)
            labels[f"AU{FIRST_AU + k}"] = inten
            X += (inten >= 2)[:, None] * (1.5 * dirs[k])[None, :]
        valid = np.ones(n_frames, bool)
        valid[rng.choice(n_frames, size=n_frames // 100, replace=False)] = False  # ~1% frames without a face
        X[~valid] = np.nan
        chunk_rows = max(1, min(n_frames, (1 << 20) // (2 * dim)))  # as features.write_features
        with h5py.File(fp[s] + ".tmp", "w") as h5:
            h5.create_dataset("features", data=X.astype(np.float16), chunks=(chunk_rows, dim), compression="lzf")
            h5["frames"] = np.arange(1, n_frames + 1, dtype=np.int32)
            h5["valid"] = valid
            h5.attrs.update({"backbone": "synthetic", "layer": "synthetic", "weights": "synthetic",
                             "weights_sha256": "0" * 64, "region": "face", "input_size": 0, "subject": s,
                             "dim": dim})
        os.replace(fp[s] + ".tmp", fp[s])
        pd.DataFrame(labels).to_csv(lp[s], index=False)
    return fp, lp


def run_job(src: Path, args: dict, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"job failed ({args['classifier']} AU{args['au']}):\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    res["pred_sha256"] = hashlib.sha256(Path(args["pred"]).read_bytes()).hexdigest()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=27)
    ap.add_argument("--frames", type=int, default=4845)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--train", type=int, default=12, help="training subjects (the first ones)")
    ap.add_argument("--val", type=int, default=6, help="validation subjects (next); the rest are test subjects")
    ap.add_argument("--rates", default="0.05,0.35", help="share of frames with the AU present, one AU per value")
    ap.add_argument("--classifiers", default="lda,svm")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads of each job")
    ap.add_argument("--src", type=Path, default=SRC, help="the au_transfer source to run (default: this checkout)")
    ap.add_argument("--lean-above", default="schema",
                    help="the classifiers' lean_above (training values above which the lean fits run): a number, "
                         "'none' (scikit-learn's fits) or 'schema' (the default)")
    ap.add_argument("--out", type=Path, default=None, help="keep the prediction files here (compare two runs)")
    ap.add_argument("--store", type=Path, default=None,
                    help="folder for the synthetic store, kept and reused (default: a temporary folder)")
    a = ap.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    choice = a.lean_above.lower()
    lean_above = choice if choice == "schema" else None if choice == "none" else int(float(choice))
    with tempfile.TemporaryDirectory(prefix="bench_clf_") as tmp:
        root = a.store or Path(tmp)
        t0 = time.perf_counter()
        fp, lp = write_store(root, a.subjects, a.frames, a.dim, rates)
        subjects = list(fp)
        sets = {"train": subjects[:a.train], "val": subjects[a.train:a.train + a.val],
                "test": subjects[a.train + a.val:]}
        size = sum(Path(p).stat().st_size for p in fp.values()) / 2**30
        print(f"store: {a.subjects} subjects x {a.frames} frames x {a.dim} float16 ({size:.2f} GB on disk), "
              f"{len(sets['train'])}/{len(sets['val'])}/{len(sets['test'])} train/val/test subjects, "
              f"written or found in {time.perf_counter() - t0:.0f} s; code: {a.src}; {a.threads} BLAS thread(s)")
        print(f"{'AU':>4} {'pos %':>5} {'clf':>4} {'train rows':>10} {'peak RSS GB':>11} {'wall s':>7} {'CPU s':>7}  "
              f"fit          chosen / predictions sha256")
        for k in range(len(rates)):
            for clf in a.classifiers.split(","):
                au = FIRST_AU + k
                out = a.out or Path(tmp)
                out.mkdir(parents=True, exist_ok=True)
                job = {"features": fp, "labels": lp, **sets, "au": au, "classifier": clf, "lean_above": lean_above,
                       "model": str(Path(tmp) / f"{clf}_AU{au}.npz"), "pred": str(out / f"{clf}_AU{au}.csv")}
                r = run_job(a.src, job, a.threads)
                pos = 100 * r["n_pos"] / (r["n_pos"] + r["n_neg"])
                n_train = 2 * min(r["n_pos"], r["n_neg"])  # the balanced training rows
                print(f"{au:>4} {pos:>5.1f} {clf:>4} {n_train:>10} {r['peak_rss_mb'] / 1024:>11.2f} "
                      f"{r['wall_s']:>7.1f} {r['cpu_s']:>7.1f}  {r['implementation']:<12} {r['chosen'] or ''} "
                      f"{r['pred_sha256'][:16]}"
                      f"{'  (torch imported!)' if r['torch_imported'] else ''}", flush=True)


if __name__ == "__main__":
    main()
