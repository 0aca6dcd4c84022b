"""Conformance checks of the AU-model interface, run on every registered kind (in the spirit of scikit-learn's
estimator checks): the declared inputs, a save/load round trip with identical scores, the same seed giving the
same model, wrong input shapes giving a clear error, and sequence state that reset() clears."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from test_finetune import INPUT, create_tiny

from au_transfer.models import (
    MODEL_KINDS,
    AUModel,
    AUModelError,
    EnsembleModel,
    FinetunedModel,
    FrameModel,
    IntensityEnsembleModel,
    LSTMModel,
    RegressorModel,
    load_au_model,
    model_from_bundle,
    model_kind,
)

DIM = 6
LSTM_PARAMS = {"hidden": 4, "lr": 0.2, "weight_noise_std": 0.01, "epochs": 4, "patience": 0, "batch_size": 2,
               "device": "cpu"}
FT_CFG = {"epochs": 2, "batch_size": 8, "lr": 0.05, "seed": 1, "optimizer": "adam", "amp": "none", "num_workers": 0,
          "augment": {"enabled": False}}


def _labels(rng, n):
    y = (rng.random(n) < 0.4).astype(int)
    y[:2] = [0, 1]
    return y


def _feature_data(seed=0, n_seq=3, length=30, dim=DIM):
    rng = np.random.default_rng(seed)
    ys = [_labels(rng, length) for _ in range(n_seq)]
    xs = [rng.normal(size=(length, dim)).astype(np.float32) + y[:, None] * 1.5 for y in ys]
    return xs, ys


def _crop_data(seed=0, n_seq=2, length=12):
    rng = np.random.default_rng(seed)
    ys = [_labels(rng, length) for _ in range(n_seq)]
    xs = [np.clip(rng.normal(100, 30, (length, INPUT, INPUT, 3)) + y[:, None, None, None] * 60, 0, 255)
          .astype(np.uint8) for y in ys]
    return xs, ys


def _member_data(seed=0, n_seq=2, length=40, members=3):
    rng = np.random.default_rng(seed)
    ys = [_labels(rng, length) for _ in range(n_seq)]
    xs = []
    for y in ys:
        score = y[:, None] + rng.normal(0, 0.6, (length, members))
        xs.append(np.stack([score, (score > 0.5).astype(float)], axis=-1))
    return xs, ys


def _intensity_data(seed=0, n_seq=3, length=30, dim=DIM):
    rng = np.random.default_rng(seed)
    ys = [rng.integers(0, 6, length).astype(float) for _ in range(n_seq)]
    xs = [rng.normal(size=(length, dim)).astype(np.float32) + y[:, None] * 0.5 + k for k, y in enumerate(ys)]
    return xs, ys


def _intensity_member_data(seed=0, n_seq=2, length=40, members=3):
    rng = np.random.default_rng(seed)
    ys = [rng.integers(0, 6, length).astype(float) for _ in range(n_seq)]
    xs = []
    for y in ys:  # member j is noisier the larger j: the weighted ensemble should trust member 0 most
        value = np.clip(y[:, None] + rng.normal(0, 1, (length, members)) * np.arange(1, members + 1), 0, 5)
        xs.append(np.stack([value, (value >= 2).astype(float)], axis=-1))
    return xs, ys


REG_PARAMS = {"C_grid": [0.01, 1.0], "C_fallback": 0.1, "alpha_grid": [1.0, 100.0], "alpha_fallback": 10.0,
              "max_iter": 2000}


def _regressor(name):
    return lambda: RegressorModel(au=12, backbone="b", crop_region="face", params=REG_PARAMS, seed=3,
                                  classifier=name, threshold=2)


# kind -> (a new unfitted model, its data maker, a wrong input)
CASES: dict[str, tuple[Callable[[], AUModel], Callable, np.ndarray]] = {
    "lda": (lambda: FrameModel(au=12, backbone="b", crop_region="face", classifier="lda", params={}),
            _feature_data, np.zeros((5, DIM + 1), np.float32)),
    "svm": (lambda: FrameModel(au=12, backbone="b", crop_region="face", classifier="svm",
                               params={"C_grid": [0.1, 1.0]}), _feature_data, np.zeros((5, DIM - 1), np.float32)),
    **{name: (lambda name=name: FrameModel(au=12, backbone="b", crop_region="face", classifier=name,
                                           params={"C_grid": [0.1, 1.0]}), _feature_data,
              np.zeros((5, DIM + 1), np.float32)) for name in ("lda_med", "svm_med")},
    "intensity_ensemble": (lambda: IntensityEnsembleModel(au=12, name="e", members=("m1", "m2", "m3"),
                                                          method="weighted", threshold=2),
                           _intensity_member_data, np.zeros((4, 2, 2))),
    "lstm": (lambda: LSTMModel(au=12, backbone="b", crop_region="face", params=LSTM_PARAMS, seed=2),
             _feature_data, np.zeros((5, DIM + 2), np.float32)),
    "softmax": (lambda: FinetunedModel(au=12, backbone="tiny", weights="pretrained", crop_region="face",
                                       cfg=FT_CFG, create=create_tiny, batch_size=8),
                _crop_data, np.zeros((3, INPUT + 1, INPUT + 1, 3), np.uint8)),
    "ensemble": (lambda: EnsembleModel(au=12, name="e", members=("m1", "m2", "m3"), method="stacked"),
                 _member_data, np.zeros((4, 2, 2))),
    **{name: (_regressor(name), _intensity_data, np.zeros((5, DIM + 1), np.float32))
       for name in ("svr", "ridge", "svr_med", "ridge_med")},
    "lstmr": (lambda: RegressorModel(au=12, backbone="b", crop_region="face", params=LSTM_PARAMS, seed=2,
                                     classifier="lstmr", threshold=2), _intensity_data, np.zeros((5, DIM + 2), np.float32)),
}


def test_every_registered_kind_is_checked():
    assert set(MODEL_KINDS) == set(CASES), "a model kind without conformance checks (or a stale case)"
    for name in CASES:
        assert issubclass(model_kind(name), AUModel)
    with pytest.raises(AUModelError, match="no model kind 'knn'"):
        model_kind("knn")


def _fitted(kind: str) -> tuple[AUModel, list[np.ndarray]]:
    new, data, _ = CASES[kind]
    X, y = data(0)
    Xv, yv = data(1)
    Xt, _ = data(2)
    return new().fit(X, y, Xv, yv), Xt


def _scores(model: AUModel, seqs: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for seq in seqs:
        model.reset()
        out.append(model.score(seq)[0])
    return out


@pytest.mark.parametrize("kind", CASES)
def test_declares_its_inputs(kind):
    model, Xt = _fitted(kind)
    needs = model.needs
    assert needs.kind == {"softmax": "crops", "ensemble": "members", "intensity_ensemble": "members"}.get(
        kind, "features")
    if needs.kind == "features":
        assert needs.dim == Xt[0].shape[1] and needs.backbone == "b" and needs.crop_region == "face"
    elif needs.kind == "crops":
        assert needs.size == Xt[0].shape[1] and needs.crop_region == "face"
    else:
        assert needs.members == ("m1", "m2", "m3")
    score, pred = model.score(Xt[0])
    assert score.shape == pred.shape == (len(Xt[0]),)
    assert set(np.unique(pred)) <= {0, 1}


@pytest.mark.parametrize("kind", CASES)
def test_save_load_round_trip_gives_identical_scores(kind, tmp_path):
    model, Xt = _fitted(kind)
    path = tmp_path / {"softmax": "m.pt", "ensemble": "m.json", "intensity_ensemble": "m.json"}.get(kind, "m.npz")
    model.save(path)
    model_id = "ens-e" if "ensemble" in kind else f"b-face-{kind}"
    # the network scores in batches of the size it was built with (batch size is a run option, not in the file;
    # another size may round differently in the last bit)
    kw = ({"create": create_tiny, "batch_size": 8} if kind == "softmax" else {"intensity": True}
          if kind == "intensity_ensemble" else {})
    loaded = load_au_model(path, model_id, 12, **kw)
    assert type(loaded) is type(model) and loaded.au == 12
    for a, b in zip(_scores(model, Xt), _scores(loaded, Xt), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", CASES)
def test_same_seed_same_model(kind):
    a, Xt = _fitted(kind)
    b, _ = _fitted(kind)
    for sa, sb in zip(_scores(a, Xt), _scores(b, Xt), strict=True):
        np.testing.assert_array_equal(sa, sb)


@pytest.mark.parametrize("kind", CASES)
def test_wrong_input_shape_is_a_clear_error(kind):
    model, _ = _fitted(kind)
    wrong = CASES[kind][2]
    with pytest.raises(AUModelError, match=r"AU12: got .* of shape .*expected"):
        model.score(wrong)


def test_sequence_state_carries_over_chunks_and_reset_clears_it():
    model, Xt = _fitted("lstm")
    whole = _scores(model, [Xt[0]])[0]
    model.reset()
    parts = np.concatenate([model.score(Xt[0][:7])[0], model.score(Xt[0][7:])[0]])
    np.testing.assert_allclose(parts, whole, rtol=1e-6, atol=1e-9)
    again = model.score(Xt[0][:7])[0]  # no reset: the state of the end of the sequence carries on
    assert not np.allclose(again, whole[:7])


def test_skipped_au_scores_nan_and_absent():
    X, y = _feature_data(0)
    model = FrameModel(au=5, backbone="b", crop_region="face", classifier="svm", params={}).fit(
        X, [np.zeros_like(v) for v in y])
    score, pred = model.score(X[0])
    assert np.isnan(score).all() and not pred.any()
    assert model.bundle["status"] == "skipped"


def test_model_from_bundle_dispatches_on_the_classifier():
    lda, _ = _fitted("lda")
    lstm, _ = _fitted("lstm")
    assert type(model_from_bundle(lda.bundle)) is FrameModel
    assert type(model_from_bundle(lstm.bundle)) is LSTMModel


def test_lstm_regressor_state_carries_over_chunks_and_reset_clears_it():
    model, Xt = _fitted("lstmr")
    whole = _scores(model, [Xt[0]])[0]
    assert whole.min() >= 0 and whole.max() <= 5 and model.bundle["classifier"] == "lstmr"
    model.reset()
    parts = np.concatenate([model.score(Xt[0][:7])[0], model.score(Xt[0][7:])[0]])
    np.testing.assert_allclose(parts, whole, rtol=1e-6, atol=1e-9)
    assert not np.allclose(model.score(Xt[0][:7])[0], whole[:7])


@pytest.mark.parametrize("kind", ["svr", "ridge", "svr_med"])
def test_regressors_predict_intensity_in_range_and_track_it(kind):
    model, Xt = _fitted(kind)
    _, yt = _intensity_data(2)
    value, pred = model.score(Xt[0])
    assert value.min() >= 0 and value.max() <= 5
    np.testing.assert_array_equal(pred, (value >= 2).astype(np.int8))
    assert np.corrcoef(value, yt[0])[0, 1] > 0.5
    assert model.bundle["selection"] == "validation_icc" and model.bundle["normalise"] == (
        "median" if kind.endswith("_med") else "none")


def test_median_regressor_removes_a_person_offset_that_fools_the_plain_one():
    """Every sequence k carries an offset k on all features (a person's appearance); a test sequence with a big
    offset is ruined for the plain regressor, not for the median-normalised one (running median, chunk by chunk)."""
    plain, Xt = _fitted("ridge")
    med, _ = _fitted("ridge_med")
    _, yt = _intensity_data(2)
    shifted = Xt[0] + 6.0
    med.reset()
    v_med = np.concatenate([med.score(shifted[:10])[0], med.score(shifted[10:])[0]])
    v_plain = plain.score(shifted)[0]
    assert np.abs(v_med - yt[0]).mean() < np.abs(v_plain - yt[0]).mean()


def test_median_frame_classifier_removes_a_person_offset_that_fools_the_plain_one():
    """As for the regressors: each sequence carries its own offset on every feature; the ``svm_med`` model (each
    training sequence minus its median; a running median when scoring chunk by chunk, as the predictor does) keeps
    its F1 on a test sequence with a large offset, the plain SVM does not."""
    rng = np.random.default_rng(4)
    ys = [_labels(rng, 60) for _ in range(5)]
    xs = [rng.normal(size=(60, DIM)).astype(np.float32) + y[:, None] * 1.5 + 3.0 * k for k, y in enumerate(ys)]
    kw = dict(au=12, backbone="b", crop_region="face", params={"C_grid": [0.1, 1.0]})
    plain = FrameModel(classifier="svm", **kw).fit(xs[:3], ys[:3], xs[3:4], ys[3:4])
    med = FrameModel(classifier="svm_med", **kw).fit(xs[:3], ys[:3], xs[3:4], ys[3:4])
    assert med.bundle["classifier"] == "svm_med" and med.bundle["normalise"] == "median"
    assert plain.bundle["normalise"] == "none"
    test = xs[4] + 10.0
    acc = lambda p: float((p == ys[4]).mean())  # noqa: E731
    med.reset()
    p_med = np.concatenate([med.score(test[:20])[1], med.score(test[20:])[1]])
    assert acc(p_med) > 0.8 and acc(p_med) > acc(plain.score(test)[1]) + 0.2
    # the workflow's jobs pass features already normalised by the whole recording's median
    whole = med.score(test - np.median(test, axis=0), normalised=True)[1]
    assert acc(whole) > 0.8


def test_intensity_ensemble_weights_come_from_validation_and_match_the_tables():
    """The predictor's regressor ensemble: weighted by the members' validation ICC (the least noisy member weighs
    most), combined by the workflow tables' own function, a skipped (NaN) member not voting."""
    from au_transfer.intensity.tables import combine_intensity, ensemble_weights

    model, Xt = _fitted("intensity_ensemble")
    w = model.params["weights"]["12"]
    assert w[0] > w[1] > w[2] and abs(sum(w) - 1) < 1e-9
    Xv, yv = _intensity_member_data(1)
    np.testing.assert_allclose(w, ensemble_weights(np.concatenate(Xv)[..., 0], np.concatenate(yv), "weighted"))
    X = Xt[0].copy()
    X[:5, 0, 0] = np.nan
    value, pred = model.score(X)
    np.testing.assert_allclose(value, combine_intensity(X[..., 0], w))
    np.testing.assert_allclose(value[:5], X[:5, 1:, 0] @ np.array(w[1:]) / sum(w[1:]))
    np.testing.assert_array_equal(pred, (value >= 2).astype(np.int8))
