"""Hygiene of the intensity regressors, each guard with a test that catches a leak: the scaler and the choice of
C/alpha see training / validation frames only, per-sequence medians see only their own sequence, unknown
intensities are left out, and the stratified sampling keeps every active frame."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from au_transfer.classifiers.data import index_frames, write_synthetic_subject
from au_transfer.classifiers.frame import load_model
from au_transfer.intensity.jobs import run_regress_job
from au_transfer.intensity.linear import sample_indices
from au_transfer.labels import LabelError, read_intensity_table

SUBJECTS = ["SN001", "SN002", "SN003", "SN004", "SN005"]
TRAIN, VAL, TEST = SUBJECTS[:2], SUBJECTS[2:3], SUBJECTS[3:]
SVR = {"C_grid": [0.001, 0.01, 0.1, 1.0], "C_fallback": 0.01, "epsilon": 0.0, "max_iter": 5000}


@pytest.fixture
def synth(tmp_path):
    for i, s in enumerate(SUBJECTS):
        write_synthetic_subject(tmp_path / "f" / f"{s}.h5", tmp_path / "l" / f"{s}.csv", s, aus=[12],
                                n_frames=140, dim=12, n_labelled=130, invalid=[5, 6], seed=20 + i, graded=True,
                                offset=float(i))
    return tmp_path


def _fit(root, tag, regressor="svr", fdir="f", ldir="l"):
    fp = {s: str(root / fdir / f"{s}.h5") for s in SUBJECTS}
    lp = {s: str(root / ldir / f"{s}.csv") for s in SUBJECTS}
    run_regress_job(feature_paths=fp, label_paths=lp, train=TRAIN, val=VAL, test=TEST, au=12, backbone="synthetic",
                    region="face", crop_region="face", regressor=regressor, params=SVR, seed=0, threshold=2,
                    model_out=root / f"{tag}.npz", pred_out=root / f"{tag}.csv", split="h")
    return load_model(root / f"{tag}.npz"), pd.read_csv(root / f"{tag}.csv")


def _shift(root, subjects, delta, fdir, rows=slice(None)):
    """Copy the feature files, adding ``delta`` to ``rows`` of the features of ``subjects``."""
    shutil.copytree(root / "f", root / fdir)
    for s in subjects:
        with h5py.File(root / fdir / f"{s}.h5", "r+") as fh:
            X = fh["features"][()].astype(np.float32)
            X[rows] += delta
            fh["features"][...] = X.astype(np.float16)


@pytest.mark.parametrize("regressor", ["svr", "svr_med"])
def test_scaler_and_choice_never_see_test_frames(synth, regressor):
    b0, p0 = _fit(synth, "a", regressor)
    _shift(synth, TEST, 40.0, "f_test")  # extreme test features
    b1, p1 = _fit(synth, "b", regressor, fdir="f_test")
    for key in ("mean_", "scale_", "coef_"):
        np.testing.assert_array_equal(getattr(b0["estimator"], key), getattr(b1["estimator"], key))
    assert b0["chosen"] == b1["chosen"] and b0["val_scores"] == b1["val_scores"]
    val0, val1 = p0[p0["set"] == "val"], p1[p1["set"] == "val"]
    np.testing.assert_array_equal(val0["value"].to_numpy(), val1["value"].to_numpy())


def test_choice_of_c_uses_validation_labels_only(synth):
    b0, _ = _fit(synth, "a")
    shutil.copytree(synth / "l", synth / "l_test")
    for s in TEST:  # scramble the test intensities
        t = pd.read_csv(synth / "l_test" / f"{s}.csv")
        t["AU12"] = np.random.default_rng(0).permutation(t["AU12"].to_numpy())
        t.to_csv(synth / "l_test" / f"{s}.csv", index=False)
    b1, _ = _fit(synth, "b", ldir="l_test")
    assert b0["chosen"] == b1["chosen"] and b0["val_scores"] == b1["val_scores"]
    np.testing.assert_array_equal(b0["estimator"].coef_, b1["estimator"].coef_)
    shutil.copytree(synth / "l", synth / "l_val")
    t = pd.read_csv(synth / "l_val" / f"{VAL[0]}.csv")  # the guard can fail: validation labels do count
    t["AU12"] = np.random.default_rng(0).permutation(t["AU12"].to_numpy())
    t.to_csv(synth / "l_val" / f"{VAL[0]}.csv", index=False)
    b2, _ = _fit(synth, "c", ldir="l_val")
    assert b2["val_scores"] != b0["val_scores"]


def test_medians_see_only_their_own_subject(synth):
    """With two test subjects, shifting one's features leaves the other's normalised predictions unchanged (its
    median came from itself, never from the set), and the model (fitted on training medians) unchanged."""
    b0, p0 = _fit(synth, "a", "svr_med")
    _shift(synth, TEST[1:], 9.0, "f_one")
    b1, p1 = _fit(synth, "b", "svr_med", fdir="f_one")
    np.testing.assert_array_equal(b0["estimator"].coef_, b1["estimator"].coef_)
    keep = lambda p: p[p["subject"] != TEST[1]]  # noqa: E731
    np.testing.assert_array_equal(keep(p0)["value"].to_numpy(), keep(p1)["value"].to_numpy())


def test_medians_see_only_their_own_sequence(synth):
    """A subject with two sequences (label-table column ``sequence``): shifting the second sequence's features
    changes nothing in the first's normalised features."""
    s = TEST[0]
    t = pd.read_csv(synth / "l" / f"{s}.csv")
    t.insert(1, "sequence", np.where(t["frame"] <= 70, "T1", "T2"))
    t.to_csv(synth / "l" / f"{s}.csv", index=False)
    fp, lp = {s: synth / "f" / f"{s}.h5"}, {s: synth / "l" / f"{s}.csv"}
    a = index_frames(fp, lp, 12, 2, [s], intensity=True, median=True)
    assert set(a.medians) == {(s, "T1"), (s, "T2")}
    _shift(synth, [s], 5.0, "f_seq", rows=slice(70, None))  # frames 71.. = sequence T2
    b = index_frames({s: synth / "f_seq" / f"{s}.h5"}, lp, 12, 2, [s], intensity=True, median=True)
    first = np.flatnonzero(a.sequence == "T1")
    np.testing.assert_array_equal(a.features(first), b.features(first))
    second = np.flatnonzero(a.sequence == "T2")  # each sequence is normalised by itself: the shift is removed
    np.testing.assert_allclose(a.features(second), b.features(second), atol=0.05)


def test_unknown_intensities_are_left_out(synth):
    s = SUBJECTS[0]
    t = pd.read_csv(synth / "l" / f"{s}.csv").astype({"AU12": object})
    t.loc[[10, 11], "AU12"] = ""
    t.to_csv(synth / "l" / f"{s}.csv", index=False)
    idx = index_frames({s: synth / "f" / f"{s}.h5"}, {s: synth / "l" / f"{s}.csv"}, 12, 2, [s], intensity=True)
    assert not np.isin([11, 12], idx.frame).any() and np.isin([10, 13], idx.frame).all()
    assert np.isfinite(idx.y).all() and idx.y.dtype == np.float32
    t.loc[12, "AU12"] = "x"
    t.to_csv(synth / "l" / f"{s}.csv", index=False)
    with pytest.raises(LabelError, match=r"frame 13: AU12 intensity 'x' is not empty or a number in 0..5 \(line 14\)"):
        read_intensity_table(synth / "l" / f"{s}.csv", [12], subject=s)


def test_stratified_sampling_caps_level_zero_and_keeps_every_active_frame():
    y = np.array([0] * 100 + [1] * 5 + [2] * 12 + [3] * 8 + [5] * 2, float)
    idx = sample_indices(y, np.random.default_rng(0))
    kept = y[idx]
    assert (kept == 0).sum() == 12  # capped at the most frequent non-zero level
    for lv in (1, 2, 3, 5):
        assert (kept == lv).sum() == (y == lv).sum()
    assert np.all(np.diff(idx) > 0)
    assert len(sample_indices(y, np.random.default_rng(0), "all")) == len(y)
