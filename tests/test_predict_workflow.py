"""`snakemake predict`: one job per video of a study with the run's trained models, pictures on request, each output
cached (a rerun predicts only new or changed videos)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml
from conftest import TEST_CONFIG, copy_workflow, plan, run_snakemake

pytestmark = pytest.mark.xdist_group("workflow")


def predict_config(tmp_path, **predict):
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["predict"] = predict
    path = tmp_path / "config_predict.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))  # key order kept: params compare as written
    return path


def test_predict_target_runs_one_job_per_video_and_reruns_only_new_or_changed(finished_workflow, tmp_path):
    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    videos = sorted((wd / "demo_corpus").glob("Video*/*"))  # the demo's videos
    assert len(videos) >= 3
    study = tmp_path / "study"
    study.mkdir()
    for v in videos[:2]:
        shutil.copy2(v, study / v.name)
    cfg = predict_config(tmp_path, plot=True, overlay=True, every=4)
    where = ("--config", f"predict_input={study}")
    jobs, _ = plan(wd, cfg, "predict", *where)
    assert sorted(j.rule for j in jobs) == ["predict", "predict_video", "predict_video"], [str(j) for j in jobs]
    run_snakemake(wd, "predict", *where, configfile=cfg)
    out = wd / "results" / "predict"
    for v in videos[:2]:
        csv = next(out.glob(f"*/{v.stem}.csv"))
        df = pd.read_csv(csv)
        assert df["frame"].iloc[:3].tolist() == [1, 5, 9] and df["success"].mean() > 0.5
        assert csv.with_suffix(".png").stat().st_size > 0 and csv.with_suffix(".overlay.mp4").stat().st_size > 0

    jobs, text = plan(wd, cfg, "predict", *where)
    assert not [j for j in jobs if j.rule == "predict_video"], text[-2000:]  # cached

    shutil.copy2(videos[2], study / videos[2].name)  # a new video
    with open(study / videos[0].name, "ab") as fh:  # a changed one (new bytes: Snakemake compares the checksums
        fh.write(b"\0")                            # of small files, the mtimes of large ones)
    jobs, _ = plan(wd, cfg, "predict", *where)
    redo = sorted(j.wildcards["name"] for j in jobs if j.rule == "predict_video")
    assert redo == sorted([videos[0].stem, videos[2].stem])


def test_predict_target_without_an_input_says_what_to_set(tmp_path):
    proc = run_snakemake(tmp_path, "--dry-run", "predict", check=False)
    assert proc.returncode != 0 and "predict_input" in proc.stdout + proc.stderr
