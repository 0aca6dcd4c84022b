"""The memory-lean fits (au_transfer.classifiers.lean): the same models as scikit-learn's, the scaler fitted on
training rows only, and the switch between the two implementations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from au_transfer.classifiers import run_frame_job
from au_transfer.classifiers.data import write_synthetic_subject
from au_transfer.classifiers.frame import decision_values, fit_frame_classifier
from au_transfer.classifiers.lean import NewtonLinearSVC, ScatterLDA, standardise_in_place, use_lean
from au_transfer.config import schema_defaults


def _problem(n: int, d: int, seed: int = 0, pos: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlated features (a low-rank part plus noise), three dead units, a planted class direction."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((d // 4, d)).astype(np.float32)
    X = rng.standard_normal((2 * n, d // 4)).astype(np.float32) @ basis
    X += 0.3 * rng.standard_normal((2 * n, d)).astype(np.float32) + 0.5
    y = (rng.random(2 * n) < pos).astype(np.int8)
    X += 0.15 * y[:, None] * rng.standard_normal(d).astype(np.float32)
    X[:, :3] = 0.0
    return X[:n], y[:n], X[n:]


def _objective(X, y, est, C, class_weight) -> float:
    """LinearSVC's primal objective (float64): 0.5 |[w, b]|^2 + sum_i C_i max(0, 1 - s_i (x_i w + b))^2."""
    from sklearn.utils.class_weight import compute_class_weight

    s = np.where(y == est.classes_[1], 1.0, -1.0)
    cw = compute_class_weight(class_weight, classes=est.classes_, y=y)
    cost = C * np.where(s > 0, cw[1], cw[0])
    slack = np.clip(1 - s * (X.astype(np.float64) @ est.coef_.ravel() + est.intercept_[0]), 0, None)
    return 0.5 * (est.coef_ ** 2).sum() + 0.5 * est.intercept_[0] ** 2 + float(np.sum(cost * slack ** 2))


def test_standardise_in_place_equals_standard_scaler():
    X, _, _ = _problem(1000, 40)
    ref = StandardScaler().fit(X)
    Z = X.copy()
    scaler = standardise_in_place(Z, block=97)
    np.testing.assert_allclose(scaler.mean_, ref.mean_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(scaler.scale_, ref.scale_, rtol=1e-6)
    np.testing.assert_allclose(Z, ref.transform(X), atol=1e-5)
    with pytest.raises(TypeError, match="float32"):
        standardise_in_place(X.astype(np.float64))


@pytest.mark.parametrize("C,class_weight,pos", [(0.01, None, 0.5), (1.0, None, 0.5), (0.1, "balanced", 0.2)])
def test_newton_svm_is_linear_svc(C, class_weight, pos):
    X, y, Xte = _problem(3000, 200, seed=1, pos=pos)
    Z = X.copy()
    scaler = standardise_in_place(Z)
    ref = LinearSVC(C=C, class_weight=class_weight, dual="auto", max_iter=5000).fit(Z, y)
    lean = NewtonLinearSVC(C=C, class_weight=class_weight, max_iter=5000, block_rows=333).fit(Z, y)
    assert lean.coef_.shape == ref.coef_.shape and lean.coef_.dtype == ref.coef_.dtype
    # the same optimum within both solvers' tolerance (the objective within 1e-5; float32 products bound the
    # coefficients' agreement at large C)
    assert _objective(Z, y, lean, C, class_weight) < _objective(Z, y, ref, C, class_weight) * (1 + 1e-5)
    assert np.linalg.norm(lean.coef_ - ref.coef_) / np.linalg.norm(ref.coef_) < 5e-3
    assert abs(lean.intercept_[0] - ref.intercept_[0]) < 5e-3 * max(1.0, abs(ref.intercept_[0]))
    Zte = scaler.transform(Xte)
    s_ref, s_lean = ref.decision_function(Zte), lean.decision_function(Zte)
    assert np.mean((s_ref > 0) == (s_lean > 0)) > 0.999
    np.testing.assert_array_equal(lean.classes_, ref.classes_)


def test_newton_svm_refuses_what_it_does_not_fit():
    X, y, _ = _problem(200, 12)
    with pytest.raises(ValueError, match="binary"):
        NewtonLinearSVC().fit(X, np.arange(len(y)) % 3)
    with pytest.raises(ValueError, match="sample weights"):
        NewtonLinearSVC().fit(X, y, sample_weight=np.ones(len(y)))


@pytest.mark.parametrize("n,d", [(3000, 200), (150, 200)])  # more rows than dimensions, and fewer
def test_scatter_lda_is_the_svd_solver(n, d):
    X, y, Xte = _problem(n, d, seed=2)
    ref = LinearDiscriminantAnalysis(solver="svd").fit(X, y)
    lean = ScatterLDA(block_rows=512).fit(X, y)
    assert lean.coef_.dtype == ref.coef_.dtype == np.float32
    assert np.linalg.norm(lean.coef_ - ref.coef_) / np.linalg.norm(ref.coef_) < 1e-3
    s_ref, s_lean = ref.decision_function(Xte), lean.decision_function(Xte)
    assert np.mean((s_ref > 0) == (s_lean > 0)) > 0.995
    np.testing.assert_allclose(lean.means_, ref.means_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lean.predict_proba(Xte[:50]), ref.predict_proba(Xte[:50]), atol=1e-3)


def test_use_lean_rules():
    svm = schema_defaults("classifiers")["svm"]
    lda = schema_defaults("classifiers")["lda"]
    limit = svm["lean_above"]
    assert limit and lda["lean_above"] == limit
    assert not use_lean("svm", svm, 1000, limit // 1000) and use_lean("svm", svm, 1000, limit // 1000 + 1)
    assert use_lean("lda", {**lda, "lean_above": 0}, 3, 2) and not use_lean("lda", {**lda, "lean_above": 0}, 2, 2)
    assert not use_lean("svm", {**svm, "lean_above": None}, 9**9, 9)
    assert not use_lean("lda", {**lda, "lean_above": 0, "shrinkage": "auto", "solver": "lsqr"}, 20, 10)
    assert not use_lean("lda", {**lda, "lean_above": 0, "solver": "eigen"}, 20, 10)


SUBJECTS = ["SN001", "SN002", "SN003", "SN004", "SN005", "SN006"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("lean")
    for i, s in enumerate(SUBJECTS):
        write_synthetic_subject(root / "f" / f"{s}.h5", root / "l" / f"{s}.csv", s, aus=[1, 12], n_frames=300,
                                dim=24, invalid=[2 + i], seed=i, signal=1.5, offset=0.3 * i)
    return {s: str(root / "f" / f"{s}.h5") for s in SUBJECTS}, {s: str(root / "l" / f"{s}.csv") for s in SUBJECTS}


@pytest.mark.parametrize("classifier", ["lda", "svm"])
@pytest.mark.parametrize("refit", ["train", "train_val"])
def test_frame_job_lean_and_scikit_learn_agree(synth, tmp_path, classifier, refit):
    fp, lp = synth
    out = {}
    for name, limit in (("sk", None), ("lean", 0)):
        params = {**schema_defaults("classifiers")[classifier], "lean_above": limit}
        bundle = run_frame_job(feature_paths=fp, label_paths=lp, train=SUBJECTS[:3], val=SUBJECTS[3:4],
                               test=SUBJECTS[4:], au=12, backbone="synthetic", region="face", crop_region="face",
                               classifier=classifier, params=params, seed=0, threshold=2, refit=refit,
                               model_out=tmp_path / f"{name}.npz", pred_out=tmp_path / f"{name}.csv", split="t")
        out[name] = (bundle, pd.read_csv(tmp_path / f"{name}.csv"))
    (b_sk, p_sk), (b_lean, p_lean) = out["sk"], out["lean"]
    assert b_sk["implementation"] == "scikit-learn" and b_lean["implementation"] == "lean"
    assert type(b_lean["estimator"][-1]) is {"lda": ScatterLDA, "svm": NewtonLinearSVC}[classifier]
    assert b_lean["chosen"] == b_sk["chosen"]
    pd.testing.assert_frame_equal(p_lean.drop(columns=["score", "pred"]), p_sk.drop(columns=["score", "pred"]))
    assert (p_lean["pred"] == p_sk["pred"]).mean() > 0.99
    np.testing.assert_allclose(p_lean["score"], p_sk["score"], atol=2e-2 * p_sk["score"].abs().max())


def test_lean_scaler_sees_the_balanced_training_rows_only(synth):
    """Hygiene: the lean fit's scaler is fitted on the balanced training rows, never on validation or test rows."""
    from au_transfer.classifiers.data import index_frames

    fp, lp = synth
    tr = index_frames(fp, lp, 12, 2, SUBJECTS[:3])
    va = index_frames(fp, lp, 12, 2, SUBJECTS[3:4])
    params = {**schema_defaults("classifiers")["svm"], "lean_above": 0}
    info = fit_frame_classifier(tr, va, "svm", params, seed=0)
    scaler = info["estimator"][0]
    X = tr.features(info["train_index"], np.float32)
    np.testing.assert_allclose(scaler.mean_, X.mean(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaler.var_, X.var(axis=0, dtype=np.float64), rtol=1e-4)
    assert scaler.n_samples_seen_ == len(info["train_index"])
    # scores through the pipeline are those of the fitted pieces (scaler, then the linear step)
    Xte = tr.features(np.arange(50))
    np.testing.assert_allclose(decision_values(info["estimator"], Xte),
                               info["estimator"][-1].decision_function(scaler.transform(Xte.astype(np.float32))),
                               rtol=1e-6, atol=1e-9)
