"""The predictor's face front end in a worker process (au_transfer.predict.face_worker): the same frames as in a
thread, errors and warnings of the child reach the caller, a child that dies or an input left early is handled, and
the child ends with its predictor."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys

import numpy as np
import pytest
from conftest import demo_video
from test_predict import SPLIT, results  # noqa: F401  (the fixture: a results folder with tiny models)

from au_transfer.faces.settings import FaceSettings
from au_transfer.faces.video import VideoError
from au_transfer.predict.face_worker import FaceWorker, FaceWorkerError
from au_transfer.predict.faces import FaceStream

CROPS = [("face", 48), ("upper", 32)]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return demo_video(tmp_path_factory.mktemp("demo"), n_frames=12, seed=5)


@pytest.fixture(scope="module")
def settings():
    return FaceSettings.from_config({})


@pytest.fixture
def worker(settings):
    w = FaceWorker(settings)
    yield w
    w.close()


def _frames(worker, src, **kw):
    opts = {"largest_only": False, "detect_every": 5, "video": True, "crops": CROPS} | kw
    return worker.frames(src, **opts)


def test_the_worker_module_does_not_import_torch():
    code = "import sys, au_transfer.predict.face_worker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_worker_gives_the_frames_of_the_calling_thread(worker, settings, video):
    here = FaceStream(video, settings, settings.landmarker(), largest_only=False, detect_every=5, video=True,
                      crops=CROPS)
    expected = list(here)
    seen = []
    got = list(_frames(worker, video, on_frame=lambda: seen.append(1)))
    assert len(got) == len(expected) == 12 == len(seen)
    assert worker.detections == here.detections > 0
    for a, b in zip(got, expected, strict=True):
        assert (a.no, a.name, a.reason, [i for i, _ in a.faces]) == (b.no, b.name, b.reason, [i for i, _ in b.faces])
        for (_, fa), (_, fb) in zip(a.faces, b.faces, strict=True):
            assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.boxes, fb.boxes)
            assert fa.confidence == fb.confidence
        for ca, cb in zip(a.crops, b.crops, strict=True):
            assert ca.keys() == cb.keys() and all(np.array_equal(ca[k], cb[k]) for k in ca)


def test_an_error_of_an_input_is_raised_and_the_worker_serves_the_next(worker, video, tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"not a video" * 100)
    pid = worker._proc.pid
    with pytest.raises(VideoError, match="broken.avi"):
        list(_frames(worker, bad))
    assert len(list(_frames(worker, video))) == 12
    assert worker._proc.pid == pid  # the same child: an input's error does not end it


def test_an_input_left_early_ends_the_child_and_the_next_input_gets_a_new_one(worker, video):
    it = _frames(worker, video, ahead=1)
    assert next(it).no == 1
    proc = worker._proc
    it.close()
    assert proc.wait(timeout=10) is not None  # it would have gone on sending the rest of the video
    assert [f.no for f in _frames(worker, video)] == list(range(1, 13))
    assert worker._proc.pid != proc.pid


def test_a_child_that_dies_is_an_error_naming_the_input(worker, video):
    it = _frames(worker, video, ahead=1)
    next(it)
    worker._proc.kill()
    with pytest.raises(FaceWorkerError, match=r"ended \(exit code -9\) while reading .*SN001"):
        list(it)
    assert len(list(_frames(worker, video))) == 12  # a fresh child for the next input


def test_the_childs_warnings_reach_the_callers_logging(worker, tmp_path, caplog):
    """A video whose header overstates its frames: the child's one warning is logged here, as from a thread."""
    import cv2

    src = demo_video(tmp_path, "SN002", n_frames=8, seed=1, width=160, height=120)
    data = src.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])  # the header still says 8 frames
    cap = cv2.VideoCapture(str(cut))
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    with caplog.at_level(logging.WARNING, logger="au_transfer"):
        got = list(_frames(worker, cut))
    assert 0 < len(got) < header == 8
    msgs = [r.getMessage() for r in caplog.records if "decoding stopped" in r.getMessage()]
    assert len(msgs) == 1 and f"after frame {len(got)}" in msgs[0]
    assert caplog.records[-1].name.startswith("au_transfer")


def test_the_child_ends_with_close_and_with_garbage_collection(settings, video):
    w = FaceWorker(settings)
    proc = w._proc
    assert len(list(_frames(w, video))) == 12
    w.close()
    assert proc.wait(timeout=10) == 0  # idle, asked to end: a clean exit
    w.close()  # again: nothing to do
    w1 = FaceWorker(settings)
    w1.close()  # still loading dlib's models: ended anyway
    assert w1._proc is None
    w2 = FaceWorker(settings)
    proc2 = w2._proc
    del w2
    gc.collect()
    assert proc2.wait(timeout=10) is not None


def test_a_worker_that_cannot_start_falls_back_to_the_thread_only_by_default(results, monkeypatch, caplog):  # noqa: F811
    from au_transfer.predict import PredictError, Predictor

    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with caplog.at_level(logging.WARNING, logger="au_transfer"):
        p = Predictor("dlib_resnet-face-svm", model_dir=results / "models" / SPLIT)
    assert p.front_end == "thread" and p._worker is None
    assert any("could not start the face front end" in r.getMessage() and "thread instead" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(PredictError, match="could not start the face front end"):
        Predictor("dlib_resnet-face-svm", model_dir=results / "models" / SPLIT, front_end="process")
