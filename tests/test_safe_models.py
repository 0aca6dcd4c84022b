"""Fitted models stored as arrays + JSON (au_transfer.persist): every kind of fitted estimator comes back bit for
bit (same decision values), nothing pickled is ever loaded unless the user trusts it, and a broken file is one clear
error naming it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest

from au_transfer import persist
from au_transfer.classifiers.frame import decision_values, load_model, make_estimator, save_model
from au_transfer.intensity.linear import IntensityRegressor
from au_transfer.layout import LEGACY_MODEL_EXT, MODEL_EXT, Layout


def _data(n: int = 240, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n, d)).astype(np.float32) * rng.uniform(0.1, 3, d).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.5, n) > 0).astype(int)
    return X, y


def _estimator(kind: str):
    X, y = _data()
    if kind in ("lda", "svm", "lda_lsqr"):
        params = {"shrinkage": 0.1, "solver": "lsqr"} if kind == "lda_lsqr" else {}
        return make_estimator(kind.split("_")[0], params, C=0.1).fit(X, y)
    if kind in ("lda_lean", "svm_lean"):
        from au_transfer.classifiers.lean import standardise_in_place

        est = make_estimator(kind.split("_")[0], {}, C=0.1, lean=True)
        Xs = X.copy()
        est.steps[0] = ("scaler", standardise_in_place(Xs))
        est[-1].fit(Xs, y)
        return est
    if kind in ("ridge", "svr"):
        return IntensityRegressor(kind, 0.5, {"epsilon": 0.0, "max_iter": 5000}).fit(X, y * 3.0)
    raise AssertionError(kind)


def _values(est, X) -> np.ndarray:
    return est.predict(X) if isinstance(est, IntensityRegressor) else decision_values(est, X)


KINDS = ["lda", "lda_lsqr", "svm", "lda_lean", "svm_lean", "ridge", "svr"]


@pytest.mark.parametrize("kind", KINDS)
def test_fit_save_load_gives_bit_identical_decision_values(kind: str, tmp_path: Path) -> None:
    est = _estimator(kind)
    X, _ = _data(seed=1)
    Xh = X.astype(np.float16)  # the feature store's type
    bundle = {"estimator": est, "au": 12, "classifier": kind, "val_scores": {"f1": np.float64(0.5), "nan": np.nan},
              "chosen": {"C": 0.1}, "counts": {"SN001": {"used": np.int64(3)}}, "subjects": ("a", "b")}
    path = tmp_path / f"AU12{MODEL_EXT}"
    save_model(bundle, path)
    assert not persist.is_pickle(path) and zipfile.is_zipfile(path)
    loaded = load_model(path)
    assert type(loaded["estimator"]) is type(est)
    for data in (X, Xh):
        assert np.array_equal(_values(loaded["estimator"], data), _values(est, data))
    # the pickle the workflow wrote before gives the same values too (same estimator state)
    joblib.dump(bundle, tmp_path / "old.joblib")
    assert np.array_equal(_values(joblib.load(tmp_path / "old.joblib")["estimator"], Xh), _values(est, Xh))
    assert loaded["val_scores"]["f1"] == 0.5 and np.isnan(loaded["val_scores"]["nan"])
    assert loaded["counts"]["SN001"]["used"].dtype == np.int64 and loaded["subjects"] == ("a", "b")


def test_lstm_round_trip_is_bit_identical(tmp_path: Path) -> None:
    from au_transfer.classifiers.lstm import LSTMClassifier

    rng = np.random.default_rng(0)
    X = [rng.normal(0, 1, (20, 6)).astype(np.float32) for _ in range(3)]
    y = [(x[:, 0] > 0).astype(np.float32) for x in X]
    est = LSTMClassifier(hidden=4, epochs=2, batch_size=2, device="cpu").fit(X, y)
    save_model({"estimator": est, "au": 1, "classifier": "lstm"}, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")["estimator"]
    assert loaded.history_ == est.history_ and loaded.best_epoch_ == est.best_epoch_
    for a, b in zip(loaded.decision_function(X), est.decision_function(X), strict=True):
        assert np.array_equal(a, b)


def test_layout_spells_the_model_extension_once() -> None:
    assert Layout().model_file("s", "m", 12).endswith(f"/AU12{MODEL_EXT}")
    assert Layout().model_file("s", "m", 12, ext=LEGACY_MODEL_EXT).endswith("/AU12.joblib")
    assert Layout.model_pattern() == f"AU*{MODEL_EXT}"


class _Evil:
    """Unpickling this writes a marker file (what a crafted model file could do instead: anything)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_pickle_is_never_loaded_whatever_its_name(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for name in (f"AU12{LEGACY_MODEL_EXT}", f"AU12{MODEL_EXT}"):
        path = tmp_path / name
        joblib.dump({"au": 12, "estimator": _Evil(marker)}, path)
        with pytest.raises(persist.UnsafeModelError, match=r"AU12\..*(pickle|trust)"):
            load_model(path)
        assert not marker.exists(), f"{name}: the pickle ran"


def test_an_object_array_inside_an_npz_is_refused(tmp_path: Path) -> None:
    """An .npz whose array entry is a pickled object array (the one way an .npz can carry code)."""
    marker = tmp_path / "marker"
    path = tmp_path / "AU12.npz"
    save_model({"au": 12, "estimator": None, "w": np.zeros(3)}, path)
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    evil = np.empty(1, dtype=object)
    evil[0] = _Evil(marker)
    import io

    buf = io.BytesIO()
    np.save(buf, evil, allow_pickle=True)
    entries["a0.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    with pytest.raises(persist.UnsafeModelError, match="pickled"):
        load_model(path)
    assert not marker.exists()


def test_a_class_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    persist.save({"estimator": make_estimator("svm", {})}, path)
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    head = np.load(path)[persist.HEADER].tobytes().replace(b'"Pipeline"', b'"os.system"')
    buf = __import__("io").BytesIO()
    np.save(buf, np.frombuffer(head, np.uint8))
    entries[f"{persist.HEADER}.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    with pytest.raises(persist.ModelFileError, match="not a model class"):
        persist.load(path)


def test_storing_an_unknown_object_is_refused(tmp_path: Path) -> None:
    with pytest.raises(persist.ModelFileError, match=r"bundle\['x'\]: cannot store a .*_Evil"):
        persist.save({"x": _Evil(tmp_path / "m")}, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_legacy_pickle_loads_only_when_trusted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(persist.TRUST_ENV, raising=False)
    est = _estimator("svm")
    path = tmp_path / "AU12.joblib"
    joblib.dump({"au": 12, "estimator": est}, path)
    with pytest.raises(persist.UnsafeModelError, match="convert-models"):
        load_model(path)
    monkeypatch.setenv(persist.TRUST_ENV, "1")
    X, _ = _data()
    assert np.array_equal(decision_values(load_model(path)["estimator"], X), decision_values(est, X))


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage_zip"])
def test_a_broken_model_file_is_one_line_naming_it(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "AU12.npz"
    save_model({"au": 12, "estimator": _estimator("lda")}, path)
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage_zip": b"PK" + b"\0" * 50}[damage])
    with pytest.raises(persist.ModelFileError) as info:
        load_model(path)
    msg = str(info.value)
    assert str(path) in msg and "rerun" in msg and "\n" not in msg, msg


def test_pickle_module_is_not_what_loads(tmp_path: Path, monkeypatch) -> None:
    """Loading a model file never reaches the pickle machinery at all."""
    path = tmp_path / "m.npz"
    save_model({"au": 1, "estimator": _estimator("svm")}, path)

    def boom(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    assert load_model(path)["au"] == 1


# ------------------------------------------------------------------------------------------ torch files
def test_a_crafted_finetuned_network_is_refused_and_never_runs(tmp_path: Path) -> None:
    """A crafted ``AU1.pt`` (the bundle format's keys plus an object whose unpickling writes a marker): the
    fine-tuned network loaders (training side, predictor side) refuse it; nothing runs."""
    import torch

    from au_transfer.finetune.bundle import BUNDLE_FORMAT, load_bundle
    from au_transfer.finetune.config import FinetuneError
    from au_transfer.predict.inputs import _bundle_header
    from au_transfer.predict.manifest import PredictError

    marker = tmp_path / "marker"
    path = tmp_path / "AU1.pt"
    torch.save({"format": BUNDLE_FORMAT, "state_dict": {}, "payload": _Evil(marker)}, path)
    legacy = tmp_path / "AU2.pt"
    torch.save({"format": BUNDLE_FORMAT, "payload": _Evil(marker)}, legacy, _use_new_zipfile_serialization=False)
    for p in (path, legacy):
        with pytest.raises(FinetuneError, match=rf"{p.name}: .*refused") as info:
            load_bundle(p)
        assert "\n" not in str(info.value)
        with pytest.raises(PredictError, match="refused"):
            _bundle_header(p)
    assert not marker.exists(), "the crafted network ran its code"


def test_a_crafted_checkpoint_is_ignored_and_never_runs(tmp_path: Path, caplog) -> None:
    import torch

    from au_transfer.finetune.training import _read_checkpoint, _rng_state, _set_rng_state

    marker = tmp_path / "marker"
    ckpt = tmp_path / "AU1.ckpt"
    torch.save({"fingerprint": "x", "epoch": 0, "model": _Evil(marker)}, ckpt)
    assert _read_checkpoint(ckpt) is None
    assert not marker.exists() and "ignoring checkpoint" in caplog.text
    # the checkpoint's RNG states are tensors and numbers: saved and read back with weights_only
    state = _rng_state()
    torch.save({"rng": state}, ckpt)
    draws = np.random.random(3)
    _set_rng_state(_read_checkpoint(ckpt)["rng"])
    assert np.array_equal(np.random.random(3), draws)


def test_bundles_written_before_load_with_weights_only(tmp_path: Path) -> None:
    """A fine-tuned bundle of an earlier version (``torch.__version__`` stored as torch's TorchVersion) still loads."""
    import torch

    from au_transfer.finetune.bundle import BUNDLE_FORMAT, load_bundle

    path = tmp_path / "AU1.pt"
    torch.save({"format": BUNDLE_FORMAT, "torch": torch.__version__, "state_dict": {"w": torch.ones(2)}}, path)
    assert load_bundle(path)["torch"] == str(torch.__version__)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_broken_network_file_is_one_line_naming_it(tmp_path: Path, damage: str) -> None:
    import torch

    from au_transfer.finetune.bundle import BUNDLE_FORMAT, load_bundle
    from au_transfer.finetune.config import FinetuneError

    path = tmp_path / "AU1.pt"
    torch.save({"format": BUNDLE_FORMAT, "state_dict": {"w": torch.ones(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(FinetuneError) as info:
        load_bundle(path)
    assert str(path) in str(info.value) and "rerun" in str(info.value) and "\n" not in str(info.value)
