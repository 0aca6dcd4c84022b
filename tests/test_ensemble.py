"""Ensembles: majority vote and its tie rule, weighted / stacked fitted on validation rows only, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from au_transfer.config import ConfigError
from au_transfer.ensemble import (
    EnsembleError,
    align,
    apply_ensemble,
    check_ensembles,
    combine,
    fit_ensemble,
    load_params,
    majority_vote,
    read_predictions,
    run_ensemble,
)


def table(preds, scores=None, labels=None, sets=None, au=1, subject="SN001"):
    """A hand-made prediction table, one row per frame."""
    n = len(preds)
    return pd.DataFrame({
        "subject": subject, "frame": np.arange(1, n + 1), "au": au,
        "set": sets if sets is not None else ["test"] * n,
        "score": scores if scores is not None else [1.0 if p else -1.0 for p in preds],
        "pred": preds, "label": labels if labels is not None else [0] * n,
    })


def test_majority_vote_three_members():
    a = table([1, 1, 0, 0, 1])
    b = table([1, 0, 1, 0, 0])
    c = table([0, 1, 1, 0, 0])
    out = majority_vote([a, b, c])
    assert out["pred"].tolist() == [1, 1, 1, 0, 0]
    assert out["score"].round(3).tolist() == [0.667, 0.667, 0.667, 0.0, 0.333]
    assert list(out.columns) == ["subject", "frame", "au", "set", "score", "pred", "label", "face"]


@pytest.mark.parametrize("tie, expected", [("absent", [1, 0, 0, 0]), ("present", [1, 1, 1, 0])])
def test_tie_rule_absent_present(tie, expected):
    a = table([1, 1, 0, 0])
    b = table([1, 0, 1, 0])
    assert majority_vote([a, b], tie=tie)["pred"].tolist() == expected


def test_tie_rule_score_uses_calibrated_scores():
    # validation rows calibrate each member (overlapping classes); a's scores are on a 10x larger scale than b's
    sets = ["val"] * 6 + ["test"] * 2
    labels = [1, 1, 1, 0, 0, 0, 0, 0]
    a = table([1, 1, 0, 1, 0, 0, 1, 1], scores=[20, 10, -5, 5, -10, -30, 25, 0.5], labels=labels, sets=sets)
    b = table([1, 1, 0, 1, 0, 0, 0, 0], scores=[2, 1, -0.5, 0.5, -1, -3, -0.1, -2.5], labels=labels, sets=sets)
    out = majority_vote({"a": a, "b": b}, tie="score")
    # frame 7: a clearly present (25 on a scale of 20), b barely absent (-0.1 on a scale of 2) -> present
    # frame 8: a barely present (0.5 of 20), b clearly absent (-2.5 of 2) -> absent
    assert out["pred"].tolist()[6:] == [1, 0]
    assert majority_vote({"a": a, "b": b}, tie="absent")["pred"].tolist()[6:] == [0, 0]
    assert majority_vote({"a": a, "b": b}, tie="present")["pred"].tolist()[6:] == [1, 1]


def test_missing_frame_in_member_is_an_error():
    a = table([1, 0, 1])
    b = table([1, 0, 1]).iloc[:2]
    with pytest.raises(EnsembleError, match=r"member b has no prediction for subject SN001 frame 3 AU1"):
        align({"a": a, "b": b}, name="paper1")


def test_label_disagreement_is_an_error():
    a = table([1, 0], labels=[1, 0])
    b = table([1, 0], labels=[0, 0])
    with pytest.raises(EnsembleError, match="disagree on the label of subject SN001 frame 1"):
        align({"a": a, "b": b})


def test_bad_prediction_values_are_named(tmp_path):
    bad = table([1, 2])
    path = tmp_path / "m.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(EnsembleError, match=r"m.csv: subject SN001 frame 2 AU1: pred=2 is not 0/1"):
        read_predictions(path)
    table([1, 0]).drop(columns=["label"]).to_csv(path, index=False)
    with pytest.raises(EnsembleError, match=r"missing column\(s\) \['label'\]"):
        read_predictions(path)


def test_member_not_produced_is_a_config_error():
    ens = {"paper1": {"members": ["a-face-svm", "b-face-svm"]}}
    check_ensembles(ens, ["a-face-svm", "b-face-svm", "c-face-lda"])
    with pytest.raises(ConfigError, match=r"ensembles.paper1: member 'b-face-svm' is not a model"):
        check_ensembles(ens, ["a-face-svm"])


def _random_members(rng, n_val=60, n_test=40, m=3, aus=(1, 2)):
    """Members whose scores are noisy copies of the label, on different scales."""
    frames = []
    for au in aus:
        label = (rng.random(n_val + n_test) < 0.4).astype(int)
        sets = ["val"] * n_val + ["test"] * n_test
        frames.append((au, label, sets))
    members = {}
    for j in range(m):
        parts = []
        for au, label, sets in frames:
            score = (label - 0.5) * (1 + j) + rng.normal(0, 0.6 + 0.5 * j, len(label))
            parts.append(table((score > 0).astype(int), scores=score * (j + 1) * 3, labels=label, sets=sets, au=au))
        members[f"m{j}"] = pd.concat(parts, ignore_index=True)
    return members


@pytest.mark.parametrize("method", ["weighted", "stacked", "majority"])
def test_fitted_on_validation_rows_only(method):
    rng = np.random.default_rng(0)
    members = _random_members(rng)
    _, params = combine(members, name="e", method=method, tie="score")
    # scramble every test row of every member (scores, votes and labels): the fitted parameters must not move
    changed = {}
    for m, df in members.items():
        df = df.copy()
        test = df["set"] == "test"
        df.loc[test, "score"] = rng.normal(0, 100, test.sum())
        df.loc[test, "pred"] = rng.integers(0, 2, test.sum())
        df.loc[test, "label"] = 1 - df.loc[test, "label"]
        changed[m] = df
    # labels must stay consistent across members: flip them identically
    _, params2 = combine(changed, name="e", method=method, tie="score")
    assert params2 == params
    # ...whereas changing validation rows does change them
    val_changed = {m: df.assign(score=np.where(df["set"] == "val", df["score"] * -1, df["score"]),
                                pred=np.where(df["set"] == "val", 1 - df["pred"], df["pred"]))
                   for m, df in members.items()}
    _, params3 = combine(val_changed, name="e", method=method, tie="score")
    assert params3 != params


def test_weighted_follows_the_best_member():
    # member "good" is perfect on val, the two others are wrong on val: weights must let "good" outvote them
    sets = ["val"] * 4 + ["test"] * 2
    labels = [1, 0, 1, 0, 1, 0]
    good = table([1, 0, 1, 0, 1, 0], labels=labels, sets=sets)
    bad1 = table([0, 1, 0, 1, 0, 1], labels=labels, sets=sets)
    bad2 = table([0, 1, 0, 1, 0, 1], labels=labels, sets=sets)
    members = {"good": good, "bad1": bad1, "bad2": bad2}
    out, params = combine(members, name="w", method="weighted")
    assert params["aus"]["1"]["weights"] == {"good": 1.0, "bad1": 0.0, "bad2": 0.0}
    assert out["pred"].tolist() == [1, 0, 1, 0, 1, 0]
    assert majority_vote(members)["pred"].tolist() == [0, 1, 0, 1, 0, 1]


def test_stacked_beats_chance_and_probabilities(tmp_path):
    rng = np.random.default_rng(1)
    members = _random_members(rng, n_val=200, n_test=200)
    out, params = combine(members, name="s", method="stacked")
    assert set(params["aus"]) == {"1", "2"}
    assert out["score"].between(0, 1).all()
    test = out[out["set"] == "test"]
    assert (test["pred"] == test["label"]).mean() > 0.75
    # the fitted params reproduce the same predictions from the saved JSON
    files = {}
    for m, df in members.items():
        files[m] = tmp_path / f"{m}.csv"
        df.to_csv(files[m], index=False)
    run_ensemble(files, tmp_path / "ens-s.csv", tmp_path / "ens-s.json", name="s", method="stacked")
    saved = load_params(tmp_path / "ens-s.json")
    again = apply_ensemble(saved, align(members, name="s"))
    pd.testing.assert_frame_equal(again, out)
    written = pd.read_csv(tmp_path / "ens-s.csv", dtype={"subject": str})
    assert written["pred"].tolist() == out["pred"].tolist()


def test_stacked_single_class_validation_falls_back_to_majority():
    sets = ["val"] * 3 + ["test"] * 3
    labels = [0, 0, 0, 1, 0, 1]
    a = table([1, 0, 0, 1, 0, 1], labels=labels, sets=sets)
    b = table([0, 0, 0, 1, 1, 0], labels=labels, sets=sets)
    c = table([0, 0, 1, 1, 0, 1], labels=labels, sets=sets)
    out, params = combine({"a": a, "b": b, "c": c}, name="s", method="stacked")
    assert params["aus"]["1"]["stack"] is None
    assert out["pred"].tolist() == majority_vote([a, b, c])["pred"].tolist()


def test_fit_rejects_unknown_method():
    a = table([1, 0])
    with pytest.raises(ConfigError, match="ensembles.x.method"):
        fit_ensemble(align([a, a]), name="x", method="vote")


@pytest.mark.parametrize("method", ["majority", "weighted", "stacked"])
def test_member_with_skipped_au_empty_scores(method, tmp_path):
    # the classifiers write an empty score and pred 0 for an AU a model skipped; it votes absent, never crashes
    rng = np.random.default_rng(2)
    members = _random_members(rng, n_val=80, n_test=40)
    skipped = members["m2"].copy()
    skipped.loc[skipped["au"] == 2, ["score", "pred"]] = [np.nan, 0]
    path = tmp_path / "m2.csv"
    skipped.to_csv(path, index=False)
    members["m2"] = read_predictions(path)
    assert members["m2"]["score"].isna().sum() == 120
    out, _ = combine(members, name="k", method=method, tie="score")
    assert out["score"].notna().all()
    assert out["pred"].isin([0, 1]).all()
    test = out[(out["set"] == "test") & (out["au"] == 1)]
    assert (test["pred"] == test["label"]).mean() > 0.6
