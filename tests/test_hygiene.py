"""Scientific hygiene of the classifier and fine-tuning stages, each rule guarded by a test that would catch a leak.

Fine-tuning tests reuse test_finetune's tiny stand-in backbone and face stores; the workflow-level guard (each
fold's fine-tuned features and models come from that fold's network) is in test_hygiene_workflow.py.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from au_transfer.classifiers import ClassifierDataError, load_frames, run_frame_job
from au_transfer.classifiers.data import check_subject_exclusive, write_synthetic_subject
from au_transfer.evaluation import au_metrics
from au_transfer.faces.store import FaceStore

torch.set_num_threads(1)

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
                           params=SVM if classifier.startswith("svm") else {}, seed=seed, threshold=2,
                           model_out=root / f"{tag}.npz", pred_out=root / f"{tag}.csv", split="h")
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
    test = pred[(pred["set"] == "test") & (pred["face"] == 1)]
    assert len(test) == len(te) == 2 * (130 - 2)  # every valid labelled test frame, unbalanced
    assert test["label"].sum() == te.y.sum() and test["label"].sum() < len(test) / 2
    assert (pred["set"] == "test").sum() == 2 * 130  # and the labelled ones without a face, predicted absent
    # changing test features (even wildly) changes neither the chosen C nor the validation scores
    _shift_features(synth, TEST, -500.0, fdir="f_test")
    other, _ = _fit(synth, "b", fdir="f_test")
    assert other["chosen"] == bundle["chosen"]
    assert other["val_scores"] == bundle["val_scores"]
    np.testing.assert_array_equal(other["estimator"].named_steps["clf"].coef_,
                                  bundle["estimator"].named_steps["clf"].coef_)


def test_median_classifier_normalises_each_test_recording_by_itself(synth):
    """``svm_med`` (person-specific normalisation): a recording's median comes from its own valid frames only.
    Shifting one test recording's features changes neither the model nor any other recording's scores, and its own
    scores only by float16 rounding (its own median absorbs the shift)."""
    b0, p0 = _fit(synth, "a", classifier="svm_med")
    assert b0["classifier"] == "svm_med" and b0["normalise"] == "median"
    _shift_features(synth, TEST[1:], 7.0, fdir="f_one")
    b1, p1 = _fit(synth, "b", fdir="f_one", classifier="svm_med")
    assert b0["chosen"] == b1["chosen"] and b0["val_scores"] == b1["val_scores"]
    np.testing.assert_array_equal(b0["estimator"].named_steps["clf"].coef_, b1["estimator"].named_steps["clf"].coef_)
    other = lambda p: p.loc[(p["subject"] != TEST[1]) & (p["face"] == 1), "score"].to_numpy()  # noqa: E731
    own = lambda p: p.loc[(p["subject"] == TEST[1]) & (p["face"] == 1), "score"].to_numpy()  # noqa: E731
    np.testing.assert_array_equal(other(p0), other(p1))
    np.testing.assert_allclose(own(p0), own(p1), atol=0.05 * np.abs(own(p0)).max())
    plain0, q0 = _fit(synth, "c")  # the guard can fail: without the median the shift moves the scores
    _, q1 = _fit(synth, "d", fdir="f_one")
    assert np.abs(own(q0) - own(q1)).max() > 0.5 * np.abs(own(q0)).max()


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
    from au_transfer.classifiers.jobs import run_lstm_job

    fp, lp = _paths(root, fdir, ldir)
    bundle = run_lstm_job(feature_paths=fp, label_paths=lp, train=TRAIN, val=VAL, test=TEST, au=12,
                          backbone="synthetic", region="face", crop_region="face", params=LSTM_FAST, seed=0,
                          threshold=2, model_out=root / f"{tag}.npz", pred_out=root / f"{tag}.csv", split="h")
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


# ------------------------------------------------------------------------------------------- fine-tuning
FT_TRAIN, FT_VAL, FT_TEST = ["SN001", "SN002"], ["SN003"], ["SN004"]  # the sets of test_finetune.run


class ShiftedStore(FaceStore):
    """The real FaceStore, with the crops of validation subjects inverted and those of test subjects darkened,
    so that statistics over val or test frames differ strongly from those over the training frames."""

    def crops(self, idx, region, out_size):
        c = super().crops(idx, region, out_size)
        if self.subject in FT_VAL:
            return 255 - c
        if self.subject in FT_TEST:
            return c // 8
        return c


class InvertedTestStore(FaceStore):
    """The real FaceStore, with the test subject's crops inverted."""

    def crops(self, idx, region, out_size):
        c = super().crops(idx, region, out_size)
        return 255 - c if self.subject in FT_TEST else c


@pytest.fixture(scope="module")
def ft_data(tmp_path_factory) -> dict:
    """test_finetune's face stores and labels (SN001-SN004), plus label folders with the test subject's and the
    validation subject's AU labels swapped (absent <-> present)."""
    from test_finetune import write_subject

    root = tmp_path_factory.mktemp("ft_hygiene")
    faces, labels = {}, {}
    for i, s in enumerate(FT_TRAIN + FT_VAL + FT_TEST):
        faces[s], labels[s] = write_subject(root, s, 48, seed=i)
    _invert_labels(root, FT_TEST, "labels_test", src="labels")
    _invert_labels(root, FT_VAL, "labels_val", src="labels")
    relabel = {d: {s: root / d / f"{s}.csv" for s in labels} for d in ("labels_test", "labels_val")}
    return {"faces": faces, "labels": labels, "labels_test": relabel["labels_test"],
            "labels_val": relabel["labels_val"]}


def test_finetune_standardize_statistics_come_from_training_frames_only(ft_data, tmp_path):
    """classifier_norm standardize: mean and std of the classifier input over the balanced training frames (with
    the starting network), never over validation or test frames."""
    from test_finetune import CFG, INPUT, create_tiny, run

    from au_transfer import finetune as ft
    from au_transfer.backbones import preprocess

    cfg = {"epochs": 1, "classifier_norm": "standardize"}
    run(ft_data, tmp_path, aus=(12,), cfg=cfg, open_store=ShiftedStore)
    net = ft.load_finetuned(tmp_path / "net.pt", create=create_tiny)[0]
    saved = next(m for m in net.backbone.tail if isinstance(m, ft.Standardize))

    # the classifier input of the starting network (pretrained body, seeded re-initialisation), in eval mode
    start = ft.FinetuneNet(create_tiny("tiny"), 1, "standardize")
    ft.reinit_layers(start, ft.FinetuneConfig.from_mapping({**CFG, **cfg}).reinit, CFG["seed"])
    start.eval()

    def classifier_input(table):
        parts = []
        for s, rows in table.groupby("subject", sort=False)["row"]:
            with ShiftedStore(ft_data["faces"][s]) as store:
                x = preprocess(start.backbone.spec, store.crops(np.sort(rows.to_numpy()), "face", INPUT), "cpu")
            with torch.no_grad():
                parts.append(start.backbone.tail[:-2](start.backbone.features(x)))
        return torch.cat(parts)

    tables = {w: ft.frame_table(ft_data["faces"], ft_data["labels"], subjects, [12], 2)
              for w, subjects in (("train", FT_TRAIN), ("val", FT_VAL), ("test", FT_TEST))}
    train = classifier_input(ft.balance(tables["train"], [12], CFG["seed"]))
    torch.testing.assert_close(saved.mean, train.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(saved.std, train.std(0, unbiased=False).clamp_min(1e-6), rtol=1e-5, atol=1e-5)
    # the test is sensitive: a mean over validation or test frames, or over all of them, would be off by far more
    # than the tolerance above (1e-5 is a few thousandths of a training std here)
    val, test = classifier_input(tables["val"]), classifier_input(tables["test"])
    for other in (val, test, torch.cat([train, val, test])):
        assert ((other.mean(0) - saved.mean) / saved.std).abs().max() > 0.1


def _ft_run(ft_data, out, labels="labels", open_store=None):
    from test_finetune import run

    from au_transfer import finetune as ft

    data = {"faces": ft_data["faces"], "labels": ft_data[labels]}
    kw = {"open_store": open_store} if open_store is not None else {}
    res = run(data, out, aus=(12,), cfg={"epochs": 4, "patience": 10, "augment": {"enabled": False}}, **kw)
    return res, ft.load_bundle(out / "net.pt"), pd.read_csv(out / "pred.csv")


def test_finetune_selection_uses_validation_frames_only(ft_data, tmp_path):
    """Early stopping and the kept weights depend on the validation subject only: changing the test subject's
    labels and images changes neither the history, the best epoch nor the weights; changing the validation
    labels changes the history."""
    from au_transfer import finetune as ft

    base, bundle, pred = _ft_run(ft_data, tmp_path / "base")
    test_changed, bundle_t, pred_t = _ft_run(ft_data, tmp_path / "test", labels="labels_test",
                                             open_store=InvertedTestStore)
    t, tt = pred[pred["set"] == "test"], pred_t[pred_t["set"] == "test"]  # the perturbation reached the job
    assert (t["label"].to_numpy() != tt["label"].to_numpy()).all() and not np.allclose(t["score"], tt["score"])
    assert len(base.history) == 4 and "val_f1" in base.history[0]
    assert test_changed.history == base.history and bundle_t["history"] == bundle["history"]
    assert test_changed.best_epoch == base.best_epoch == bundle_t["best_epoch"]
    assert bundle_t["weights_sha256"] == bundle["weights_sha256"] == ft.state_sha256(bundle["state_dict"])
    pd.testing.assert_frame_equal(pred_t[pred_t["set"] == "val"], pred[pred["set"] == "val"])
    # the validation labels do drive the selection
    val_changed, bundle_v, _ = _ft_run(ft_data, tmp_path / "val", labels="labels_val")
    assert [h["val_loss"] for h in val_changed.history] != [h["val_loss"] for h in base.history]
    assert val_changed.best_epoch != base.best_epoch and bundle_v["weights_sha256"] != bundle["weights_sha256"]


def test_ft_features_refuse_a_network_of_another_split(ft_data, tmp_path):
    """A fine-tuned network has seen its split's training subjects: its features are written for that split
    only (the guard behind each fold's ft_features job reading its own fold's network)."""
    from test_finetune import create_tiny, run

    from au_transfer import finetune as ft

    run(ft_data, tmp_path, aus=(12,), cfg={"epochs": 1})  # split "t"
    model = tmp_path / "net.pt"
    done = []

    def extract(face_path, out_path, *a, **kw):
        done.append(str(out_path))

    def ft_features(split_dir, subjects=("SN003", "SN004"), **kw):
        outs = [tmp_path / "results/ft_features" / split_dir / f"tiny_ft/face/AU12/{s}.h5" for s in subjects]
        ft.extract_ft_features_many(model, ft_data["faces"], outs, subjects=list(subjects), create=create_tiny,
                                    extract=extract, **kw)
        return outs

    assert done == [] and len(ft_features("t")) == len(done) == 2  # its own split: fine
    with pytest.raises(ft.FinetuneError, match=r"net\.pt: the network was fine-tuned on split 't'.*split 'fold2'"):
        ft_features("fold2")  # the split named by the output folder
    with pytest.raises(ft.FinetuneError, match=r"net\.pt: features of split 'fold2' requested.*folder of split 't'"):
        ft_features("t", split="fold2")  # an explicit split that is not the output folder's
    with pytest.raises(ft.FinetuneError, match=r"net\.pt: the network was fine-tuned on split 't'.*split 'fold2'"):
        ft.extract_ft_features_many(model, ft_data["faces"], [tmp_path / "SN003.h5"], subjects=["SN003"],
                                    create=create_tiny, extract=extract, split="fold2")
    with pytest.raises(ft.FinetuneError, match=r"subject\(s\) \['SN005'\] are not in the network's split 't'"):
        ft_features("t", subjects=("SN004", "SN005"))
    with pytest.raises(ft.FinetuneError, match="different splits"):
        ft.extract_ft_features_many(model, ft_data["faces"],
                                    [tmp_path / "results/ft_features" / sp / "tiny_ft/face/AU12/SN003.h5"
                                     for sp in ("t", "u")], subjects=["SN003"], aus=[1, 12], create=create_tiny,
                                    extract=extract)
    assert len(done) == 2  # nothing was extracted by a refused call
