"""Frame classifiers (LDA, linear SVM): data loading, balancing, fitting, bundles and predictions."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from au_transfer import persist
from au_transfer.classifiers import (
    ClassifierDataError,
    balance_indices,
    load_frames,
    load_model,
    make_estimator,
    predict_bundle,
    run_frame_job,
)
from au_transfer.classifiers.data import write_synthetic_subject

SUBJECTS = ["SN001", "SN002", "SN003", "SN004", "SN005", "SN006"]
AUS = [1, 12, 25]
N_FRAMES, N_LABELLED, INVALID = 160, 150, [2, 3, 40]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Six subjects with a planted linear signal per AU, a few invalid frames and unlabelled trailing frames."""
    root = tmp_path_factory.mktemp("synth")
    for i, s in enumerate(SUBJECTS):
        write_synthetic_subject(root / "features" / f"{s}.h5", root / "labels" / f"{s}.csv", s, aus=AUS,
                                n_frames=N_FRAMES, dim=24, n_labelled=N_LABELLED, invalid=INVALID, seed=i)
    fp = {s: str(root / "features" / f"{s}.h5") for s in SUBJECTS}
    lp = {s: str(root / "labels" / f"{s}.csv") for s in SUBJECTS}
    return root, fp, lp


def _job(synth, tmp_path, classifier="svm", au=1, seed=0, params=None, **kw):
    _, fp, lp = synth
    params = params or ({"C_grid": [0.001, 0.01, 0.1, 1.0], "max_iter": 5000} if classifier == "svm" else {})
    args = dict(feature_paths=fp, label_paths=lp, train=SUBJECTS[:3], val=SUBJECTS[3:4], test=SUBJECTS[4:],
                au=au, backbone="synthetic", region="face", crop_region="face", classifier=classifier,
                params=params, seed=seed, threshold=2, model_out=tmp_path / f"{classifier}_AU{au}.npz",
                pred_out=tmp_path / f"{classifier}_AU{au}.csv", split="t")
    args.update(kw)
    bundle = run_frame_job(**args)
    return bundle, pd.read_csv(args["pred_out"])


def test_load_frames_excludes_invalid_and_unlabelled(synth):
    _, fp, lp = synth
    data = load_frames(fp, lp, au=1, threshold=2, subjects=["SN001", "SN002"])
    per_subject = N_LABELLED - len(INVALID)
    assert len(data) == 2 * per_subject
    assert data.counts["SN001"] == {"total": N_FRAMES, "invalid": len(INVALID), "unlabelled": N_FRAMES - N_LABELLED,
                                    "unknown": 0, "labels_without_features": 0, "used": per_subject,
                                    "labelled_without_face": len(INVALID)}
    assert not np.isin(np.array(INVALID) + 1, data.frame[data.subject == "SN001"]).any()
    assert data.frame.max() == N_LABELLED
    labels = pd.read_csv(lp["SN002"]).set_index("frame")["AU1"]
    sel = data.subject == "SN002"
    np.testing.assert_array_equal(data.y[sel], (labels.loc[data.frame[sel]].to_numpy() >= 2).astype(int))
    assert np.isfinite(data.X).all()


def test_bad_label_value_names_file_subject_and_frame(tmp_path):
    write_synthetic_subject(tmp_path / "f.h5", tmp_path / "l.csv", "SN009", aus=[1], n_frames=30, seed=0)
    df = pd.read_csv(tmp_path / "l.csv")
    df.loc[7, "AU1"] = 9
    df.to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(ClassifierDataError, match=r"l\.csv \(subject SN009\), frame 8: AU1 intensity .9."):
        load_frames({"SN009": tmp_path / "f.h5"}, {"SN009": tmp_path / "l.csv"}, au=1, threshold=2)
    with pytest.raises(ClassifierDataError, match=r"l\.csv \(subject SN009\): missing column\(s\) \['AU12'\]"):
        load_frames({"SN009": tmp_path / "f.h5"}, {"SN009": tmp_path / "l.csv"}, au=12, threshold=2)


def test_nan_feature_on_valid_frame_is_an_error(tmp_path):
    write_synthetic_subject(tmp_path / "f.h5", tmp_path / "l.csv", "SN009", aus=[1], n_frames=30, seed=0)
    with h5py.File(tmp_path / "f.h5", "r+") as fh:
        X = fh["features"][()]
        X[11, 3] = np.nan
        fh["features"][...] = X
    with pytest.raises(ClassifierDataError, match=r"f\.h5 \(subject SN009\), frame 12: non-finite"):
        load_frames({"SN009": tmp_path / "f.h5"}, {"SN009": tmp_path / "l.csv"}, au=1, threshold=2)


def test_balance_indices_rule():
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 5)
    idx = balance_indices(y, rng)
    assert (y[idx] == 1).sum() == 5 and (y[idx] == 0).sum() == 5
    assert np.all(np.diff(idx) > 0)  # frame order kept
    y2 = 1 - y  # positives outnumber negatives: as many positives as negatives
    idx2 = balance_indices(y2, rng)
    assert (y2[idx2] == 0).sum() == 5 and (y2[idx2] == 1).sum() == 5
    assert len(balance_indices(np.zeros(10), rng)) == 0


@pytest.mark.parametrize("classifier", ["lda", "svm"])
def test_classifier_learns_planted_signal(synth, tmp_path, classifier):
    bundle, pred = _job(synth, tmp_path, classifier=classifier, au=12)
    test = pred[pred["set"] == "test"]
    f1 = f1_score(test["label"], test["pred"])
    # the trivial "always present" classifier on the same frames
    base = f1_score(test["label"], np.ones(len(test), int))
    assert f1 > base + 0.2, (f1, base)
    assert bundle["status"] == "ok" and bundle["classifier"] == classifier
    if classifier == "svm":
        assert bundle["chosen"]["C"] in (0.001, 0.01, 0.1, 1.0) and bundle["selection"] == "val_f1"
        assert {f"f1_C={c:g}" for c in (0.001, 0.01, 0.1, 1.0)} <= set(bundle["val_scores"])


def test_bundle_round_trip_and_contents(synth, tmp_path):
    bundle, pred = _job(synth, tmp_path, classifier="svm", au=25)
    loaded = load_model(tmp_path / "svm_AU25.npz")
    for key in ("estimator", "au", "backbone", "region", "crop_region", "classifier", "params", "chosen",
                "val_scores", "seed", "threshold", "train_subjects", "val_subjects", "feature_attrs"):
        assert key in loaded, key
    assert loaded["au"] == 25 and loaded["train_subjects"] == SUBJECTS[:3]
    assert loaded["feature_attrs"]["weights_sha256"] == "0" * 64 and loaded["feature_attrs"]["backbone"] == "synthetic"
    # predicting from the saved bundle reproduces the written scores
    _, fp, lp = synth
    te = load_frames(fp, lp, au=25, threshold=2, subjects=SUBJECTS[4:])
    score, p = predict_bundle(loaded, te.X)
    t = pred[(pred["set"] == "test") & (pred["face"] == 1)]
    np.testing.assert_allclose(score, t["score"].to_numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(p, t["pred"].to_numpy())
    assert list(pred.columns) == ["subject", "frame", "au", "set", "score", "pred", "label", "face"]


def test_not_a_bundle_is_refused(tmp_path):
    persist.save({"x": 1}, tmp_path / "b.npz")
    with pytest.raises(ClassifierDataError, match="not a model bundle"):
        load_model(tmp_path / "b.npz")


def test_au_without_training_positives_is_skipped_not_crashed(synth, tmp_path):
    _, fp, lp = synth
    labels = {}
    for s in SUBJECTS:  # AU1 never present in the training subjects
        df = pd.read_csv(lp[s])
        if s in SUBJECTS[:3]:
            df["AU1"] = 0
        labels[s] = tmp_path / f"{s}.csv"
        df.to_csv(labels[s], index=False)
    bundle, pred = _job(synth, tmp_path, classifier="lda", au=1, label_paths=labels)
    assert bundle["status"] == "skipped" and "0 positive" in bundle["reason"]
    assert pred["score"].isna().all() and (pred["pred"] == 0).all()
    assert (pred["set"] == "test").sum() == 2 * N_LABELLED  # every labelled test frame, with a face or not


def test_lda_shrinkage_option(synth, tmp_path):
    bundle, _ = _job(synth, tmp_path, classifier="lda", au=1, params={"shrinkage": "auto"})
    lda = bundle["estimator"].named_steps["clf"]
    assert lda.shrinkage == "auto" and lda.solver == "lsqr"
    with pytest.raises(ClassifierDataError, match="shrinkage needs solver"):
        make_estimator("lda", {"shrinkage": 0.5, "solver": "svd"})


def test_svm_without_usable_validation_uses_fallback_C(synth, tmp_path):
    bundle, pred = _job(synth, tmp_path, classifier="svm", au=1, val=[], train=SUBJECTS[:4],
                        params={"C_grid": [0.01, 1.0], "C_fallback": 0.05})
    assert bundle["selection"] == "fallback" and bundle["chosen"]["C"] == 0.05
    assert set(pred["set"]) == {"test"}


def test_fast_reader_agrees_with_the_feature_stage(tmp_path):
    """The classifiers read feature files with h5py alone (no torch import per job): same result as the feature
    stage's own writer/reader, including NaN rows of invalid frames and the attributes."""
    features = pytest.importorskip("au_transfer.features")
    from au_transfer.classifiers.data import read_feature_file

    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 5)).astype(np.float32)
    valid = np.ones(12, bool)
    valid[[3, 7]] = False
    X[~valid] = np.nan
    attrs = {"backbone": "dlib_resnet", "layer": "fc", "weights": "pretrained", "weights_sha256": "ab" * 32,
             "region": "lower", "input_size": 150, "subject": "SN001", "dim": 5}
    features.write_features(tmp_path / "f.h5", X, np.arange(1, 13), valid, attrs)
    theirs = features.read_features(tmp_path / "f.h5")
    ours = read_feature_file(tmp_path / "f.h5")
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    np.testing.assert_array_equal(ours[2], theirs[2])
    assert ours[3] == theirs[3]
    with pytest.raises(ClassifierDataError, match="does not exist"):
        read_feature_file(tmp_path / "missing.h5")
