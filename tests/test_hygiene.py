"""Scientific hygiene of the classifier stage, each rule guarded by a test that would catch a leak."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from au_transfer.classifiers import ClassifierDataError, load_frames, run_frame_job
from au_transfer.classifiers.data import check_subject_exclusive, write_synthetic_subject
from au_transfer.evaluation import au_metrics

SUBJECTS = ["SN001", "SN002", "SN003", "SN004", "SN005"]
TRAIN, VAL, TEST = SUBJECTS[:2], SUBJECTS[2:3], SUBJECTS[3:]
SVM = {"C_grid": [0.001, 0.01, 0.1, 1.0], "max_iter": 5000}


@pytest.fixture
def synth(tmp_path):
    for i, s in enumerate(SUBJECTS):
        write_synthetic_subject(tmp_path / "f" / f"{s}.h5", tmp_path / "l" / f"{s}.csv", s, aus=[1, 12],
                                n_frames=140, dim=12, n_labelled=130, invalid=[5, 6], seed=10 + i)
    return tmp_path


def _paths(root, fdir="f", ldir="l"):
    return ({s: str(root / fdir / f"{s}.h5") for s in SUBJECTS}, {s: str(root / ldir / f"{s}.csv") for s in SUBJECTS})


def _fit(root, tag, fdir="f", seed=0, classifier="svm", train=TRAIN, val=VAL, test=TEST):
    fp, lp = _paths(root, fdir)
    bundle = run_frame_job(feature_paths=fp, label_paths=lp, train=train, val=val, test=test, au=12,
                           backbone="synthetic", region="face", crop_region="face", classifier=classifier,
                           params=SVM if classifier == "svm" else {}, seed=seed, threshold=2,
                           model_out=root / f"{tag}.joblib", pred_out=root / f"{tag}.csv", split="h")
    return bundle, pd.read_csv(root / f"{tag}.csv")


def _shift_features(root, subjects, delta, fdir="f_shift"):
    """Copy the feature files, adding ``delta`` to the features of ``subjects`` (an extreme planted value)."""
    shutil.copytree(root / "f", root / fdir)
    for s in subjects:
        with h5py.File(root / fdir / f"{s}.h5", "r+") as fh:
            fh["features"][...] = (fh["features"][()].astype(np.float32) + delta).astype(np.float16)


def test_overlapping_subjects_are_refused(synth):
    with pytest.raises(ClassifierDataError, match=r"SN002.*train and test"):
        _fit(synth, "overlap", train=TRAIN, val=VAL, test=["SN002", "SN004"])
    with pytest.raises(ClassifierDataError, match="subject-exclusive"):
        check_subject_exclusive(["SN001"], ["SN001"], ["SN003"])


def test_scaler_sees_training_frames_only(synth):
    bundle, _ = _fit(synth, "clean")
    _shift_features(synth, VAL + TEST, 1000.0)
    shifted, _ = _fit(synth, "shifted", fdir="f_shift")
    mean_clean = bundle["estimator"].named_steps["scaler"].mean_
    mean_shift = shifted["estimator"].named_steps["scaler"].mean_
    np.testing.assert_array_equal(mean_clean, mean_shift)
    # and it is exactly the mean of the balanced training frames
    fp, lp = _paths(synth)
    tr = load_frames(fp, lp, 12, 2, TRAIN)
    rng = np.random.default_rng(0)
    from au_transfer.classifiers import balance_indices

    idx = balance_indices(tr.y, rng)
    np.testing.assert_allclose(mean_clean, tr.X[idx].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert np.abs(mean_clean).max() < 50  # the +1000 of val/test never reached it


def test_test_frames_are_never_balanced_or_used_for_selection(synth):
    bundle, pred = _fit(synth, "a")
    fp, lp = _paths(synth)
    te = load_frames(fp, lp, 12, 2, TEST)
    test = pred[pred["set"] == "test"]
    assert len(test) == len(te) == 2 * (130 - 2)  # every valid labelled test frame, unbalanced
    assert test["label"].sum() == te.y.sum() and test["label"].sum() < len(test) / 2
    # changing test features (even wildly) changes neither the chosen C nor the validation scores
    _shift_features(synth, TEST, -500.0, fdir="f_test")
    other, _ = _fit(synth, "b", fdir="f_test")
    assert other["chosen"] == bundle["chosen"]
    assert other["val_scores"] == bundle["val_scores"]
    np.testing.assert_array_equal(other["estimator"].named_steps["clf"].coef_,
                                  bundle["estimator"].named_steps["clf"].coef_)


def test_same_seed_same_metrics_different_seed_different_subsets(synth):
    b1, p1 = _fit(synth, "s1", seed=3)
    b2, p2 = _fit(synth, "s2", seed=3)
    pd.testing.assert_frame_equal(au_metrics(p1), au_metrics(p2))
    pd.testing.assert_frame_equal(p1, p2)
    from au_transfer.classifiers.frame import fit_frame_classifier

    fp, lp = _paths(synth)
    tr, va = load_frames(fp, lp, 12, 2, TRAIN), load_frames(fp, lp, 12, 2, VAL)
    i3 = fit_frame_classifier(tr, va, "lda", {}, seed=3)
    i4 = fit_frame_classifier(tr, va, "lda", {}, seed=4)
    assert len(i3["train_index"]) == len(i4["train_index"]) == 2 * tr.y.sum()
    assert not np.array_equal(i3["train_index"], i4["train_index"])
    assert b1["seed"] == 3


def test_lstm_scaler_sees_training_sequences_only():
    from au_transfer.classifiers.lstm import LSTMClassifier

    rng = np.random.default_rng(0)
    X = [rng.standard_normal((20, 4)).astype(np.float32) for _ in range(3)]
    Y = [(rng.random(20) < 0.3).astype(np.float32) for _ in range(3)]
    Xv = [rng.standard_normal((20, 4)).astype(np.float32) + 1000.0]
    est = LSTMClassifier(hidden=4, lr=0.01, epochs=1, batch_size=2, patience=0, seed=0, device="cpu")
    est.fit(X, Y, Xv, [Y[0]])
    np.testing.assert_allclose(est.scaler_.mean_, np.concatenate(X).mean(axis=0), rtol=1e-5, atol=1e-6)


def _invert_labels(root, subjects, ldir, src="l"):
    """Copy the label folder, swapping absent and present (threshold 2) in the AU labels of ``subjects``."""
    shutil.copytree(root / src, root / ldir)
    for s in subjects:
        df = pd.read_csv(root / ldir / f"{s}.csv")
        au_cols = [c for c in df.columns if c.startswith("AU")]
        df[au_cols] = np.where(df[au_cols] >= 2, 0, 3)
        df.to_csv(root / ldir / f"{s}.csv", index=False)


LSTM_FAST = dict(hidden=8, lr=0.2, momentum=0.9, weight_noise_std=0.01, context_frames=3, inactive_min=20,
                 inactive_max=30, epochs=8, batch_size=4, patience=3, device="cpu")


def _fit_lstm(root, tag, fdir="f", ldir="l"):
    from au_transfer.classifiers.lstm import run_lstm_job

    fp, lp = _paths(root, fdir, ldir)
    bundle = run_lstm_job(feature_paths=fp, label_paths=lp, train=TRAIN, val=VAL, test=TEST, au=12,
                          backbone="synthetic", region="face", crop_region="face", params=LSTM_FAST, seed=0,
                          threshold=2, model_out=root / f"{tag}.joblib", pred_out=root / f"{tag}.csv", split="h")
    return bundle, pd.read_csv(root / f"{tag}.csv")


def test_lstm_early_stopping_uses_validation_sequences_only(synth):
    """Perturbed test sequences (features and labels) leave the LSTM, its history and chosen epoch unchanged;
    perturbed validation labels change the selection trace."""
    base, pred = _fit_lstm(synth, "base")
    _shift_features(synth, TEST, -500.0, fdir="f_test")
    _invert_labels(synth, TEST, "l_test")
    other, pred_t = _fit_lstm(synth, "test_changed", fdir="f_test", ldir="l_test")
    # the perturbation reached the job: test labels and scores differ
    t, tt = pred[pred["set"] == "test"], pred_t[pred_t["set"] == "test"]
    assert (t["label"].to_numpy() != tt["label"].to_numpy()).all() and not np.allclose(t["score"], tt["score"])
    est, est_t = base["estimator"], other["estimator"]
    assert est_t.history_ == est.history_ and "val_loss" in est.history_[0]
    assert other["chosen"] == base["chosen"] and other["val_scores"] == base["val_scores"]
    assert est_t.state_.keys() == est.state_.keys()
    for k in est.state_:
        np.testing.assert_array_equal(est_t.state_[k], est.state_[k], err_msg=k)
    pd.testing.assert_frame_equal(pred_t[pred_t["set"] == "val"], pred[pred["set"] == "val"])
    # validation labels do drive the selection
    _invert_labels(synth, VAL, "l_val")
    val_changed, _ = _fit_lstm(synth, "val_changed", ldir="l_val")
    assert [h["val_loss"] for h in val_changed["estimator"].history_] != [h["val_loss"] for h in est.history_]
    assert val_changed["chosen"] != base["chosen"]
