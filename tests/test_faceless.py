"""Every labelled test frame is scored: frames without a usable face are kept in the test predictions (``face = 0``,
predicted absent / intensity 0) by every model kind, and ``evaluation.invalid_frames`` chooses how the metrics
count them (``absent``, the default, or ``exclude``: the numbers of the frames with a face only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from au_transfer import ensemble, evaluation
from au_transfer.classifiers.data import index_frames, write_synthetic_subject
from au_transfer.classifiers.jobs import run_frame_job, run_lstm_job
from au_transfer.config import ConfigError, schema_defaults
from au_transfer.intensity.jobs import run_regress_job
from au_transfer.intensity.metrics import intensity_metrics
from au_transfer.intensity.tables import ensemble_intensity, merge_intensity
from au_transfer.labels import faceless_frames
from au_transfer.predictions import check_predictions, faceless_rows, prediction_rows
from au_transfer.report import coverage, coverage_note

AUS = [1, 12]
INVALID = {"SN003": [5, 17, 30]}  # 0-based rows of the test subject without a usable face (frames 6, 18, 31)
N_FRAMES, N_LABELLED = 90, 80  # SN003: the label table also lists frames beyond nothing: 80 of 90 labelled


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("faceless")
    feats, labels = {}, {}
    for i, s in enumerate(["SN001", "SN002", "SN003"]):
        feats[s], labels[s] = root / "features" / f"{s}.h5", root / "labels" / f"{s}.csv"
        write_synthetic_subject(feats[s], labels[s], s, aus=AUS, n_frames=N_FRAMES, dim=8, seed=i,
                                invalid=INVALID.get(s, [2]), graded=True,
                                n_labelled=N_LABELLED if s == "SN003" else None)
    # a labelled frame beyond the feature file (the video is shorter than the labels): no face either
    lab = pd.read_csv(labels["SN003"])
    extra = lab.iloc[[0]].assign(frame=N_FRAMES + 5)
    pd.concat([lab, extra]).to_csv(labels["SN003"], index=False)
    return {"features": {k: str(v) for k, v in feats.items()}, "labels": {k: str(v) for k, v in labels.items()},
            "root": root}


def _job_args(synth, tmp_path, au=12):
    return dict(feature_paths=synth["features"], label_paths=synth["labels"], train=["SN001"], val=["SN002"],
                test=["SN003"], au=au, backbone="synthetic", region="face", crop_region="face", seed=0,
                threshold=2, split="t", model_out=tmp_path / "m.joblib", pred_out=tmp_path / "p.csv")


def _labelled_test_frames(synth) -> set[int]:
    return set(pd.read_csv(synth["labels"]["SN003"])["frame"].astype(int))


FACELESS = {6, 18, 31, N_FRAMES + 5}  # invalid rows 5, 17, 30 and the frame beyond the feature file


def test_faceless_frames_are_the_labelled_ones_without_a_valid_row():
    labels = pd.Series([0, 1, 1, 0, 1], index=[1, 2, 3, 4, 9])
    f = faceless_frames("S", np.array([1, 2, 3, 4, 5]), np.array([True, False, True, True, False]), labels)
    assert f["frame"].tolist() == [2, 9] and f["y"].tolist() == [1, 1] and (f["subject"] == "S").all()


def test_index_frames_lists_the_faceless_frames_apart(synth):
    idx = index_frames(synth["features"], synth["labels"], 12, 2, ["SN003"])
    assert set(idx.faceless["frame"]) == FACELESS
    assert not set(idx.frame) & FACELESS  # never trained on, never scored as a frame with a face
    assert idx.counts["SN003"]["labelled_without_face"] == len(FACELESS)


def _check_every_labelled_test_frame(pred: pd.DataFrame, synth) -> pd.DataFrame:
    test = pred[pred["set"] == "test"]
    assert set(test["frame"]) == _labelled_test_frames(synth)  # every labelled test frame, none twice
    assert len(test) == len(_labelled_test_frames(synth))
    assert set(test.loc[test["face"] == 0, "frame"]) == FACELESS
    assert not set(pred.loc[pred["set"] == "val", "frame"].where(pred["subject"] == "SN003")) & FACELESS
    assert (pred.loc[pred["set"] == "val", "face"] == 1).all()  # validation: frames with a face only
    return test[test["face"] == 0]


@pytest.mark.parametrize("classifier", ["svm", "lda_med"])
def test_frame_jobs_write_every_labelled_test_frame(synth, tmp_path, classifier):
    run_frame_job(**_job_args(synth, tmp_path), classifier=classifier, params={"C_grid": [1.0]})
    pred = check_predictions(pd.read_csv(tmp_path / "p.csv"))
    faceless = _check_every_labelled_test_frame(pred, synth)
    assert (faceless["pred"] == 0).all() and faceless["score"].isna().all()


def test_lstm_job_writes_every_labelled_test_frame(synth, tmp_path):
    params = {"hidden": 4, "lr": 0.1, "epochs": 1, "batch_size": 4, "patience": 0, "context_frames": 3,
              "inactive_min": 10, "inactive_max": 20, "weight_noise_std": 0.0, "device": "cpu"}
    run_lstm_job(**_job_args(synth, tmp_path), params=params)
    faceless = _check_every_labelled_test_frame(check_predictions(pd.read_csv(tmp_path / "p.csv")), synth)
    assert (faceless["pred"] == 0).all() and faceless["score"].isna().all()


def test_regress_job_writes_every_test_frame_of_known_intensity(synth, tmp_path):
    run_regress_job(**_job_args(synth, tmp_path), regressor="ridge", params={"alpha_grid": [1.0], "alpha_fallback": 1.0})
    pred = pd.read_csv(tmp_path / "p.csv")
    faceless = _check_every_labelled_test_frame(pred, synth)
    assert (faceless["value"] == 0).all()  # no face: intensity 0
    m_abs = intensity_metrics(pred, aus=[12])
    m_exc = intensity_metrics(pred, aus=[12], invalid_frames="exclude")
    n = len(_labelled_test_frames(synth))
    assert m_abs["n"].iloc[0] == m_abs["n_labelled"].iloc[0] == n
    assert m_exc["n"].iloc[0] == m_exc["n_face"].iloc[0] == n - len(FACELESS) == m_abs["n_face"].iloc[0]
    ref = intensity_metrics(pred[pred["face"] == 1].drop(columns="face"), aus=[12])  # the table of before
    assert m_exc["icc"].iloc[0] == ref["icc"].iloc[0] and m_exc["mae"].iloc[0] == ref["mae"].iloc[0]


def _table(labels, preds, faces, which="test", au=1):
    n = len(labels)
    return prediction_rows(np.array(["S"] * n), np.arange(1, n + 1), au, which, np.where(faces, 0.5, np.nan),
                           np.asarray(preds) * np.asarray(faces), labels, faces)


def test_metrics_score_every_labelled_frame_or_exclude_the_faceless_ones():
    labels = np.array([1, 1, 1, 0, 0, 1, 0, 1])
    preds = np.array([1, 0, 1, 0, 1, 1, 0, 1])
    faces = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    pred = _table(labels, preds, faces)
    absent = evaluation.au_metrics(pred).iloc[0]
    exclude = evaluation.au_metrics(pred, invalid_frames="exclude").iloc[0]
    # absent: the two faceless positives are misses; exclude: the frames with a face, the numbers of before
    assert absent["n_pos"] + absent["n_neg"] == 8 and absent.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 3))
    old = evaluation.au_metrics(pred[pred["face"] == 1].drop(columns="face")).iloc[0]
    assert exclude.f1 == old.f1 and exclude.accuracy == old.accuracy and exclude.n_pos + exclude.n_neg == 5
    for row in (absent, exclude):
        assert (row.n_labelled, row.n_face) == (8, 5)
    assert absent.invalid_frames == "absent" and exclude.invalid_frames == "exclude"
    mean = evaluation.au_metrics(pred).set_index("au").loc["mean"]
    assert (mean.n_labelled, mean.n_face, mean.invalid_frames) == (8, 5, "absent")
    with pytest.raises(evaluation.EvaluationError, match="evaluation.invalid_frames.*'drop'"):
        evaluation.au_metrics(pred, invalid_frames="drop")


def test_summary_sums_coverage_over_folds_and_report_states_it():
    labels, preds, faces = np.array([1, 0, 1, 1]), np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0])
    tables = [evaluation.au_metrics(_table(labels, preds, faces), model="m", split=s) for s in ("fold1", "fold2")]
    summary = evaluation.summarize(tables)
    fm = summary[(summary["split"] == "2fold_mean") & (summary["au"] == "mean")].iloc[0]
    assert (fm.n_labelled, fm.n_face, fm.invalid_frames) == (8, 6, "absent")
    cov = coverage(summary)
    r = cov.set_index("split").loc["fold1"]
    assert (r.labelled, r.with_face, r.without_face, r.invalid_frames) == (4, 3, 1, "absent")
    note = coverage_note(cov, "fold1")
    assert "3 of 4 labelled test frames" in note and "predicted absent" in note


def test_merge_refuses_a_per_au_table_without_the_face_column():
    old = _table(np.array([1, 0]), np.array([1, 0]), np.array([1, 1])).drop(columns="face")
    with pytest.raises(evaluation.EvaluationError, match="no 'face' column.*rerun its fit job"):
        evaluation.merge_predictions([old])


@pytest.mark.parametrize("method", ["majority", "stacked", "weighted"])
def test_ensembles_keep_the_faceless_frames_absent(method):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 40)
    members = {}
    for m in ("a", "b", "c"):  # scores that say "present": a stacked fit would call empty scores present too
        score = label + rng.normal(scale=0.3, size=40)
        val = prediction_rows("V", np.arange(1, 41), 1, "val", score, (score > 0.5).astype(int), label)
        test = pd.concat([prediction_rows("T", [1, 2], 1, "test", [2.0, 2.0], [1, 1], [1, 1]),
                          faceless_rows("T", [3, 4], 1, "test", [1, 0])])
        members[m] = pd.concat([val, test], ignore_index=True)
    out, _ = ensemble.combine(members, name="e", method=method, tie="absent")
    t = out[out["set"] == "test"].set_index("frame")
    assert t.loc[[3, 4], "face"].tolist() == [0, 0] and t.loc[[3, 4], "pred"].tolist() == [0, 0]
    assert t.loc[[3, 4], "score"].isna().all() and (t.loc[[1, 2], "face"] == 1).all()


def test_ensemble_refuses_members_that_disagree_on_a_face():
    a = prediction_rows("T", [1, 2], 1, "test", [0.1, np.nan], [0, 0], [1, 0], [1, 0])
    b = a.assign(face=[1, 1], score=[0.1, 0.2])
    with pytest.raises(ensemble.EnsembleError, match="disagree on whether there is a usable face"):
        ensemble.align({"a": a, "b": b}, name="e")


def test_intensity_ensemble_keeps_faceless_frames_at_zero(tmp_path):
    paths = []
    for k, v in enumerate((1.0, 3.0)):
        df = pd.DataFrame({"subject": "T", "frame": [1, 2, 3], "au": 12, "set": ["val", "test", "test"],
                           "value": [v, v, v], "label": [1.0, 2.0, 4.0], "face": [1, 1, 0]})  # members' say
        paths.append(tmp_path / f"m{k}.csv")
        df.to_csv(paths[-1], index=False)
    merge_intensity([paths[0]], tmp_path / "merged.csv")
    out = ensemble_intensity(paths, ["m0", "m1"], "mean", tmp_path / "e.csv", tmp_path / "e.json", name="e")
    assert out.set_index("frame").loc[3, "value"] == 0.0 and out.set_index("frame").loc[3, "face"] == 0
    assert out.set_index("frame").loc[2, "value"] == 2.0
    old = pd.read_csv(paths[0]).drop(columns="face")
    old.to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(Exception, match="no 'face' column"):
        merge_intensity([tmp_path / "old.csv"], tmp_path / "merged.csv")


def test_invalid_frames_is_a_documented_config_key_defaulting_to_absent():
    assert schema_defaults("evaluation") == {"invalid_frames": "absent"}
    from au_transfer.config import SCHEMA_DIR, validate_section

    with pytest.raises(ConfigError, match="evaluation.invalid_frames"):
        validate_section({"invalid_frames": "drop"}, str(SCHEMA_DIR / "evaluation.schema.yaml"), "evaluation")
