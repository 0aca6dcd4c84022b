"""The predictor on messy real media: a video whose header overstates its frames, an unreadable image in a folder,
several faces in a frame, an output path that cannot be written, defaults that fit a finished run."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
from test_predict import AUS, SPLIT, results  # noqa: F401  (the fixture: a results folder with tiny models)

from au_transfer.cli import main
from au_transfer.predict import (
    FaceTracker,
    PredictError,
    default_model,
    predict,
    predict_to_csv,
    write_manifest,
)

MODEL = "dlib_resnet-face-svm"


def _face(size=256):
    from skimage import data

    return cv2.resize(data.astronaut(), (size, size))


def _video(path, n=12, truncate=None):
    face = _face()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (256, 256))
    for i in range(n):
        writer.write(cv2.cvtColor(np.roll(face, 2 * i, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * truncate)])
    return path


def test_video_shorter_than_its_header_keeps_every_decoded_frame(results, tmp_path, caplog):  # noqa: F811
    video = _video(tmp_path / "cut.avi", truncate=0.7)
    cap = cv2.VideoCapture(str(video))
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    out = tmp_path / "cut.csv"
    with caplog.at_level(logging.WARNING, logger="au_transfer"):
        stats = predict_to_csv(video, out, model=MODEL, results=results, split=SPLIT, chunk_size=4, progress=False,
                               largest_only=True)
    df = pd.read_csv(out)
    assert 0 < stats["frames"] < header == 12
    assert df["frame"].tolist() == list(range(1, stats["frames"] + 1))
    warnings = [r.getMessage() for r in caplog.records if "decoding stopped" in r.getMessage()]
    assert len(warnings) == 1 and f"after frame {stats['frames']} of the {header}" in warnings[0]


def test_nothing_decodable_is_an_error(results, tmp_path):  # noqa: F811
    bad = tmp_path / "noise.avi"
    bad.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    out = tmp_path / "o.csv"
    assert main(["predict", str(bad), "-o", str(out), "--results", str(results), "--split", SPLIT, "--model", MODEL,
                 "-q"]) == 1
    assert not out.exists()


def test_unreadable_image_in_a_folder_gets_a_row_and_the_rest_goes_on(results, tmp_path):  # noqa: F811
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(_face(), cv2.COLOR_RGB2BGR))
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cv2.imwrite(str(folder / "c.png"), cv2.cvtColor(_face(), cv2.COLOR_RGB2GRAY))  # grayscale
    rgba = cv2.cvtColor(_face(), cv2.COLOR_RGB2BGRA)
    cv2.imwrite(str(folder / "d.png"), rgba)  # with an alpha channel
    df = predict(folder, results / "models" / SPLIT, model=MODEL, progress=False, largest_only=True)
    assert df["file"].tolist() == ["a.png", "b.jpg", "c.png", "d.png"]
    assert df["success"].tolist() == [1, 0, 1, 1]
    assert df.loc[1, "reason"] == "unreadable_frame"


def test_two_faces_give_two_rows_numbered_by_size(results, tmp_path):  # noqa: F811
    from skimage import data

    head = data.astronaut()[10:270, 110:370]     # the head alone (dlib sees a face in her suit too)
    canvas = np.full((300, 600, 3), 90, np.uint8)
    canvas[20:276, 10:266] = cv2.resize(head, (256, 256))     # the larger face, left
    canvas[60:260, 380:580] = cv2.resize(head, (200, 200))    # a smaller one, right
    image = tmp_path / "two.png"
    cv2.imwrite(str(image), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    df = predict(image, results / "models" / SPLIT, model=MODEL, progress=False)
    ok = df[df["success"] == 1]
    assert ok["face"].tolist() == [0, 1]
    assert ok[[f"AU{a:02d}_p" for a in AUS]].notna().all().all()
    one = predict(image, results / "models" / SPLIT, model=MODEL, progress=False, largest_only=True)
    assert len(one) == 1 and one.loc[0, "face"] == 0
    np.testing.assert_allclose(one.loc[0, "AU01_p"], ok.iloc[0]["AU01_p"])


def _fake_face(cx, cy, size):
    s = size / 160  # aligned crop of 160 px covering a face of ``size`` frame pixels
    m = np.array([[1 / s, 0, 80 - cx / s], [0, 1 / s, 80 - cy / s]])
    return SimpleNamespace(transform=m, crop=np.zeros((160, 160, 3), np.uint8))


def test_faces_keep_their_number_by_position():
    tracker = FaceTracker()
    assert tracker.assign([_fake_face(100, 100, 80), _fake_face(400, 100, 60)]) == [0, 1]
    # the right face comes closer (now the larger, listed first): numbers follow positions, not sizes
    assert tracker.assign([_fake_face(405, 102, 90), _fake_face(98, 100, 70)]) == [1, 0]
    assert tracker.assign([_fake_face(250, 300, 60)]) == [2]  # somewhere else: a new face


@pytest.mark.parametrize("target", ["folder", "missing_parent"])
def test_output_path_is_checked_before_any_work(results, tmp_path, target):  # noqa: F811
    out = tmp_path if target == "folder" else tmp_path / "no" / "such" / "out.csv"
    with pytest.raises(PredictError, match="is a folder|does not exist"):
        predict_to_csv(tmp_path / "not_read.avi", out, model=MODEL, results=results, split=SPLIT, progress=False)


def test_unknown_au_names_the_option(results, tmp_path):  # noqa: F811
    with pytest.raises(PredictError, match=r"--aus: model dlib_resnet-face-svm does not predict AU\(s\) \[5\]"):
        predict(_video(tmp_path / "v.avi", n=2), results / "models" / SPLIT, model=MODEL, aus=[1, 5],
                progress=False)


def test_detector_is_selectable_at_predict_time(results):  # noqa: F811
    from au_transfer.predict import Predictor

    assert Predictor(MODEL, results=results, split=SPLIT).face.dlib_detector == "hog"
    assert Predictor(MODEL, results=results, split=SPLIT, detector="cnn").face.dlib_detector == "cnn"


def _val_predictions(results, model, agree, test_agree):  # noqa: F811
    rng = np.random.default_rng(1)
    rows = []
    for au in AUS:
        for subject, which, p_agree in (("SN002", "val", agree), ("SN003", "test", test_agree)):
            label = rng.integers(0, 2, 40)
            pred = np.where(rng.random(40) < p_agree, label, 1 - label)
            rows += [{"subject": subject, "frame": f, "au": au, "set": which, "score": float(p), "pred": int(p),
                      "label": int(y)} for f, (p, y) in enumerate(zip(pred, label, strict=True), 1)]
    path = results / "predictions" / SPLIT / f"{model}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def test_defaults_choose_the_split_and_the_best_model_on_validation(results, tmp_path, capsys, caplog):  # noqa: F811
    _val_predictions(results, "dlib_resnet-face-svm", 0.6, test_agree=1.0)  # the best on test: never a reason
    _val_predictions(results, "dlib_resnet-face-lda", 0.9, test_agree=0.0)
    _val_predictions(results, "dlib_resnet-face-lstm", 1.0, test_agree=1.0)  # best on validation, not trained here
    model, f1 = default_model(results, SPLIT)
    assert model == "dlib_resnet-face-lda" and f1 > 0.8
    manifest = results / "models" / SPLIT / "predictor.json"
    write_manifest(manifest, split=SPLIT, aus=AUS, faces={"size": 160, "landmarks": "disfa"}, backbones={},
                   corpus="synthetic demo corpus")
    out = tmp_path / "o.csv"
    with caplog.at_level(logging.WARNING, logger="au_transfer"):
        assert main(["predict", str(_video(tmp_path / "v.avi", n=2)), "-o", str(out), "--results", str(results),
                     "-q"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("model dlib_resnet-face-lda (split t): the best mean F1 on validation frames")
    assert any("synthetic demo corpus" in r.getMessage() for r in caplog.records)
    assert len(pd.read_csv(out)) >= 2


def test_default_model_ranks_only_out_of_sample_validation_predictions(results, tmp_path, caplog):  # noqa: F811
    """An ensemble that fits calibration, weights or stacking on the validation rows (its ensemble.json) and a
    model that the manifest lists as refitted on them (val_in_sample) are best on validation, in sample: never the
    default; a majority vote with a fixed tie rule is ranked like a model."""
    import json
    import shutil

    from au_transfer.predict import in_sample_models, validation_ranking

    results = shutil.copytree(results, tmp_path / "results")  # the module's fixture stays as it was
    shutil.rmtree(results / "predictions" / SPLIT, ignore_errors=True)
    models = results / "models" / SPLIT
    shutil.rmtree(models / "ens-pair")  # the fixture's own ensemble (tie: score, so in sample too)
    _val_predictions(results, "dlib_resnet-face-lda", 0.8, test_agree=0.5)
    for name, method, tie, agree in (("stack", "stacked", "score", 1.0), ("cal", "majority", "score", 1.0),
                                     ("vote", "majority", "absent", 0.9)):
        _val_predictions(results, f"ens-{name}", agree, test_agree=0.5)
        (models / f"ens-{name}").mkdir(parents=True, exist_ok=True)
        (models / f"ens-{name}" / "ensemble.json").write_text(json.dumps(
            {"name": name, "method": method, "tie": tie, "members": [MODEL, "dlib_resnet-face-lda"], "aus": {}}))
    assert set(in_sample_models(results, SPLIT)) == {"ens-stack", "ens-cal"}
    ranking = validation_ranking(results, SPLIT).set_index("model")
    assert ranking.loc["ens-stack", "in_sample"] == "fits its stacking on the validation rows"
    assert ranking.loc["ens-cal", "in_sample"] == "fits its calibration on the validation rows"
    assert ranking.loc["ens-vote", "in_sample"] == ""
    assert default_model(results, SPLIT)[0] == "ens-vote"
    manifest = json.loads((models / "predictor.json").read_text())
    write_manifest(models / "predictor.json", split=SPLIT, aus=AUS, faces=manifest["faces"], backbones={},
                   val_in_sample={"ens-vote": "member(s) ['dlib_resnet-face-svm'] are in sample on validation"})
    with caplog.at_level(logging.INFO, logger="au_transfer"):
        assert default_model(results, SPLIT)[0] == "dlib_resnet-face-lda"
    assert any("ens-cal, ens-stack, ens-vote" in r.getMessage() for r in caplog.records)
