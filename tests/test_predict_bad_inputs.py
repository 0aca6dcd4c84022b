"""The predictor's bad-input probe cases about media: a truncated JPEG is an unreadable frame that says so (not a
frame without a face), and a folder of images says what it skipped (a video, a text file)."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from test_predict import SPLIT, results  # noqa: F401  (fixtures)

from au_transfer.cli import main
from au_transfer.faces.video import truncated
from au_transfer.predict import predict


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    face = cv2.cvtColor(cv2.resize(data.astronaut(), (256, 256)), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(root / "whole.jpg"), face)
    data_ = (root / "whole.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data_[: len(data_) * 2 // 3])
    cv2.imwrite(str(root / "whole.png"), face)
    png = (root / "whole.png").read_bytes()
    (root / "cut.png").write_bytes(png[: len(png) // 2])
    return root


def test_truncated_images_are_recognised(photos):
    assert truncated(photos / "whole.jpg") == "" and truncated(photos / "whole.png") == ""
    assert truncated(photos / "cut.jpg") and truncated(photos / "cut.png")
    # OpenCV alone decodes the cut JPEG (its lost part grey): why the check is needed
    assert cv2.imread(str(photos / "cut.jpg")) is not None


def test_a_truncated_jpeg_input_is_an_error_that_says_so(photos, results, tmp_path, capsys):  # noqa: F811
    rc = main(["predict", str(photos / "cut.jpg"), "-o", str(tmp_path / "o.csv"), "-q", "--results", str(results),
               "--split", SPLIT, "--model", "dlib_resnet-face-svm", "--front-end", "thread"])
    err = capsys.readouterr().err
    assert rc == 1 and "cut.jpg is truncated" in err and "unreadable" in err, err
    assert not (tmp_path / "o.csv").exists()


def test_a_folder_marks_its_truncated_image_and_names_what_it_skipped(photos, results, tmp_path, caplog):  # noqa: F811
    folder = tmp_path / "study"
    folder.mkdir()
    for name in ("1.jpg", "2.jpg"):
        (folder / name).write_bytes((photos / ("whole.jpg" if name == "1.jpg" else "cut.jpg")).read_bytes())
    (folder / "clip.mp4").write_bytes(b"\0" * 100)
    (folder / "notes.txt").write_text("session notes")
    with caplog.at_level(logging.WARNING):
        df = predict(folder, results / "models" / SPLIT, model="dlib_resnet-face-svm", progress=False,
                     front_end="thread")
    assert df["file"].tolist() == ["1.jpg", "2.jpg"]
    assert df["success"].tolist() == [1, 0] and df["reason"].tolist()[1] == "unreadable_frame"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    skipped = [m for m in lines if "skipped, not images" in m]
    assert len(skipped) == 1 and "clip.mp4 (a video: give it as an input of its own)" in skipped[0], lines
    assert "notes.txt" in skipped[0]
    assert any("2.jpg is truncated" in m for m in lines), lines
    assert np.isnan(df.loc[1, "AU01_p"])
