"""Identity check of the classifier jobs: run ``run_frame_job`` (LDA, LDA with shrinkage, SVM with a grid, one C or
no validation set; refit train and train_val) and, with ``--lstm``, ``run_lstm_job`` on synthetic features (9
subjects of odd lengths, invalid and unlabelled frames, an AU skipped for want of training positives, an AU whose
positives outnumber its negatives), and print the sha256 of every prediction file and model bundle as JSON.

Run it with two versions of the code and compare the outputs (equal = same predictions and bundles, byte for byte):

    PYTHONPATH=/path/to/old/src python bench/classifiers_identity.py --lstm > old.json
    PYTHONPATH=src python bench/classifiers_identity.py --lstm > new.json && cmp old.json new.json
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from au_transfer.classifiers.data import write_synthetic_subject
from au_transfer.classifiers.jobs import run_frame_job, run_lstm_job

warnings.filterwarnings("ignore")

SIZES = [203, 157, 181, 222, 149, 166, 190, 171, 213]
SUBJ = [f"SN{i:03d}" for i in range(1, len(SIZES) + 1)]
AUS = [1, 2, 12, 25, 26]


def make(root):
    fp, lp = {}, {}
    for i, (s, n) in enumerate(zip(SUBJ, SIZES, strict=True)):
        fp[s], lp[s] = str(root / "f" / f"{s}.h5"), str(root / "l" / f"{s}.csv")
        write_synthetic_subject(fp[s], lp[s], s, aus=AUS, n_frames=n, dim=48, n_labelled=n - 3 - i,
                                invalid=[0, 5 + i, 40 + 2 * i, n - 1], seed=i)
        df = pd.read_csv(lp[s])
        if i < 4:
            df["AU2"] = 0  # AU2: no training positive -> skipped
        df["AU26"] = np.where(df["AU26"] >= 2, 0, 3)  # AU26: positives outnumber negatives
        df.to_csv(lp[s], index=False)
    return fp, lp


def sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def main():
    out = {}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        fp, lp = make(root)
        base = dict(feature_paths=fp, label_paths=lp, backbone="synthetic", region="face", crop_region="face",
                    threshold=2, split="t")
        sets = dict(train=SUBJ[:4], val=SUBJ[4:6], test=SUBJ[6:])
        cases = []
        for au in AUS:
            cases += [("lda", {}, "train", sets, au), ("lda", {"shrinkage": "auto"}, "train", sets, au),
                      ("svm", {"C_grid": [0.01, 0.1, 1.0]}, "train", sets, au),
                      ("svm", {"C_grid": [0.01, 0.1, 1.0]}, "train_val", sets, au),
                      ("svm", {"C_grid": [0.1]}, "train_val", sets, au),
                      ("lda", {}, "train_val", sets, au),
                      ("svm", {"C_grid": [0.01, 1.0], "C_fallback": 0.05}, "train",
                       dict(train=SUBJ[:5], val=[], test=SUBJ[5:]), au)]
        for k, (clf, params, refit, st, au) in enumerate(cases):
            m, pr = root / f"m{k}.npz", root / f"p{k}.csv"
            b = run_frame_job(**base, **st, au=au, classifier=clf, params=params, seed=3, balance=True, refit=refit,
                              model_out=m, pred_out=pr)
            key = f"{k:02d} AU{au} {clf} {json.dumps(params)} {refit} val={len(st['val'])}"
            out[key] = {"pred": sha(pr), "bundle": sha(m), "status": b["status"], "val_scores": b["val_scores"],
                        "rows": len(pd.read_csv(pr))}
        if "--lstm" in sys.argv:
            fast = dict(hidden=16, lr=0.2, momentum=0.9, weight_noise_std=0.01, context_frames=3, inactive_min=20,
                        inactive_max=30, epochs=8, batch_size=4, patience=0, device="cpu")
            import torch
            torch.set_num_threads(1)
            for au in (12, 26, 2):
                m, pr = root / f"lstm{au}.npz", root / f"lstm{au}.csv"
                b = run_lstm_job(**base, **sets, au=au, params=fast, seed=3, model_out=m, pred_out=pr)
                out[f"lstm AU{au}"] = {"pred": sha(pr), "status": b["status"], "rows": len(pd.read_csv(pr))}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
