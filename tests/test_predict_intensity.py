"""The predictor's intensity columns (AU01_r ...): written when the run trained regressors, chosen on validation,
clipped to 0..5, empty where no face; a median-normalised regressor keeps its running median per face track."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_predict import AUS, SPLIT, face_video, results  # noqa: F401  (fixtures)

from au_transfer.layout import Layout
from au_transfer.models import RegressorModel
from au_transfer.predict import PredictError, au_columns, predict
from au_transfer.predict.predictor import default_regressor

REG = {"C_grid": [0.1, 1.0], "C_fallback": 0.1, "alpha_grid": [1.0], "alpha_fallback": 1.0}


@pytest.fixture(scope="module")
def reg_results(results, tmp_path_factory):  # noqa: F811
    """The classifier results plus two regressors (one median-normalised) and validation intensity tables that
    make the _med one the better on validation."""
    root = tmp_path_factory.mktemp("reg") / "results"
    shutil.copytree(results, root)
    layout = Layout.of(root)
    rng = np.random.default_rng(1)
    for name in ("svr", "svr_med"):
        for au in AUS:
            ys = [rng.integers(0, 6, 40).astype(float) for _ in range(2)]
            xs = [rng.normal(0, 0.1, (40, 128)).astype(np.float32) + y[:, None] * 0.02 for y in ys]
            m = RegressorModel(au=au, backbone="dlib_resnet", crop_region="face", params=REG, classifier=name,
                               threshold=2).fit(xs[:1], ys[:1], xs[1:], ys[1:])
            m.bundle["feature_attrs"] = {"backbone": "dlib_resnet", "region": "face", "dim": 128}
            m.save(layout.model_file(SPLIT, f"dlib_resnet-face-{name}", au))
        label = np.tile(np.arange(6.0), 4)
        noise = 0.2 if name == "svr_med" else 2.0
        table = pd.DataFrame([{"subject": "SN002", "frame": f + 1, "au": au, "set": "val", "label": v,
                               "value": float(np.clip(v + rng.normal(0, noise), 0, 5))}
                              for au in AUS for f, v in enumerate(label)])
        path = layout.intensity_predictions(SPLIT, f"dlib_resnet-face-{name}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
    return root


def test_auto_chooses_the_best_regressor_on_validation(reg_results):
    assert default_regressor(reg_results, SPLIT) == "dlib_resnet-face-svr_med"


def test_predictor_writes_intensity_columns(face_video, reg_results):  # noqa: F811
    models = reg_results / "models" / SPLIT
    df = predict(face_video, models, model="dlib_resnet-face-svm", progress=False, largest_only=True, chunk_size=2)
    r = [f"AU{au:02d}_r" for au in AUS]
    assert list(df.columns)[6:-1] == [*au_columns(AUS), *r]
    ok = df["success"] == 1
    assert df.loc[ok, r].notna().all().all() and df.loc[~ok, r].isna().all().all()
    assert ((df.loc[ok, r] >= 0) & (df.loc[ok, r] <= 5)).all().all()
    plain = predict(face_video, models, model="dlib_resnet-face-svm", progress=False, largest_only=True,
                    regressor="dlib_resnet-face-svr")
    assert plain.loc[ok, r].notna().all().all()
    none = predict(face_video, models, model="dlib_resnet-face-svm", progress=False, largest_only=True,
                   regressor=None)
    assert not [c for c in none.columns if c.endswith("_r")]


def test_no_regressor_trained_means_no_intensity_columns(face_video, results):  # noqa: F811
    df = predict(face_video, results / "models" / SPLIT, model="dlib_resnet-face-svm", progress=False)
    assert not [c for c in df.columns if c.endswith("_r")]
    with pytest.raises(PredictError, match="--regressor dlib_resnet-face-ridge"):
        predict(face_video, results / "models" / SPLIT, model="dlib_resnet-face-svm", progress=False,
                regressor="dlib_resnet-face-ridge")


@pytest.mark.parametrize("method", ["mean", "weighted"])
def test_predictor_runs_regressor_ensembles_as_the_workflow_combines_them(
        face_video, reg_results, tmp_path, method):  # noqa: F811
    """``--regressor ens-...``: the predictor's ``_r`` columns equal the workflow's ensemble
    (:func:`~au_transfer.intensity.tables.ensemble_intensity`, weights from the members' validation rows) of the
    members' values on the same frames, a median-normalised member keeping its running median per face track."""
    from au_transfer.intensity.tables import ensemble_intensity

    root = tmp_path / "results"
    shutil.copytree(reg_results, root)
    layout, models = Layout.of(root), root / "models" / SPLIT
    members = ["dlib_resnet-face-svr", "dlib_resnet-face-svr_med"]
    r = [f"AU{au:02d}_r" for au in AUS]
    kw = dict(model="dlib_resnet-face-svm", progress=False, largest_only=True, chunk_size=2)
    paths = []
    for m in members:  # the members' test rows: the predictor's own values of each member on the video's faces
        df = predict(face_video, models, regressor=m, **kw)
        ok = df[df["success"] == 1]
        test = pd.DataFrame([{"subject": "clip", "frame": int(f), "au": au, "set": "test", "value": v, "label": 1.0}
                             for au in AUS for f, v in zip(ok["frame"], ok[f"AU{au:02d}_r"], strict=True)])
        path = tmp_path / f"{m}.csv"
        pd.concat([pd.read_csv(layout.intensity_predictions(SPLIT, m)), test]).to_csv(path, index=False)
        paths.append(path)
    name = f"ens-pair_{method}"
    workflow = ensemble_intensity(paths, members, method, tmp_path / "ens.csv",
                                  layout.intensity_ensemble_params(SPLIT, name), name=name, threshold=2)
    weights = yaml.safe_load(Path(layout.intensity_ensemble_params(SPLIT, name)).read_text())["weights"]
    if method == "weighted":  # the _med member is the better one on validation
        assert all(w[1] > w[0] for w in weights.values())
    df = predict(face_video, models, regressor=name, **kw)
    ok = df["success"] == 1
    want = workflow[workflow["set"] == "test"].pivot(index="frame", columns="au", values="value")
    got = df.loc[ok].set_index("frame")[r]
    np.testing.assert_allclose(got.to_numpy(), want.loc[got.index, list(AUS)].to_numpy(), rtol=1e-9, atol=1e-12)
    assert df.loc[~ok, r].isna().all().all()


def test_unknown_regressor_ensemble_is_named(face_video, reg_results):  # noqa: F811
    with pytest.raises(PredictError, match="--regressor ens-nope"):
        predict(face_video, reg_results / "models" / SPLIT, model="dlib_resnet-face-svm", progress=False,
                regressor="ens-nope")


def test_predictor_scores_a_median_classifier_with_its_running_median(face_video, results, tmp_path):  # noqa: F811
    """A ``svm_med`` occurrence model goes through the same running median as a ``_med`` regressor: here the plain
    SVM's estimator saved as ``svm_med``, so that (a linear model) its scores are the plain ones minus w . median.
    In one chunk every face has the same median: one constant shift per AU; chunk by chunk the median moves."""
    from au_transfer.classifiers.frame import load_model, save_model

    root = tmp_path / "results"
    shutil.copytree(results, root)
    models = root / "models" / SPLIT
    for au in AUS:
        b = load_model(Layout.of(root).model_file(SPLIT, "dlib_resnet-face-svm", au))
        save_model({**b, "classifier": "svm_med", "normalise": "median"},
                   Layout.of(root).model_file(SPLIT, "dlib_resnet-face-svm_med", au))
    kw = dict(progress=False, largest_only=True, regressor=None)
    p = [f"AU{au:02d}_p" for au in AUS]

    def shift(chunk_size):
        plain = predict(face_video, models, model="dlib_resnet-face-svm", chunk_size=chunk_size, **kw)
        med = predict(face_video, models, model="dlib_resnet-face-svm_med", chunk_size=chunk_size, **kw)
        ok = plain["success"] == 1
        return plain.loc[ok, p].to_numpy() - med.loc[ok, p].to_numpy()

    one = shift(64)
    np.testing.assert_allclose(one, np.repeat(one[:1], len(one), axis=0), rtol=1e-5, atol=1e-6)
    assert np.abs(one).max() > 1e-4
    running = shift(2)
    np.testing.assert_allclose(running[1], running[0], rtol=1e-5, atol=1e-6)  # the first chunk: its own median
    assert not np.allclose(running, np.repeat(running[:1], len(running), axis=0), rtol=1e-5, atol=1e-6)
