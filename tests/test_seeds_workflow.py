"""Seeds on the tiny workflow: adding a seed to a finished run plans only that seed's jobs (and the summary and
report), and the run gives the stochastic models' mean and standard deviation in the summary and the report."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TEST_CONFIG, copy_workflow, plan, run_snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("workflow")]

SEEDED_RULES = {"finetune_multilabel", "finetune_unpack", "fit_lstm", "merge_predictions", "metrics"}


def seeds_config(tmp_path: Path, seeds: list[int], **sections) -> Path:
    cfg = copy.deepcopy(yaml.safe_load(TEST_CONFIG.read_text()))
    cfg.update(sections, seeds=seeds)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))  # key order kept: params dicts compare in order
    return path


def digests(root: Path) -> dict[str, tuple[str, float]]:
    """Content hash and mtime of every results file, but the summary and the report (which must change)."""
    out = {}
    for p in sorted((root / "results").rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(("results/report/", "results/seeds/", "results/metrics/summary")):
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
    return out


def test_an_added_seed_runs_only_its_own_jobs_and_gives_mean_and_sd(finished_workflow, tmp_path):
    config = seeds_config(tmp_path, [0, 1])
    jobs, _ = plan(finished_workflow, config)
    assert {j.rule for j in jobs} == SEEDED_RULES | {"summary", "paper_report"}, sorted({j.rule for j in jobs})
    for j in jobs:
        if j.rule in SEEDED_RULES:
            assert j.wildcards["seedpart"] == "/seeds/seed1", f"an added seed reruns run 0's {j}"
    merged = sorted(j.wildcards["model"] for j in jobs if j.rule == "merge_predictions")
    assert merged == ["dlib_resnet-face-lstm", "dlib_resnet_ft-au_region-softmax", "dlib_resnet_ft-face-softmax"]
    assert len([j for j in jobs if j.rule == "fit_lstm"]) == 12  # one job per AU of the one LSTM model
    assert len([j for j in jobs if j.rule == "finetune_multilabel"]) == 4  # face + Table VI's 3 crops

    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    before = digests(wd)
    run_snakemake(wd, configfile=config)
    assert digests(wd) == before, "an added seed rewrote run 0's files"

    from au_transfer.classifiers.frame import load_model
    from au_transfer.finetune.bundle import load_bundle
    from au_transfer.layout import Layout

    lay = Layout.of(wd / "results")
    assert load_model(lay.model_file("tiny", "dlib_resnet-face-lstm", 1))["seed"] == 0
    assert load_model(lay.seed_run(1).model_file("tiny", "dlib_resnet-face-lstm", 1))["seed"] == 1
    assert load_bundle(lay.seed_run(1).finetune_net("tiny", "dlib_resnet", "face", 1))["seed"] == 1

    summary = pd.read_csv(lay.summary(), dtype={"au": str})
    mean = summary[summary["au"] == "mean"].set_index("model")
    for m in ("dlib_resnet-face-lstm", "dlib_resnet_ft-face-softmax", "dlib_resnet_ft-au_region-softmax"):
        runs = [pd.read_csv(lay.seed_run(s).metrics("tiny", m), dtype={"au": str}).set_index("au").loc["mean", "f1"]
                for s in (0, 1)]
        assert mean.loc[m, "n_seeds"] == 2
        assert mean.loc[m, "f1"] == pytest.approx(sum(runs) / 2)
        assert mean.loc[m, "f1_sd"] == pytest.approx(abs(runs[0] - runs[1]) / 2 ** 0.5)
        print(f"{m}: mean F1 over seeds 0, 1: {100 * mean.loc[m, 'f1']:.1f} +- {100 * mean.loc[m, 'f1_sd']:.1f} "
              f"(runs {100 * runs[0]:.1f}, {100 * runs[1]:.1f})")
    assert (mean.loc[["dlib_resnet-face-svm", "ens-fe", "always_present"], "n_seeds"] == 1).all()
    assert mean.loc[["dlib_resnet-face-svm", "ens-fe"], "f1_sd"].isna().all()

    head = pd.read_csv(wd / "results" / "report" / "headline.csv").set_index("model")
    assert head.loc["dlib_resnet-face-lstm", "n_seeds"] == 2
    assert head.loc["dlib_resnet-face-lstm", "f1_mean_sd"] == pytest.approx(
        round(100 * mean.loc["dlib_resnet-face-lstm", "f1_sd"], 1))
    assert "mean over the runs" in (wd / "results" / "report" / "index.md").read_text()

    jobs, out = plan(wd, config)
    assert not jobs and "Nothing to be done" in out, [str(j) for j in jobs]


def test_lstm_regressors_are_seeded_too(tmp_path):
    """The intensity side (regressors off in the tiny config): every run of the LSTM regressor is its own job and
    its metrics reach the intensity summary; the SVR is fitted once."""
    regressors = {"enabled": True, "regions": ["face"], "lstm": {"enabled": True, "regions": ["face"]}}
    jobs, _ = plan(tmp_path, seeds_config(tmp_path, [0, 2], regressors=regressors))
    lstmr = [j for j in jobs if j.rule == "fit_lstm_regress"]
    assert sorted({j.wildcards["seedpart"] for j in lstmr}) == ["", "/seeds/seed2"]
    assert len(lstmr) == 2 * 12
    assert {j.wildcards.get("seedpart", "") for j in jobs if j.rule == "fit_regress"} == {""}
    summary = next(j for j in jobs if j.rule == "intensity_summary")
    assert "results/seeds/seed2/intensity/metrics/tiny/dlib_resnet-face-lstmr.csv" in summary.input
    assert "results/intensity/metrics/tiny/dlib_resnet-face-lstmr.csv" in summary.input


def test_per_au_networks_are_seeded_too(tmp_path):
    """The per_au head (the paper's; the tiny config is multilabel): one training job per (AU, run), run 1's under
    results/seeds/seed1/, and only run 0's networks get features."""
    cfg = yaml.safe_load(TEST_CONFIG.read_text())["finetune"] | {"head": "per_au"}
    jobs, _ = plan(tmp_path, seeds_config(tmp_path, [0, 1], finetune=cfg))
    train = [j for j in jobs if j.rule == "finetune"]
    assert len(train) == 2 * 2 * 12  # regions face, au_region x runs 0, 1 x AUs
    assert {j.wildcards["seedpart"] for j in train} == {"", "/seeds/seed1"}
    seeded = [j for j in train if j.wildcards["seedpart"]]
    assert all(o.startswith("results/seeds/seed1/") for j in seeded for o in j.output)
    assert all(not o.startswith("results/seeds/") for j in jobs if j.rule == "ft_features" for o in j.output)
