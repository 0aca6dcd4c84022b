"""The predictor on a short video made here: OpenFace-style columns, success = 0 on a blank frame, ensembles."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from au_transfer.faces import FaceSettings
from au_transfer.predict import (
    BASE_COLUMNS,
    PredictError,
    au_columns,
    face_settings,
    predict,
    predict_to_csv,
    read_manifest,
    write_manifest,
)

AUS = (1, 12)
SPLIT = "t"


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
    """6 frames: a face (scikit-image's astronaut, shifted a little each frame), frame 3 blank."""
    from skimage import data

    face = cv2.resize(data.astronaut(), (256, 256))
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (256, 256))
    for i in range(6):
        frame = np.zeros_like(face) if i == 2 else np.roll(face, 2 * i, axis=1)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results folder with two tiny dlib_resnet models (SVM, LDA fitted on random 128-D features), an ensemble
    of both fitted on hand-made validation predictions, and the run's predictor.json."""
    from au_transfer.classifiers.frame import make_bundle, make_estimator, save_model
    from au_transfer.ensemble import align, fit_ensemble
    from au_transfer.layout import Layout

    root = tmp_path_factory.mktemp("results")
    models = root / "models" / SPLIT
    rng = np.random.default_rng(0)
    attrs = {"backbone": "dlib_resnet", "region": "face", "dim": 128}
    for clf in ("svm", "lda"):
        for au in AUS:
            X = rng.normal(0, 0.1, (60, 128)).astype(np.float32)
            y = (X[:, au] > 0).astype(int)
            est = make_estimator(clf, {}, C=1.0).fit(X, y)
            bundle = make_bundle({"estimator": est}, au=au, backbone="dlib_resnet", region="face",
                                 crop_region="face", classifier=clf, params={}, seed=0, threshold=2, balance=True,
                                 refit="train", split=SPLIT, train=["SN001"], val=["SN002"], test=["SN003"],
                                 attrs=attrs, counts={})
            save_model(bundle, Layout.of(root).model_file(SPLIT, f"dlib_resnet-face-{clf}", au))
    # an ensemble of the two, fitted on hand-made validation rows (even members: the tie rule matters)
    preds = {}
    for k, m in enumerate(("dlib_resnet-face-svm", "dlib_resnet-face-lda")):
        rows = [{"subject": "SN002", "frame": f, "au": au, "set": "val", "score": s, "pred": int(s > 0),
                 "label": int(f % 2)} for au in AUS for f, s in enumerate(rng.normal(0, 1 + k, 20), 1)]
        preds[m] = pd.DataFrame(rows)
    params = fit_ensemble(align(preds, name="pair"), name="pair", method="majority", tie="score")
    (models / "ens-pair").mkdir(parents=True)
    (models / "ens-pair" / "ensemble.json").write_text(json.dumps(params))
    write_manifest(models / "predictor.json", split=SPLIT, aus=AUS, faces={"size": 160, "landmarks": "disfa"},
                   backbones={})
    return root


def test_predict_video_single_model(face_video, results, tmp_path):
    df = predict(face_video, results / "models" / SPLIT, model="dlib_resnet-face-svm", progress=False,
                 largest_only=True)
    assert list(df.columns) == [*BASE_COLUMNS, *au_columns(AUS), "file"]
    assert list(df.columns[:6]) == ["frame", "face", "timestamp", "success", "confidence", "reason"]
    assert list(df.columns[6:10]) == ["AU01_p", "AU12_p", "AU01_c", "AU12_c"]
    assert df["frame"].tolist() == [1, 2, 3, 4, 5, 6]
    assert df["success"].tolist() == [1, 1, 0, 1, 1, 1]
    blank = df.iloc[2]
    assert blank[au_columns(AUS)].isna().all()
    assert blank["confidence"] == 0 and blank["reason"] == "no_face_detected" and pd.isna(blank["face"])
    assert (df.loc[df["success"] == 1, "face"] == 0).all() and (df.loc[df["success"] == 1, "reason"] == "").all()
    faces = df[df["success"] == 1]
    assert faces[au_columns(AUS)].notna().all().all()
    assert set(faces["AU01_c"].astype(int)) <= {0, 1}
    assert (faces["AU01_c"] == (faces["AU01_p"] > 0).astype(int)).all()  # SVM: present when decision > 0
    assert (faces["confidence"] > 0.5).all()
    assert df["timestamp"].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    # the CLI path streams the same rows into a CSV
    out = tmp_path / "out.csv"
    stats = predict_to_csv(face_video, out, model="dlib_resnet-face-svm", results=results, split=SPLIT,
                           chunk_size=4, progress=False, largest_only=True)
    assert stats == {"frames": 6, "rows": 6, "faces": 5}
    written = pd.read_csv(out)
    assert list(written.columns) == list(df.columns)
    np.testing.assert_allclose(written["AU12_p"].to_numpy(), df["AU12_p"].to_numpy(dtype=float), rtol=1e-4)
    assert written["AU01_c"].isna().tolist() == [False, False, True, False, False, False]


def test_predict_ensemble_combines_members(face_video, results):
    from au_transfer.ensemble import apply_au, load_params

    models = results / "models" / SPLIT
    ens = predict(face_video, models, model="ens-pair", chunk_size=2, progress=False)
    svm = predict(face_video, models, model="dlib_resnet-face-svm", progress=False)
    lda = predict(face_video, models, model="dlib_resnet-face-lda", progress=False)
    assert ens[["frame", "face"]].equals(svm[["frame", "face"]])
    params = load_params(models / "ens-pair" / "ensemble.json")
    ok = ens["success"] == 1
    for au in AUS:
        c = f"AU{au:02d}"
        scores = np.column_stack([svm.loc[ok, f"{c}_p"], lda.loc[ok, f"{c}_p"]]).astype(float)
        votes = np.column_stack([svm.loc[ok, f"{c}_c"], lda.loc[ok, f"{c}_c"]]).astype(np.int8)
        score, pred = apply_au(params, au, scores, votes)
        np.testing.assert_allclose(ens.loc[ok, f"{c}_p"].to_numpy(float), score)
        assert ens.loc[ok, f"{c}_c"].astype(int).tolist() == pred.tolist()


def test_predict_folder_of_images(results, tmp_path):
    from skimage import data

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(cv2.resize(data.astronaut(), (256, 256)), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "b.png"), np.full((200, 200, 3), 127, np.uint8))
    df = predict(folder, results / "models" / SPLIT, model="dlib_resnet-face-lda", aus=[12], progress=False)
    assert df["file"].tolist() == ["a.png", "b.png"]
    assert df["success"].tolist() == [1, 0]
    assert df["timestamp"].isna().all()
    assert list(df.columns) == [*BASE_COLUMNS, "AU12_p", "AU12_c", "file"]


def test_missing_models_are_named(face_video, results, tmp_path):
    models = results / "models" / SPLIT
    with pytest.raises(PredictError, match=r"model ens-nope: no trained AU models .*ens-nope/ensemble.json does not "
                                           r"exist"):
        predict(face_video, models, model="ens-nope", progress=False)
    with pytest.raises(PredictError, match=r"model dlib_resnet-face-lstm: no trained AU models"):
        predict(face_video, models, model="dlib_resnet-face-lstm", progress=False)
    with pytest.raises(PredictError, match="models folder .* does not exist"):
        predict(face_video, tmp_path / "none", model="dlib_resnet-face-svm", progress=False)
    with pytest.raises(PredictError, match="input .* does not exist"):
        predict(tmp_path / "missing.avi", models, model="dlib_resnet-face-svm", progress=False)


# ------------------------------------------------------------------------------------------ the manifest
def test_manifest_face_part_is_the_faces_section(results):
    models = results / "models" / SPLIT
    manifest = json.loads((models / "predictor.json").read_text())
    want = FaceSettings.from_config({"size": 160, "landmarks": "disfa"})
    assert manifest["faces"] == want.to_dict()                  # every key, under its own name, defaults filled
    assert face_settings(read_manifest(models)) == want


def test_old_manifest_face_keys_are_read_once_mapped(caplog):
    old = {"size": 112, "margin": 0.15, "detector": "cnn", "upsample": 0, "detect_width": 320, "min_confidence": 0.1,
           "aspect": "stretch", "region_pad": 0.2, "region_forehead": 0.4, "min_image_std": 3.0, "encoding": "jpeg",
           "jpeg_quality": 90, "plausibility": {"jump": 0.6}}
    with caplog.at_level("WARNING"):
        got = face_settings({"faces": old}, "old/predictor.json")
    assert "predictor_manifest" in caplog.text and "old/predictor.json" in caplog.text
    assert got == FaceSettings.from_config(
        size=112, landmarks="dlib_cnn", dlib_upsample=0, dlib_detect_width=320, min_confidence=0.1,
        crop_aspect="stretch", region_pad=0.2, jpeg_quality=90, plausibility={"jump": 0.6})
    assert got.dlib_detector == "cnn"
    assert face_settings({"faces": {**old, "detector": "hog"}}).dlib_detector == "hog"
    with pytest.raises(PredictError, match=r"(?s)bad/predictor.json.*crop.*rerun the predictor_manifest rule"):
        face_settings({"faces": {"size": 112, "crop": 3}}, "bad/predictor.json")


def test_missing_manifest_uses_the_schema_defaults(tmp_path):
    assert face_settings(read_manifest(tmp_path)) == FaceSettings.from_config()


# ------------------------------------------------------------------------------------------ in the workflow
@pytest.mark.workflow
@pytest.mark.xdist_group("workflow")
def test_predict_reproduces_the_workflow_on_a_test_video(finished_workflow, tmp_path):
    """On a test subject's video, the predictor (its own dlib alignment, features, models, ensemble) agrees with
    the workflow's test predictions, for a frame model and for an ensemble with an LSTM and a fine-tuned CNN."""
    import yaml
    from conftest import TEST_CONFIG, predict_like_the_workflow

    wd = finished_workflow
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    (split,) = cfg["splits"]
    subject = cfg["splits"][split]["test"][0]
    ensemble = next(f"ens-{n}" for n, e in cfg["ensembles"].items()
                    if any(m.endswith("-softmax") for m in e["members"]) and any(m.endswith("-lstm") for m in e["members"]))
    for model in ("dlib_resnet-face-svm", ensemble):
        out = tmp_path / f"{model}.csv"
        agree, corr = predict_like_the_workflow(wd, split, subject, model, out, "--chunk-size", "16",
                                                data_root=cfg["data_root"])
        df = pd.read_csv(out)
        assert len(df) == cfg["data"]["demo"]["n_frames"]
        assert df["success"].mean() > 0.8
        assert agree > 0.85, (model, agree)
        assert corr > 0.7, (model, corr)
