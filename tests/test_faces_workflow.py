"""The faces stage inside the workflow: demo corpus -> landmarks -> aligned faces -> QC (tests/config_test.yaml)."""

from __future__ import annotations

import re

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TEST_CONFIG, copy_workflow, run_snakemake

from au_transfer.faces import FaceStore, read_landmarks

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("workflow")]


def _subjects():
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    return sorted({s for sp in cfg["splits"].values() for s in sp["train"] + sp["val"] + sp["test"]})


def test_demo_corpus_runs_through_landmarks_faces_and_qc(finished_workflow):
    wd = finished_workflow
    for s in _subjects():
        lm = read_landmarks(wd / f"results/landmarks/{s}.h5")
        with h5py.File(wd / f"results/landmarks/{s}.h5") as f:
            n_video = int(f.attrs["n_frames_video"])
            assert f.attrs["subject"] == s
            assert int(f.attrs["n_frames_labels"]) > 0
        assert lm.frames.tolist() == list(range(1, n_video + 1))
        assert lm.valid.mean() > 0.8                          # the demo faces are found
        with FaceStore(wd / f"results/faces/{s}.h5") as fs:
            assert len(fs) == n_video and fs.subject == s
            assert np.array_equal(fs.frames, lm.frames)
            assert not (fs.valid & ~lm.valid).any()           # never valid without landmarks
            rows = np.flatnonzero(fs.valid)[:4]
            for region in ("face", "upper", "middle", "lower"):
                crops = fs.crops(rows, region, 32)
                assert crops.shape == (len(rows), 32, 32, 3) and crops.std() > 5
        qc = pd.read_csv(wd / f"results/qc/{s}.csv")
        assert qc["frame"].tolist() == lm.frames.tolist()
        assert (qc["valid"].astype(bool).to_numpy() == lm.valid).all()
        img = cv2.imread(str(wd / f"results/qc/{s}.png"))
        assert img is not None and min(img.shape[:2]) > 100


def test_changing_the_alignment_does_not_rerun_landmark_detection(finished_workflow, tmp_path):
    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    subject = _subjects()[0]
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["faces"] = {**(cfg.get("faces") or {}), "size": 96, "margin": 0.1}
    changed = tmp_path / "config.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(wd, "-n", f"results/qc/{subject}.png", configfile=changed)
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout, flags=re.M))
    assert {"faces", "faces_qc"} <= jobs
    assert "landmarks" not in jobs
