"""LSTM (paper IV-D): sequence cutting, weight noise, learning, full-sequence test predictions, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from au_transfer.classifiers import load_frames, load_model
from au_transfer.classifiers.data import write_synthetic_subject
from au_transfer.classifiers.jobs import run_lstm_job
from au_transfer.classifiers.lstm import LSTMClassifier, LSTMStream, _Net, cut_sequences

torch.set_num_threads(1)
SUBJECTS = ["SN001", "SN002", "SN003", "SN004", "SN005"]
FAST = dict(hidden=16, lr=0.2, momentum=0.9, weight_noise_std=0.01, context_frames=3, inactive_min=20,
            inactive_max=30, epochs=30, batch_size=4, patience=0, device="cpu")


def test_cut_sequences_keeps_context_and_removes_long_inactive_stretches():
    y = np.zeros(200, int)
    y[50:55] = 1  # activation 1
    y[60:62] = 1  # activation 2: 5-frame gap (kept)
    y[150:160] = 1  # activation 3 after an 88-frame inactive stretch
    rng = np.random.default_rng(0)
    seqs = cut_sequences(y, context=3, inactive_min=20, inactive_max=30, rng=rng)
    kept = np.concatenate(seqs)
    assert np.all(np.diff(kept) > 0)
    # every activation and its 3 frames of context are kept, in one piece with the short gap between 1 and 2
    for a, b in ((47, 65), (147, 163)):
        assert any(set(range(a, b)) <= set(s.tolist()) for s in seqs), (a, b)
    # what is left of each long inactive stretch is shorter than inactive_min
    removed = np.setdiff1d(np.arange(200), kept)
    assert len(removed) > 0
    gaps = [(a, b) for a, b in ((0, 47), (65, 147), (163, 200))]
    for a, b in gaps:
        left = len(set(range(a, b)) & set(kept.tolist()))
        assert left < 20, (a, b, left)
    # the sequence is cut at the removals: no piece spans a removed frame
    for s in seqs:
        assert s[-1] - s[0] + 1 == len(s)


def test_cut_sequences_short_stretches_untouched_and_chunk_lengths():
    y = np.zeros(40, int)
    y[10:12] = 1
    seqs = cut_sequences(y, context=3, inactive_min=50, inactive_max=60, rng=np.random.default_rng(1))
    assert len(seqs) == 1 and len(seqs[0]) == 40  # nothing as long as inactive_min
    y = np.zeros(1000, int)
    y[-5:] = 1
    removed = []
    for seed in range(5):
        kept = np.concatenate(cut_sequences(y, context=0, inactive_min=100, inactive_max=300,
                                            rng=np.random.default_rng(seed)))
        removed.append(1000 - len(kept))
        assert len(kept) - 5 < 100  # fewer than inactive_min inactive frames left
    assert len(set(removed)) > 1  # random chunk lengths depend on the seed
    with pytest.raises(ValueError, match="inactive_min"):
        cut_sequences(y, context=0, inactive_min=10, inactive_max=5, rng=np.random.default_rng(0))


def _toy(n=6, T=30, D=5, seed=0):
    rng = np.random.default_rng(seed)
    X, Y = [], []
    for _ in range(n):
        y = (rng.random(T) < 0.3).astype(np.float32)
        X.append((rng.standard_normal((T, D)) + 2 * y[:, None]).astype(np.float32))
        Y.append(y)
    return X, Y


def test_weight_noise_is_removed_after_each_step():
    X, Y = _toy()
    # with lr = 0 the optimiser changes nothing, so the final weights must equal the initial ones exactly:
    # the noise added before each gradient has been taken off again
    torch.manual_seed(5)
    init = {k: v.detach().numpy().copy() for k, v in _Net(5, 8).state_dict().items()}
    est = LSTMClassifier(hidden=8, lr=0.0, momentum=0.0, weight_noise_std=0.5, epochs=3, batch_size=2, patience=0,
                         seed=5, device="cpu").fit(X, Y)
    for k, v in init.items():
        np.testing.assert_array_equal(est.state_[k], v)
    # with a learning rate, the noise changes the gradients: different weights from a run without noise
    a = LSTMClassifier(hidden=8, lr=0.05, weight_noise_std=0.5, epochs=2, batch_size=2, patience=0, seed=5,
                       device="cpu").fit(X, Y)
    b = LSTMClassifier(hidden=8, lr=0.05, weight_noise_std=0.0, epochs=2, batch_size=2, patience=0, seed=5,
                       device="cpu").fit(X, Y)
    assert not np.allclose(a.state_["out.weight"], b.state_["out.weight"])


def test_lstm_is_deterministic_and_learns():
    X, Y = _toy(n=8)
    a = LSTMClassifier(hidden=8, lr=0.1, weight_noise_std=0.01, epochs=30, batch_size=4, patience=0, seed=1,
                       device="cpu").fit(X, Y)
    b = LSTMClassifier(hidden=8, lr=0.1, weight_noise_std=0.01, epochs=30, batch_size=4, patience=0, seed=1,
                       device="cpu").fit(X, Y)
    Xt, Yt = _toy(n=3, seed=9)
    pa, pb = a.decision_function(Xt), b.decision_function(Xt)
    for u, v in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(u, v)
    acc = np.mean(np.concatenate([(p > 0) == (y > 0) for p, y in zip(pa, Yt, strict=True)]))
    assert acc > 0.85
    assert a.history_[-1]["train_loss"] < a.history_[0]["train_loss"]


def test_early_stopping_keeps_best_epoch():
    X, Y = _toy(n=6)
    Xv, Yv = _toy(n=2, seed=3)
    est = LSTMClassifier(hidden=8, lr=0.1, weight_noise_std=0.0, epochs=40, batch_size=2, patience=3, seed=0,
                         device="cpu").fit(X, Y, Xv, Yv)
    losses = [h["val_loss"] for h in est.history_]
    assert est.best_epoch_ == int(np.argmin(losses)) + 1
    assert len(est.history_) <= 40


def test_run_lstm_job_predicts_full_test_sequences(tmp_path):
    for i, s in enumerate(SUBJECTS):
        write_synthetic_subject(tmp_path / "f" / f"{s}.h5", tmp_path / "l" / f"{s}.csv", s, aus=[12],
                                n_frames=150, dim=10, n_labelled=140, invalid=[0, 70], seed=i)
    fp = {s: str(tmp_path / "f" / f"{s}.h5") for s in SUBJECTS}
    lp = {s: str(tmp_path / "l" / f"{s}.csv") for s in SUBJECTS}
    kw = dict(feature_paths=fp, label_paths=lp, train=SUBJECTS[:3], val=SUBJECTS[3:4], test=SUBJECTS[4:], au=12,
              backbone="synthetic", region="face", crop_region="face", params=FAST, seed=0, threshold=2, split="t")
    bundle = run_lstm_job(model_out=tmp_path / "m.npz", pred_out=tmp_path / "p.csv", **kw)
    pred = pd.read_csv(tmp_path / "p.csv")
    te = load_frames(fp, lp, 12, 2, SUBJECTS[4:])
    test = pred[(pred["set"] == "test") & (pred["face"] == 1)]
    np.testing.assert_array_equal(test["frame"].to_numpy(), te.frame)  # the whole sequence, in order
    assert set(pred["set"]) == {"val", "test"} and test["score"].between(0, 1).all()
    faceless = pred[pred["face"] == 0]  # the labelled test frames without a face: predicted absent
    assert faceless["frame"].tolist() == [1, 71] and (faceless["pred"] == 0).all() and faceless["score"].isna().all()
    acc = (test["pred"] == test["label"]).mean()
    assert acc > 0.8, acc
    loaded = load_model(tmp_path / "m.npz")
    assert loaded["classifier"] == "lstm" and loaded["chosen"]["best_epoch"] >= 1
    assert loaded["params"]["hidden"] == 16 and bundle["seed"] == 0
    # same seed -> same predictions
    run_lstm_job(model_out=tmp_path / "m2.npz", pred_out=tmp_path / "p2.csv", **kw)
    pd.testing.assert_frame_equal(pred, pd.read_csv(tmp_path / "p2.csv"))


def test_stream_in_chunks_equals_whole_sequence():
    X, Y = _toy(n=4)
    est = LSTMClassifier(hidden=8, lr=0.1, weight_noise_std=0.0, epochs=3, batch_size=2, patience=0, seed=2,
                         device="cpu").fit(X, Y)
    seq = np.concatenate(X)
    whole = est.predict_proba_sequence(seq)
    stream = LSTMStream(est, device="cpu")
    parts = [stream(seq[i:i + 7]) for i in range(0, len(seq), 7)]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-7)
    stream.reset()
    np.testing.assert_allclose(stream(seq[:10]), whole[:10], rtol=1e-5, atol=1e-7)
