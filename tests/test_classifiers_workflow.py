"""The classifier rules in Snakemake: on synthetic feature files (isolated from the other stages with
--allowed-rules), and on the shared finished tiny workflow run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import parse_dry_run, run_snakemake

from au_transfer.classifiers import load_frames, load_model
from au_transfer.classifiers.data import write_synthetic_subject
from au_transfer.layout import Layout

pytestmark = pytest.mark.workflow

SUBJECTS = ["SN001", "SN002", "SN003", "SN004"]
AUS = [12]  # one AU keeps the job count low; au_region -> lower (Table VI)
RULES = ["fit_frame", "fit_lstm", "merge_predictions", "always_present", "metrics", "summary"]
# synthetic features stored under a registered backbone's name (the workflow checks backbone names against the
# registry before any job); --allowed-rules keeps the features rule from ever running
BACKBONE = "mtcnn_onet"
MODELS = [f"{BACKBONE}-face-lda", f"{BACKBONE}-face-svm", f"{BACKBONE}-face-svm_med", f"{BACKBONE}-au_region-lda",
          f"{BACKBONE}-au_region-svm", f"{BACKBONE}-face-lstm"]


def _config(path, svm_c=(0.01, 1.0), median=(f"{BACKBONE}-face-svm",)):
    cfg = {
        "data_root": "no_corpus_needed",
        "data": {"aus": AUS},
        "splits": {"s": {"train": SUBJECTS[:2], "val": SUBJECTS[2:3], "test": SUBJECTS[3:]}},
        "classifiers": {
            "backbones": [BACKBONE],
            "svm": {"C_grid": list(svm_c)},
            "normalise_median": list(median),  # + {BACKBONE}-face-svm_med
            "lstm": {"hidden": 8, "lr": 0.2, "weight_noise_std": 0.01, "inactive_min": 15, "inactive_max": 25,
                     "epochs": 5, "patience": 0, "batch_size": 4, "device": "cpu"},
        },
        "finetune": {"enabled": False},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("clf_wf")
    for i, s in enumerate(SUBJECTS):
        for region in ("face", "lower"):
            write_synthetic_subject(wd / f"results/features/{BACKBONE}/{region}/{s}.h5", wd / f"results/labels/{s}.csv",
                                    s, aus=AUS, n_frames=90, dim=8, n_labelled=85, invalid=[4], seed=i,
                                    region=region, offset=[0.0, 1.0, -1.0, 3.0][i])  # a person's appearance
    cfg = _config(wd / "config.yaml")
    run_snakemake(wd, "--allowed-rules", *RULES, "--printshellcmds", "results/metrics/summary.csv", configfile=cfg)
    return wd, cfg


def test_summary_has_every_model_and_the_baseline(synth_run):
    wd, _ = synth_run
    summary = pd.read_csv(wd / "results/metrics/summary.csv", dtype={"au": str})
    assert list(summary.columns) == ["model", "split", "au", "f1", "accuracy", "n_pos", "n_neg", "n_labelled",
                                     "n_face", "invalid_frames", "f1_sd", "accuracy_sd", "n_seeds", "nan_aus",
                                     "train_corpus", "test_corpus", "train_present", "test_present"]
    assert (summary["n_pos"] + summary["n_neg"] == summary["n_labelled"]).all()  # every labelled test frame
    assert (summary["n_face"] < summary["n_labelled"]).all() and (summary["invalid_frames"] == "absent").all()
    assert summary["nan_aus"].isna().all()  # every AU has its F1: no mean leaves one out
    assert (summary["n_seeds"] == 1).all() and summary["f1_sd"].isna().all()  # default seeds: one run
    assert set(summary["train_corpus"]) == {"disfa"} and set(summary["test_corpus"]) == {"disfa"}
    assert set(summary["train_present"]) == set(summary["test_present"]) == {"intensity >= 2 (B+)"}
    assert set(summary["model"]) == set(MODELS) | {"always_present"}
    for model in MODELS + ["always_present"]:
        rows = summary[summary["model"] == model]
        assert set(rows["au"]) == {"12", "mean"}, model  # one AU: neither mean12 nor mean8
    means = summary[summary["au"] == "mean"].set_index("model")["f1"]
    assert means[f"{BACKBONE}-face-svm"] > means["always_present"]


def test_predictions_cover_every_valid_labelled_frame_and_bundles_predict(synth_run):
    wd, _ = synth_run
    pred = pd.read_csv(wd / f"results/predictions/s/{BACKBONE}-au_region-svm.csv")
    fp = {s: wd / f"results/features/{BACKBONE}/lower/{s}.h5" for s in SUBJECTS}
    lp = {s: wd / f"results/labels/{s}.csv" for s in SUBJECTS}
    te = load_frames(fp, lp, 12, 2, SUBJECTS[3:])
    t = pred[(pred["set"] == "test") & (pred["au"] == 12) & (pred["face"] == 1)]
    np.testing.assert_array_equal(t["frame"].to_numpy(), te.frame)
    bundle = load_model(Layout.of(wd / "results").model_file("s", f"{BACKBONE}-au_region-svm", 12))
    assert bundle["crop_region"] == "lower" and bundle["region"] == "au_region"
    assert bundle["feature_attrs"]["region"] == "lower"
    from au_transfer.classifiers import predict_bundle

    score, _ = predict_bundle(bundle, te.X)
    np.testing.assert_allclose(score, t["score"].to_numpy(), rtol=1e-6, atol=1e-9)


def test_changing_an_svm_parameter_reruns_only_svm_jobs(synth_run, tmp_path):
    wd, _ = synth_run
    cfg = _config(tmp_path / "changed.yaml", svm_c=(0.1, 1.0))
    proc = run_snakemake(wd, "--allowed-rules", *RULES, "-n", "results/metrics/summary.csv", configfile=cfg)
    jobs = parse_dry_run(proc.stdout)
    fits = sorted(j.wildcards["classifier"] for j in jobs if j.rule == "fit_frame")
    assert fits == sorted(["svm"] * (2 * len(AUS)) + ["svm_med"] * len(AUS)), proc.stdout[-3000:]
    assert not [j for j in jobs if j.rule == "fit_lstm"]


def test_median_variant_has_its_own_fits_and_matches_its_bundle(synth_run, tmp_path):
    """classifiers.normalise_median: a _med variant is a model of its own, one fit_frame job per (split, AU); its
    test predictions are the bundle's scores on each recording minus its own median. Listing one more model runs
    only that model's fits (and its tables), removing one reruns no fit."""
    wd, _ = synth_run
    pred = pd.read_csv(wd / f"results/predictions/s/{BACKBONE}-face-svm_med.csv")
    bundle = load_model(Layout.of(wd / "results").model_file("s", f"{BACKBONE}-face-svm_med", 12))
    assert bundle["classifier"] == "svm_med" and bundle["normalise"] == "median"
    from au_transfer.classifiers import predict_bundle
    from au_transfer.classifiers.data import index_frames

    fp = {s: wd / f"results/features/{BACKBONE}/face/{s}.h5" for s in SUBJECTS}
    lp = {s: wd / f"results/labels/{s}.csv" for s in SUBJECTS}
    te = index_frames(fp, lp, 12, 2, SUBJECTS[3:], median=True)
    score, _ = predict_bundle(bundle, te.features(), normalised=True)
    t = pred[(pred["set"] == "test") & (pred["face"] == 1)]
    np.testing.assert_allclose(score, t["score"].to_numpy(), rtol=1e-6, atol=1e-9)
    more = _config(tmp_path / "more.yaml", median=(f"{BACKBONE}-face-svm", f"{BACKBONE}-au_region-lda"))
    jobs = parse_dry_run(run_snakemake(wd, "--allowed-rules", *RULES, "-n", "results/metrics/summary.csv",
                                       configfile=more).stdout)
    fits = [(j.wildcards["region"], j.wildcards["classifier"]) for j in jobs if j.rule in ("fit_frame", "fit_lstm")]
    assert fits == [("au_region", "lda_med")] * len(AUS)
    fewer = _config(tmp_path / "fewer.yaml", median=())
    jobs = parse_dry_run(run_snakemake(wd, "--allowed-rules", *RULES, "-n", "results/metrics/summary.csv",
                                       configfile=fewer).stdout)
    assert not [j for j in jobs if j.rule in ("fit_frame", "fit_lstm")]


@pytest.mark.xdist_group("workflow")
def test_tiny_workflow_metrics(finished_workflow):
    summary = pd.read_csv(finished_workflow / "results/metrics/summary.csv", dtype={"au": str})
    assert "always_present" in set(summary["model"])
    fitted = [m for m in summary["model"].unique() if m.endswith(("-lda", "-svm", "-lstm"))]
    assert fitted, "no classifier models in the tiny run's summary"
    assert summary["f1"].between(0, 1).all() and summary["accuracy"].between(0, 1).all()
