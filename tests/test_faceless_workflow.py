"""The tiny workflow run scores every labelled test frame: every model's test predictions (classifiers, LSTM,
fine-tuned networks, ensembles, the baseline) hold each labelled test frame once, a frame without a usable face
marked ``face = 0`` and predicted absent; the metrics, summary and report carry the coverage; and
``evaluation.invalid_frames: exclude`` gives the numbers of the frames with a face only (those of before)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml
from conftest import TEST_CONFIG, copy_workflow, run_snakemake

from au_transfer.evaluation import au_metrics
from au_transfer.faces.store import FaceStore
from au_transfer.labels import read_label_table

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("workflow")]

CFG = yaml.safe_load(TEST_CONFIG.read_text())
SPLIT = "tiny"
TEST = CFG["splits"][SPLIT]["test"]
AUS = CFG["data"]["aus"]


def _expected(wd) -> pd.DataFrame:
    """subject, frame, au, label, face of every labelled test frame, from the label tables and face stores."""
    rows = []
    for s in TEST:
        labels = read_label_table(wd / f"results/labels/{s}.csv", AUS, 2, subject=s)
        with FaceStore(wd / f"results/faces/{s}.h5") as store:
            valid = set(store.frames[store.valid].astype(int).tolist())
        for au in AUS:
            known = labels[labels[f"AU{au}"] >= 0]
            rows.append(pd.DataFrame({"subject": s, "frame": known["frame"].astype(int), "au": au,
                                      "label": known[f"AU{au}"].astype(int),
                                      "face": known["frame"].isin(valid).astype(int)}))
    return pd.concat(rows, ignore_index=True).sort_values(["subject", "frame", "au"]).reset_index(drop=True)


def _test_rows(path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"subject": str})
    return df[df["set"] == "test"].sort_values(["subject", "frame", "au"]).reset_index(drop=True)


def test_every_models_test_predictions_hold_every_labelled_test_frame(finished_workflow):
    wd = finished_workflow
    want = _expected(wd)
    assert (want["face"] == 0).any(), "the tiny test subject has no frame without a usable face: nothing is tested"
    files = sorted((wd / "results/predictions" / SPLIT).glob("*.csv"))
    kinds = {"lda": "-lda", "svm": "-svm", "lstm": "-lstm", "finetuned": "_ft-", "ensemble": "ens-",
             "baseline": "always_present"}
    for kind, mark in kinds.items():
        assert any(mark in f.stem for f in files), f"no {kind} predictions in the tiny run"
    for f in files:
        got = _test_rows(f)
        pd.testing.assert_frame_equal(got[["subject", "frame", "au", "label", "face"]], want, check_dtype=False,
                                      obj=f.name)
        faceless = got[got["face"] == 0]
        if f.stem != "always_present":  # the baseline predicts present everywhere: it needs no face
            assert (faceless["pred"] == 0).all() and faceless["score"].isna().all(), f.name
        val = pd.read_csv(f)
        assert (val.loc[val["set"] == "val", "face"] == 1).all(), f"{f.name}: a validation frame without a face"


def test_metrics_summary_and_report_show_the_coverage(finished_workflow):
    wd = finished_workflow
    want = _expected(wd)
    n_lab, n_face = want.groupby("au").size(), want[want["face"] == 1].groupby("au").size()
    summary = pd.read_csv(wd / "results/metrics/summary.csv", dtype={"au": str})
    per_au = summary[(summary["split"] == SPLIT) & summary["au"].str.isdigit()]
    assert (per_au["invalid_frames"] == "absent").all()
    for r in per_au.itertuples():
        assert (r.n_labelled, r.n_face) == (n_lab[int(r.au)], n_face[int(r.au)]), (r.model, r.au)
        assert r.n_pos + r.n_neg == r.n_labelled  # absent: every labelled test frame is scored
    cov = pd.read_csv(wd / "results/report/coverage.csv").set_index("split").loc[SPLIT]
    assert (cov.labelled, cov.with_face, cov.invalid_frames) == (len(want), int(want["face"].sum()), "absent")
    index = (wd / "results/report/index.md").read_text()
    assert f"{int(want['face'].sum())} of {len(want)} labelled test frames x AUs" in index
    assert "evaluation.invalid_frames: absent" in index


def test_exclude_gives_the_numbers_of_the_frames_with_a_face(finished_workflow, tmp_path):
    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    cfg = copy.deepcopy(CFG)
    cfg["evaluation"] = {"invalid_frames": "exclude"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_snakemake(wd, "results/metrics/summary.csv", "--allowed-rules", "metrics", "summary", configfile=path)
    before = pd.read_csv(finished_workflow / "results/metrics/summary.csv", dtype={"au": str})
    after = pd.read_csv(wd / "results/metrics/summary.csv", dtype={"au": str})
    assert (after["invalid_frames"] == "exclude").all()
    changed = 0
    for f in sorted((wd / "results/predictions" / SPLIT).glob("*.csv")):
        pred = pd.read_csv(f, dtype={"subject": str})
        old = au_metrics(pred[pred["face"] == 1].drop(columns="face"), aus=AUS)  # a table of before: faces only
        new = after[(after["model"] == f.stem) & (after["split"] == SPLIT)].set_index("au")
        absent = before[(before["model"] == f.stem) & (before["split"] == SPLIT)].set_index("au")
        for r in old.itertuples():
            assert new.loc[r.au, "f1"] == pytest.approx(r.f1) and new.loc[r.au, "accuracy"] == pytest.approx(
                r.accuracy), (f.stem, r.au)
            assert new.loc[r.au, "n_pos"] + new.loc[r.au, "n_neg"] == new.loc[r.au, "n_face"]
            changed += (absent.loc[r.au, "f1"] != pytest.approx(r.f1)
                        or absent.loc[r.au, "accuracy"] != pytest.approx(r.accuracy))
    assert changed, "no number changed between absent and exclude: the faceless frames are not scored"
