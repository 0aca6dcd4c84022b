"""The report: tables for every model and ensemble, paper figures (skipped with a note when absent), summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from au_transfer import DISFA_AUS, STANDARD_AUS
from au_transfer.report import (
    FIGURES,
    TABLES,
    ReportError,
    build_report,
    headline,
    paper_comparison,
    paper_results,
    read_metrics,
    summary_text,
)

MODELS = {  # model id -> mean level of its per-AU F1
    "dlib_resnet-face-lda": 0.40, "dlib_resnet-face-svm": 0.50, "mtcnn_onet-face-svm": 0.45,
    "mtcnn_onet-face-lda": 0.35, "dlib_resnet-face-lstm": 0.30, "dlib_resnet-au_region-svm": 0.55,
    "cnn_f-face-svm": 0.20, "cnn_f_ft-face-svm": 0.38, "cnn_f_ft-face-softmax": 0.42, "ens-paper1": 0.60,
    "ens-paper2": 0.62, "ens-paper3_stacked": 0.70,
}
ENSEMBLES = {
    "paper1": {"members": ["dlib_resnet-face-svm", "mtcnn_onet-face-svm", "cnn_f-face-svm"], "method": "majority"},
    "paper2": {"members": ["dlib_resnet-face-svm", "mtcnn_onet-face-svm", "cnn_f_ft-face-softmax"]},
    "paper3_stacked": {"members": ["dlib_resnet-face-svm", "dlib_resnet-au_region-svm", "cnn_f_ft-face-softmax"],
                       "method": "stacked"},
}


def metrics_table(model: str, level: float, split: str = "demo", seed: int = 0) -> pd.DataFrame:
    """A metrics table like the classifiers' evaluation writes: per AU, then mean, mean12 and mean8."""
    rng = np.random.default_rng(seed)
    f1 = np.clip(level + rng.normal(0, 0.05, len(DISFA_AUS)), 0, 1)
    acc = np.clip(0.5 + level / 2 + rng.normal(0, 0.02, len(DISFA_AUS)), 0, 1)
    rows = [{"model": model, "split": split, "au": str(a), "f1": f, "accuracy": c, "n_pos": 10, "n_neg": 30}
            for a, f, c in zip(DISFA_AUS, f1, acc, strict=True)]
    std = [i for i, a in enumerate(DISFA_AUS) if a in STANDARD_AUS]
    for label in ("mean", "mean12"):
        rows.append({"model": model, "split": split, "au": label, "f1": f1.mean(), "accuracy": acc.mean(),
                     "n_pos": 120, "n_neg": 360})
    rows.append({"model": model, "split": split, "au": "mean8", "f1": f1[std].mean(), "accuracy": acc[std].mean(),
                 "n_pos": 80, "n_neg": 240})
    return pd.DataFrame(rows)


@pytest.fixture
def metrics_files(tmp_path):
    files = []
    for i, (model, level) in enumerate(MODELS.items()):
        path = tmp_path / "metrics" / "demo" / f"{model}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        metrics_table(model, level, seed=i).to_csv(path, index=False)
        files.append(path)
    return files


def test_headline_is_sorted_and_complete(metrics_files):
    m = read_metrics(metrics_files)
    h = headline(m)
    assert set(h["model"]) == set(MODELS)
    assert h["f1_mean"].is_monotonic_decreasing
    assert h.iloc[0]["model"] == "ens-paper3_stacked"
    expected = 100 * m[(m["model"] == "cnn_f-face-svm") & (m["au"] == "mean")]["f1"].iloc[0]
    assert h.set_index("model").loc["cnn_f-face-svm", "f1_mean"] == pytest.approx(expected, abs=0.05)
    assert h.set_index("model").loc["cnn_f-face-svm", "n_aus"] == len(DISFA_AUS)
    assert h.set_index("model").loc["ens-paper1", "kind"] == "ensemble"


def test_build_report_writes_every_table_and_figure(metrics_files, tmp_path):
    out = tmp_path / "report"
    res = build_report(metrics_files, out, corpus="synthetic demo corpus", ensembles=ENSEMBLES,
                       paper_ensembles=["paper1", "paper2", "paper3_stacked"],
                       paper_models={"ens_fe": "ens-paper1", "fe_svm_vggface": "dlib_resnet-face-svm"})
    for t in TABLES:
        assert (out / f"{t}.csv").stat().st_size > 0 and (out / f"{t}.md").stat().st_size > 0
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out / f"{name}.svg").read_bytes()[:2000]
    f1 = pd.read_csv(out / "f1_per_au.csv")
    assert set(f1["model"]) == set(MODELS)
    assert [f"AU{a}" for a in DISFA_AUS] + ["mean", "mean12", "mean8"] == [
        c for c in f1.columns if c not in ("split", "model")]
    rate = pd.read_csv(out / "rate_per_au.csv")
    assert set(rate["model"]) == set(MODELS)
    html = (out / "report.html").read_text()
    md = (out / "index.md").read_text()
    for model in MODELS:
        assert model in html and model in md
    assert "synthetic" in html
    assert res["notes"] == {}  # every figure has its models here
    comp = pd.read_csv(out / "paper_comparison.csv")
    row = comp.set_index("key").loc["ens_fe"]
    assert row["paper_f1"] == 68.8 and row["our_model"] == "ens-paper1"
    assert row["paper_corpus"] == "Lim et al., DISFA, 12 AUs, 12/6/9 split"
    assert row["our_corpus"] == "synthetic demo corpus"
    assert row["our_f1"] == pytest.approx(res["headline"].set_index("model").loc["ens-paper1", "f1_mean12"])


def test_paper_comparison_only_for_the_same_aus():
    """The paper's numbers average DISFA's 12 AUs: an 8-AU run gets no number beside them, and a note says why."""
    std = metrics_table("dlib_resnet-face-svm", 0.6)
    std = std[std["au"].isin([str(a) for a in STANDARD_AUS])]
    std = pd.concat([std, pd.DataFrame([{"model": "dlib_resnet-face-svm", "split": "demo", "au": label,
                                         "f1": std["f1"].mean(), "accuracy": std["accuracy"].mean(),
                                         "n_pos": 80, "n_neg": 240} for label in ("mean", "mean8")])])
    comp = paper_comparison(std, {"fe_svm_vggface": "dlib_resnet-face-svm"}, "DISFA").set_index("key")
    row = comp.loc["fe_svm_vggface"]
    assert np.isnan(row["our_f1"])
    assert "not compared" in row["note"] and "missing" in row["note"]
    full = metrics_table("dlib_resnet-face-svm", 0.6)
    row = paper_comparison(full, {"fe_svm_vggface": "dlib_resnet-face-svm"}, "DISFA").set_index("key").loc[
        "fe_svm_vggface"]
    expected = 100 * full.set_index("au").loc["mean12", "f1"]
    assert row["our_f1"] == pytest.approx(expected, abs=0.05) and row["paper_aus"] == 12


def test_absent_models_skip_figures_with_a_note(tmp_path):
    path = tmp_path / "m.csv"
    pd.concat([metrics_table("dlib_resnet-face-svm", 0.5), metrics_table("dlib_resnet-face-lda", 0.4)]).to_csv(
        path, index=False)
    res = build_report([path], tmp_path / "r", corpus="DISFA", ensembles={}, paper_ensembles=[])
    skipped = set(res["notes"])
    assert skipped == {"fig5_lstm", "fig6_finetune", "fig7_regions", "fig8_ensemble1", "fig9_ensemble2",
                       "fig10_ensemble3", "ensembles"}
    for name in FIGURES:  # placeholders still exist, so a workflow can declare the files
        assert (tmp_path / "r" / f"{name}.png").is_file()
    assert "no LSTM model" in (tmp_path / "r" / "index.md").read_text()


def test_paper_results_are_the_papers_numbers():
    p = paper_results().set_index("key")["f1"]
    assert p["fe_svm_vggface"] == 60.7 and p["fe_svm_resnet152"] == 58.7 and p["ft_vggfast"] == 65.8
    assert (p["fe_svm_vggfast_fc6"], p["ft_svm_vggfast_fc6"]) == (56.2, 62.9)
    assert p["region_svm_vggface"] == pytest.approx(60.7 + 2.9)
    assert p["region_ft_vggfast"] == 68.5
    assert (p["ens_fe"], p["ens_fe_ft"], p["ens_fe_ft_region"]) == (68.8, 71.1, 74.1)
    assert set(paper_results()["source"]) == {"Lim et al., DISFA, 12 AUs, 12/6/9 split"}


def test_paper_comparison_rejects_unknown_key(metrics_files):
    with pytest.raises(ReportError, match="report.paper_models: unknown paper result key"):
        paper_comparison(read_metrics(metrics_files), {"nope": "x"}, "DISFA")


def test_bad_metrics_file_is_named(tmp_path):
    path = tmp_path / "bad.csv"
    metrics_table("a-face-svm", 0.5).assign(f1=55.0).to_csv(path, index=False)
    with pytest.raises(ReportError, match=r"bad.csv: model a-face-svm AU 1: f1 55.0 is not a fraction"):
        read_metrics([path])
    metrics_table("a-face-svm", 0.5).drop(columns=["accuracy"]).to_csv(path, index=False)
    with pytest.raises(ReportError, match=r"bad.csv: missing column\(s\) \['accuracy'\]"):
        read_metrics([path])


def test_summary_text(metrics_files, tmp_path):
    text = summary_text(tmp_path)
    assert "No report yet" in text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if "ens-paper3_stacked" in line)
    last = next(i for i, line in enumerate(lines) if "cnn_f-face-svm" in line)
    assert first < last
    build_report(metrics_files, tmp_path / "report", corpus="synthetic demo corpus", formats=("png",))
    assert f"Report: {tmp_path / 'report' / 'report.html'}" in summary_text(tmp_path)
    with pytest.raises(ReportError, match="no metrics found"):
        summary_text(tmp_path / "empty")


# ------------------------------------------------------------------------------------------ in the workflow
@pytest.mark.workflow
@pytest.mark.xdist_group("workflow")
def test_workflow_ensembles_are_scored_like_models_and_reported(finished_workflow):
    import json

    import yaml
    from conftest import TEST_CONFIG

    from au_transfer.config import validate_config
    from au_transfer.evaluation import au_metrics

    wd = finished_workflow / "results"
    cfg = validate_config(yaml.safe_load(TEST_CONFIG.read_text()))
    (split,) = cfg["splits"]
    keys = ["subject", "frame", "au", "set"]
    summary = pd.read_csv(wd / "metrics" / "summary.csv", dtype={"au": str})
    for name, spec in cfg["ensembles"].items():
        eid = f"ens-{name}"
        ens = pd.read_csv(wd / "predictions" / split / f"{eid}.csv", dtype={"subject": str})
        member = pd.read_csv(wd / "predictions" / split / f"{spec['members'][0]}.csv", dtype={"subject": str})
        # the same frames as its members, the same labels
        merged = ens.merge(member, on=keys, suffixes=("", "_m"), validate="one_to_one")
        assert len(merged) == len(ens) == len(member)
        assert (merged["label"] == merged["label_m"]).all()
        params = json.loads((wd / "models" / split / eid / "ensemble.json").read_text())
        assert params["members"] == spec["members"] and params["method"] == spec["method"]
        # scored exactly like a model: the metrics file is au_metrics of the predictions
        metrics = pd.read_csv(wd / "metrics" / split / f"{eid}.csv", dtype={"au": str})
        expected = au_metrics(ens, model=eid, split=split, aus=cfg["data"]["aus"])
        np.testing.assert_allclose(metrics["f1"].to_numpy(), expected["f1"].to_numpy())
        assert eid in set(summary["model"])
    # the report lists every model and ensemble of the summary, and the paper's numbers beside ours
    head = pd.read_csv(wd / "report" / "headline.csv")
    assert set(head["model"]) == set(summary.loc[summary["split"] == split, "model"])
    html = (wd / "report" / "report.html").read_text()
    for model in head["model"]:
        assert model in html
    comp = pd.read_csv(wd / "report" / "paper_comparison.csv").set_index("key")
    assert comp.loc["ens_fe", "our_model"] == "ens-fe"
    assert comp.loc["ens_fe", "our_f1"] == pytest.approx(head.set_index("model").loc["ens-fe", "f1_mean12"])  # 12 AUs
    assert comp.loc["ens_fe", "our_corpus"] == "synthetic demo corpus"
    # the demo's split is no standard 3-fold protocol: the state-of-the-art table says why, per protocol
    sota = pd.read_csv(wd / "report" / "sota_comparison.csv").set_index("protocol")
    assert set(sota.index) == {"bp4d_3fold", "disfa_3fold"} and set(sota["who"]) == {"published"}
    assert "not compared: our AUs" in sota.loc["bp4d_3fold", "note"]
    for name in FIGURES:
        assert (wd / "report" / f"{name}.png").stat().st_size > 1000
