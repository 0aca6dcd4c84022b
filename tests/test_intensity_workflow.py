"""The intensity rules in Snakemake, on synthetic feature files (isolated from the other stages with
--allowed-rules): regressors, their ensembles, metrics and summary; partial reruns after an option change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import parse_dry_run, run_snakemake

from au_transfer.classifiers.data import index_frames, write_synthetic_subject
from au_transfer.layout import Layout
from au_transfer.models import load_au_model

pytestmark = pytest.mark.workflow

SUBJECTS = ["SN001", "SN002", "SN003", "SN004"]
AUS = [12]  # au_region -> lower (Table VI)
RULES = ["fit_regress", "fit_lstm_regress", "merge_intensity", "intensity_ensemble", "intensity_metrics", "intensity_summary"]
BACKBONE = "mtcnn_onet"  # synthetic features under a registered backbone's name (checked before any job)
REGRESSORS = [f"{BACKBONE}-{r}-{m}" for r in ("face", "au_region") for m in ("svr", "svr_med", "ridge", "ridge_med")]
REGRESSORS += [f"{BACKBONE}-face-lstmr"]
TARGET = "results/intensity/summary.csv"


def _config(path, svr_c=(0.01, 1.0), svm_c=(0.01, 1.0)):
    cfg = {
        "data_root": "no_corpus_needed",
        "data": {"aus": AUS},
        "splits": {"s": {"train": SUBJECTS[:2], "val": SUBJECTS[2:3], "test": SUBJECTS[3:]}},
        "classifiers": {"backbones": [BACKBONE], "svm": {"C_grid": list(svm_c)},
                        "lstm": {"enabled": False, "hidden": 8, "lr": 0.2, "weight_noise_std": 0.01,
                                 "inactive_min": 15, "inactive_max": 25, "epochs": 15, "patience": 0,
                                 "batch_size": 4, "device": "cpu"}},
        "regressors": {
            "enabled": True, "regions": ["face", "au_region"], "models": ["svr", "ridge"],
            "normalise": ["none", "median"], "svr": {"C_grid": list(svr_c)}, "lstm": {"enabled": True},
            "ensembles": {"avg": {"members": [f"{BACKBONE}-face-svr_med", f"{BACKBONE}-face-ridge_med"]},
                          "wtd": {"members": [f"{BACKBONE}-face-svr", f"{BACKBONE}-face-ridge_med"],
                                  "method": "weighted"}},
        },
        "finetune": {"enabled": False},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("int_wf")
    for i, s in enumerate(SUBJECTS):
        for region in ("face", "lower"):  # every subject has its own appearance offset (what medians remove)
            write_synthetic_subject(wd / f"results/features/{BACKBONE}/{region}/{s}.h5", wd / f"results/labels/{s}.csv",
                                    s, aus=AUS, n_frames=90, dim=8, n_labelled=85, invalid=[4], seed=i,
                                    region=region, graded=True, offset=[0.0, 1.0, -1.0, 3.0][i])
    cfg = _config(wd / "config.yaml")
    run_snakemake(wd, TARGET, "--allowed-rules", *RULES, configfile=cfg)
    return wd, cfg


def test_summary_has_every_regressor_and_ensemble_with_positive_icc(synth_run):
    wd, _ = synth_run
    summary = pd.read_csv(wd / TARGET, dtype={"au": str})
    assert list(summary.columns) == ["model", "split", "au", "icc", "pcc", "mae", "mse", "n", "n_labelled", "n_face",
                                     "invalid_frames", "icc_sd", "pcc_sd", "mae_sd", "mse_sd", "n_seeds"]
    assert (summary["n"] == summary["n_labelled"]).all() and (summary["n_face"] < summary["n_labelled"]).all()
    assert set(summary["model"]) == set(REGRESSORS) | {"ens-avg", "ens-wtd"}
    means = summary[summary["au"] == "mean"].set_index("model")
    assert (means["icc"] > 0).all(), means  # above the constant-prediction baseline (ICC 0)
    # every subject has its own offset: the median-normalised regressors agree better with the coded intensities
    for m in ("svr", "ridge"):
        assert means.loc[f"{BACKBONE}-face-{m}_med", "icc"] > means.loc[f"{BACKBONE}-face-{m}", "icc"]


def test_predictions_cover_every_valid_known_frame_and_bundles_score_the_same(synth_run):
    wd, _ = synth_run
    model = f"{BACKBONE}-au_region-svr"
    pred = pd.read_csv(wd / f"results/intensity/predictions/s/{model}.csv")
    fp = {s: wd / f"results/features/{BACKBONE}/lower/{s}.h5" for s in SUBJECTS}
    lp = {s: wd / f"results/labels/{s}.csv" for s in SUBJECTS}
    te = index_frames(fp, lp, 12, 2, SUBJECTS[3:], intensity=True)
    t = pred[(pred["set"] == "test") & (pred["face"] == 1)]
    np.testing.assert_array_equal(t["frame"].to_numpy(), te.frame)
    np.testing.assert_array_equal(t["label"].to_numpy(), te.y)
    faceless = pred[(pred["set"] == "test") & (pred["face"] == 0) & (pred["au"] == 12)]
    assert set(faceless["frame"]) == set(te.faceless["frame"]) and (faceless["value"] == 0).all()
    m = load_au_model(Layout.of(wd / "results").model_file("s", model, 12), model, 12)
    assert m.bundle["crop_region"] == "lower" and m.bundle["selection"] == "validation_icc"
    value, pred01 = m.score(te.features())
    np.testing.assert_allclose(value, t["value"].to_numpy(), rtol=1e-6, atol=1e-9)
    assert value.min() >= 0 and value.max() <= 5
    np.testing.assert_array_equal(pred01, value >= 2)
    params = yaml.safe_load((wd / "results/intensity/ensembles/s/ens-wtd.json").read_text())
    assert params["method"] == "weighted" and len(params["weights"]["12"]) == 2


def test_changing_an_svr_option_reruns_only_svr_fits(synth_run, tmp_path):
    wd, _ = synth_run
    cfg = _config(tmp_path / "changed.yaml", svr_c=(0.1, 1.0))
    proc = run_snakemake(wd, TARGET, "-n", "--allowed-rules", *RULES, configfile=cfg)
    jobs = parse_dry_run(proc.stdout)
    fits = sorted(f"{j.wildcards['region']}-{j.wildcards['regressor']}" for j in jobs if j.rule == "fit_regress")
    assert fits == sorted(f"{r}-{m}" for r in ("face", "au_region") for m in ("svr", "svr_med")), proc.stdout[-3000:]


def test_changing_a_classifier_option_reruns_no_regressor(synth_run, tmp_path):
    wd, _ = synth_run
    cfg = _config(tmp_path / "changed.yaml", svm_c=(0.1, 1.0))
    proc = run_snakemake(wd, TARGET, "-n", "--allowed-rules", *RULES, configfile=cfg)
    assert not parse_dry_run(proc.stdout), proc.stdout[-3000:]
