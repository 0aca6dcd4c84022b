"""Repeats of the stochastic models over seeds (config seeds): paths, model lists, the summaries' mean and standard
deviation over the runs, the report's headline. The workflow side: tests/test_seeds_workflow.py."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TEST_CONFIG

from au_transfer import plan
from au_transfer.config import ConfigError, validate_config
from au_transfer.evaluation import METRIC_COLUMNS, NAN_AUS, SEED_COLUMNS, summarize
from au_transfer.intensity.tables import SUMMARY_COLUMNS, write_summary
from au_transfer.layout import SEEDPART_RE, Layout, LayoutError
from au_transfer.report.tables import headline, read_metrics, seeds_note


def tiny_config(**top) -> dict:
    cfg = copy.deepcopy(yaml.safe_load(TEST_CONFIG.read_text()))
    cfg.update(top)
    return validate_config(cfg)


def metrics_table(model: str, split: str, f1: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"model": model, "split": split, "au": au, "f1": v, "accuracy": v / 2, "n_pos": 3,
                          "n_neg": 7, "n_labelled": 10, "n_face": 9, "invalid_frames": "absent"}
                         for au, v in f1.items()], columns=METRIC_COLUMNS)


# ------------------------------------------------------------------------------------------------------- paths
def test_seed_zero_is_the_usual_layout_and_other_seeds_the_same_tree_under_seeds():
    lay = Layout()
    assert lay.seed_run(0) is lay and lay.seed_run("0") is lay
    run = lay.seed_run(2)
    assert run.metrics("tiny", "m-face-lstm") == "results/seeds/seed2/metrics/tiny/m-face-lstm.csv"
    assert run.finetune_net("tiny", "b", "face", 1) == "results/seeds/seed2/finetune/tiny/b-face/AU1.pt"
    for path, seed in ((run.model_file("tiny", "m-face-lstm", 4), 2), (lay.model_file("tiny", "m-face-lstm", 4), 0),
                       (Layout.of("/x/results").seed_run(11).intensity_metrics("s", "m"), 11)):
        assert Layout.seed_of(path) == seed, path
    with pytest.raises(LayoutError, match="seed offset"):
        lay.seed_run(-1)


def test_seed_pattern_names_every_run_with_one_wildcard():
    import re

    pattern = Layout().seed_pattern().metrics("{split}", "{model}")
    assert pattern == "results{seedpart}/metrics/{split}/{model}.csv"
    for seed in (0, 1, 12):
        part = Layout.seed_part(seed)
        assert re.fullmatch(SEEDPART_RE, part) and Layout.seed_of_part(part) == seed
        assert pattern.format(seedpart=part, split="s", model="m") == Layout().seed_run(seed).metrics("s", "m")
    with pytest.raises(LayoutError):
        Layout.seed_of_part("/seed1")


# ------------------------------------------------------------------------------------------------------ config
def test_default_is_one_run_and_only_stochastic_models_are_seeded():
    cfg = tiny_config()
    assert cfg["seeds"] == [0] and plan.seed_offsets(cfg) == [0]
    cfg = tiny_config(seeds=[2, 0, 1])
    assert plan.seed_offsets(cfg) == [0, 2, 1]
    assert plan.seed_offsets(tiny_config(seeds=["0", "3"])) == [0, 3]  # --config 'seeds=[0,3]' gives strings
    seeded = plan.seeded_model_ids(cfg)
    assert seeded and all(m.endswith(("-lstm", "_ft-face-softmax", "_ft-au_region-softmax")) for m in seeded)
    assert {"dlib_resnet-face-lstm", "dlib_resnet_ft-face-softmax"} <= set(seeded)
    assert plan.model_seeds(cfg, "dlib_resnet-face-lstm") == [0, 2, 1]
    assert plan.model_seeds(cfg, "dlib_resnet-face-svm") == [0]
    assert plan.model_seeds(cfg, "ens-fe") == [0]
    assert plan.seeded_intensity_ids(cfg) == []  # regressors off in the tiny config
    reg = tiny_config(seeds=[0, 1], regressors={"enabled": True, "lstm": {"enabled": True}})
    assert plan.seeded_intensity_ids(reg) == ["dlib_resnet-face-lstmr"]


def test_seeds_without_zero_are_refused_before_any_job():
    plan.check_workflow(tiny_config(seeds=[0, 3]))
    with pytest.raises(ConfigError, match=r"config key 'seeds': \[1, 2\] lacks 0"):
        plan.check_workflow(tiny_config(seeds=[1, 2]))


@pytest.mark.parametrize("seeds", [[], [0, 0], [0, -1], ["a"], ["-1"], [1.5]])
def test_seeds_schema_refuses_bad_lists(seeds):
    with pytest.raises(ConfigError, match="config key 'seeds"):
        tiny_config(seeds=seeds)


# ----------------------------------------------------------------------------------------------------- summary
def test_one_run_keeps_every_value_and_says_so():
    tables = [metrics_table("a-face-svm", "tiny", {"1": 0.25, "mean": 0.25}),
              metrics_table("a-face-lstm", "tiny", {"1": 0.5, "mean": 0.5})]
    out = summarize(tables)
    assert list(out.columns) == [*METRIC_COLUMNS, *SEED_COLUMNS, NAN_AUS]
    pd.testing.assert_frame_equal(out[METRIC_COLUMNS], pd.concat(tables, ignore_index=True), check_dtype=False)
    assert (out["n_seeds"] == 1).all() and out["f1_sd"].isna().all()


def test_runs_give_mean_and_sample_sd_per_model_and_au_set():
    tables = [metrics_table("a-face-svm", "tiny", {"1": 0.25, "mean": 0.25}),
              metrics_table("a-face-lstm", "tiny", {"1": 0.5, "mean": 0.5}),
              metrics_table("a-face-lstm", "tiny", {"1": 0.7, "mean": 0.7}),
              metrics_table("a-face-lstm", "tiny", {"1": 0.9, "mean": 0.9})]
    out = summarize(tables, seeds=[0, 0, 1, 2]).set_index(["model", "au"])
    assert out.loc[("a-face-lstm", "mean"), "f1"] == pytest.approx(0.7)
    assert out.loc[("a-face-lstm", "mean"), "f1_sd"] == pytest.approx(np.std([0.5, 0.7, 0.9], ddof=1))
    assert out.loc[("a-face-lstm", "mean"), "accuracy_sd"] == pytest.approx(np.std([0.25, 0.35, 0.45], ddof=1))
    assert out.loc[("a-face-lstm", "mean"), "n_seeds"] == 3
    assert out.loc[("a-face-lstm", "1"), "n_pos"] == 3  # the same test frames in every run: not summed
    assert out.loc[("a-face-svm", "mean"), "n_seeds"] == 1 and np.isnan(out.loc[("a-face-svm", "mean"), "f1_sd"])
    assert len(out) == 4
    with pytest.raises(ValueError, match="3 seeds for 4"):
        summarize(tables, seeds=[0, 1, 2])


def test_fold_means_are_taken_per_run_before_the_spread():
    """The sd of a k-fold mean is the spread of the runs' k-fold means, not of every fold of every run."""
    runs = {0: (0.2, 0.6), 1: (0.4, 0.8)}  # per run: fold1, fold2
    tables, seeds = [], []
    for seed, (f1a, f1b) in runs.items():
        tables += [metrics_table("m-face-lstm", "fold1", {"mean": f1a}), metrics_table("m-face-lstm", "fold2",
                                                                                       {"mean": f1b})]
        seeds += [seed, seed]
    out = summarize(tables, seeds=seeds).set_index("split")
    assert out.loc["2fold_mean", "f1"] == pytest.approx(0.5)
    assert out.loc["2fold_mean", "f1_sd"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert out.loc["2fold_mean", "n_pos"] == 6 and out.loc["2fold_mean", "n_seeds"] == 2


def test_intensity_summary_gives_mean_and_sd_over_runs(tmp_path):
    paths = []
    for i, icc in enumerate((0.2, 0.4)):
        p = tmp_path / f"m{i}.csv"
        pd.DataFrame([{"model": "m-face-lstmr", "split": "tiny", "au": "mean", "icc": icc, "pcc": icc, "mae": 1.0,
                       "mse": 2.0, "n": 9}]).to_csv(p, index=False)
        paths.append(p)
    svr = tmp_path / "svr.csv"
    pd.DataFrame([{"model": "m-face-svr", "split": "tiny", "au": "mean", "icc": 0.3, "pcc": 0.3, "mae": 1.0,
                   "mse": 2.0, "n": 9}]).to_csv(svr, index=False)
    out = write_summary([paths[0], svr, paths[1]], tmp_path / "summary.csv", seeds=[0, 0, 1])
    written = pd.read_csv(tmp_path / "summary.csv")
    assert list(written.columns) == SUMMARY_COLUMNS
    row = out.set_index("model").loc["m-face-lstmr"]
    assert row["icc"] == pytest.approx(0.3) and row["icc_sd"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert row["n_seeds"] == 2 and row["n"] == 9 and row["mae_sd"] == 0
    assert out.set_index("model").loc["m-face-svr", "n_seeds"] == 1


# ------------------------------------------------------------------------------------------------------ report
def test_headline_shows_the_spread_and_the_report_says_what_the_numbers_are(tmp_path):
    tables = [metrics_table("a-face-svm", "tiny", {"1": 0.25, "mean": 0.25}),
              metrics_table("a-face-lstm", "tiny", {"1": 0.5, "mean": 0.5}),
              metrics_table("a-face-lstm", "tiny", {"1": 0.7, "mean": 0.7})]
    summarize(tables, seeds=[0, 0, 1]).to_csv(tmp_path / "summary.csv", index=False)
    head = headline(read_metrics([tmp_path / "summary.csv"])).set_index("model")
    assert head.loc["a-face-lstm", "f1_mean"] == 60.0 and head.loc["a-face-lstm", "n_seeds"] == 2
    assert head.loc["a-face-lstm", "f1_mean_sd"] == pytest.approx(round(100 * np.std([0.5, 0.7], ddof=1), 1))
    assert head.loc["a-face-svm", "n_seeds"] == 1 and np.isnan(head.loc["a-face-svm", "f1_mean_sd"])
    assert "mean over the runs" in seeds_note(head.reset_index())
    one = headline(read_metrics([tmp_path / "summary.csv"]).query("model == 'a-face-svm'"))
    assert "ran once" in seeds_note(one)


def test_per_model_metrics_files_read_as_one_run(tmp_path):
    metrics_table("a-face-svm", "tiny", {"1": 0.25, "mean": 0.25}).to_csv(tmp_path / "m.csv", index=False)
    m = read_metrics([tmp_path / "m.csv"])
    assert (m["n_seeds"] == 1).all() and m["f1_sd"].isna().all()


def test_summary_command_reads_the_summary_and_shows_the_spread(tmp_path):
    from au_transfer.report import summary_text

    (tmp_path / "metrics" / "tiny").mkdir(parents=True)
    metrics_table("a-face-lstm", "tiny", {"1": 0.5, "mean": 0.5}).to_csv(tmp_path / "metrics" / "tiny" /
                                                                         "a-face-lstm.csv", index=False)
    tables = [metrics_table("a-face-lstm", "tiny", {"1": 0.5, "mean": 0.5}),
              metrics_table("a-face-lstm", "tiny", {"1": 0.7, "mean": 0.7})]
    summarize(tables, seeds=[0, 1]).to_csv(tmp_path / "metrics" / "summary.csv", index=False)
    text = summary_text(tmp_path, split="tiny")
    assert "F1 sd" in text and "n_seeds" in text
    assert " 60.0 " in text  # the mean over the runs, not run 0's 50.0 of the per-model file


def test_report_pages_show_the_seed_columns_only_for_a_seeded_run(tmp_path):
    from au_transfer.report import build_report

    one = [metrics_table("a-face-lstm", "tiny", {"1": 0.5, "mean": 0.5})]
    two = one + [metrics_table("a-face-lstm", "tiny", {"1": 0.7, "mean": 0.7})]
    for name, tables, seeds in (("one", one, [0]), ("two", two, [0, 1])):
        summarize(tables, seeds=seeds).to_csv(tmp_path / f"{name}.csv", index=False)
        build_report([tmp_path / f"{name}.csv"], tmp_path / name, corpus="test", formats=("svg",))
        csv = pd.read_csv(tmp_path / name / "headline.csv")
        assert {"n_seeds", "f1_mean_sd"} <= set(csv.columns)  # the CSV's columns never change
        md = (tmp_path / name / "headline.md").read_text()
        assert ("f1_mean_sd" in md) == (name == "two"), md
        assert ("standard deviation over the runs" in (tmp_path / name / "index.md").read_text()) == (name == "two")
