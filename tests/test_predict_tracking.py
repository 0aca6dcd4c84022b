"""The predictor's speed-ups keep its results: faces followed between detections agree with per-frame detection,
and a multilabel fine-tuned network loaded once scores as the per-AU files do."""

from __future__ import annotations

from pathlib import Path

import conftest
import numpy as np
import pandas as pd
import pytest
import torch
from test_predict import AUS, SPLIT, results  # noqa: F401  (the fixture: a results folder with tiny models)

from au_transfer.faces.track import BoxTracker, box_from_points, box_relation, points_jump
from au_transfer.predict import PredictError, Predictor, iter_predictions, predict


def _points(cx=100.0, cy=120.0, scale=1.0):
    """A plausible 68-point set (the alignment template) placed in a frame."""
    from au_transfer.faces.align import TEMPLATE_68

    t = np.asarray(TEMPLATE_68, np.float64)
    return (t - t.mean(0)) * 80 * scale + [cx, cy]


def test_box_relation_round_trip_and_follows_the_points():
    pts = _points()
    box = (40.0, 50.0, 170.0, 190.0, 0.9)
    rel = box_relation(box, pts)
    assert np.allclose(box_from_points(pts, rel), box[:4])
    moved = box_from_points(pts + [7, -3], rel)  # the face moved: the box moves with it
    assert np.allclose(moved, np.array(box[:4]) + [7, -3, 7, -3])
    assert points_jump(pts, pts + [7, -3]) > 0 and points_jump(pts, pts) == 0


def test_tracker_detects_every_n_frames_and_when_lost():
    pts = _points()
    tr = BoxTracker(3, max_jump=0.5)
    assert tr.due()  # nothing to follow
    tr.detected([((40, 50, 170, 190, 0.9), pts)])
    assert not tr.due() and tr.boxes()[0][1] == pytest.approx(0.9)
    assert tr.tracked([pts + 1])
    assert not tr.due()
    assert tr.tracked([pts + 2])
    assert tr.due()  # third frame after the detection
    tr.detected([((40, 50, 170, 190, 0.9), pts)])
    assert not tr.tracked([None])  # a failed check: lost, the caller detects again
    assert not tr.tracked([pts + 200])  # a jump: lost
    tr.detected([])
    assert tr.due()  # no face: detect on the next frame
    assert BoxTracker(1).due()
    with pytest.raises(ValueError, match="at least 1"):
        BoxTracker(0)


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    """A short synthetic demo video (a rendered face that moves and makes expressions)."""
    return conftest.demo_video(tmp_path_factory.mktemp("demo"), n_frames=16, seed=3)


@pytest.fixture(scope="module")
def still_video(demo_video, tmp_path_factory):
    """The demo video's first frame, held for 12 frames."""
    import cv2

    cap = cv2.VideoCapture(str(demo_video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    path = tmp_path_factory.mktemp("still") / "still.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, frame.shape[1::-1])
    for _ in range(12):
        writer.write(frame)
    writer.release()
    return path


def _run(results, video, every, front_end="thread"):  # noqa: F811
    """The table and the detector's calls (counted on the in-process detector with the thread front end, else as
    the worker process reports them)."""
    import pandas as pd

    with Predictor("dlib_resnet-face-svm", model_dir=results / "models" / SPLIT, front_end=front_end) as p:
        calls = []
        if front_end == "thread":
            lm = p.landmarker()
            detect = lm.detect
            lm.detect = lambda rgb: calls.append(1) or detect(rgb)
        parts = iter_predictions(video, p, chunk_size=5, progress=False, detect_every=every)
        table = pd.concat(list(parts), ignore_index=True)
        assert p.detections == len(calls) or front_end != "thread"
        return table, (len(calls) if front_end == "thread" else p.detections)


def test_tracking_on_a_still_video_gives_the_per_frame_results(results, still_video):  # noqa: F811
    every, n_every = _run(results, still_video, 1)
    tracked, n_tracked = _run(results, still_video, 5)
    assert n_every == len(every) == 12 and n_tracked == 3  # frames 1, 6, 11
    assert tracked["success"].all()
    # the same boxes, landmarks, faces and scores; a followed face keeps the confidence of its last detection
    pd.testing.assert_frame_equal(tracked.drop(columns="confidence"), every.drop(columns="confidence"))
    assert tracked["confidence"].iloc[[0, 5, 10]].tolist() == every["confidence"].iloc[[0, 5, 10]].tolist()


def test_tracking_agrees_with_detection_on_every_frame(results, demo_video):  # noqa: F811
    every, n_every = _run(results, demo_video, 1)
    tracked, n_tracked = _run(results, demo_video, 5)
    assert n_every == len(every) == 16
    assert n_tracked < n_every / 2  # the detector ran on a few frames only
    assert tracked["success"].tolist() == every["success"].tolist()
    assert tracked["success"].all()
    assert tracked["face"].tolist() == every["face"].tolist()
    assert tracked["confidence"].iloc[0] == every["confidence"].iloc[0]
    for au in AUS:
        a, b = tracked[f"AU{au:02d}_p"].to_numpy(float), every[f"AU{au:02d}_p"].to_numpy(float)
        assert a[0] == b[0]  # a detection frame
        # on a moving face, tracking differs from detection by less than detection moves from frame to frame
        assert np.abs(a - b).max() <= np.abs(np.diff(b)).max(), (au, a, b)


def test_the_front_end_process_gives_the_thread_results(results, demo_video):  # noqa: F811
    """The faces found in the worker process are those of the thread: the same table, the same detections."""
    for every in (1, 5):
        thread, n_thread = _run(results, demo_video, every)
        process, n_process = _run(results, demo_video, every, front_end="process")
        pd.testing.assert_frame_equal(process, thread)
        assert n_process == n_thread > 0


def test_detection_interval_is_checked(results, demo_video):  # noqa: F811
    with pytest.raises(PredictError, match="detect_every"):
        predict(demo_video, results / "models" / SPLIT, model="dlib_resnet-face-svm", progress=False, detect_every=0)


def _multilabel(results_root: Path, aus) -> None:
    from au_transfer.backbones import create_backbone
    from au_transfer.finetune.bundle import save_bundle
    from au_transfer.finetune.net import FinetuneNet
    from au_transfer.layout import Layout

    layout = Layout.of(results_root)
    torch.manual_seed(0)
    net = FinetuneNet(create_backbone("dlib_resnet", "random", seed=1), len(aus))
    group = Path(layout.ft_network(SPLIT, "dlib_resnet", "face", "multilabel-face"))
    group.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(group, net, backbone="dlib_resnet", weights="random", region="face", crop_region="face",
                aus=list(aus), au=aus[0], au_index=0, input_size=150, status="ok", model="dlib_resnet_ft-face-softmax")
    bundle = torch.load(group, weights_only=True)
    for k, au in enumerate(aus):
        torch.save(dict(bundle, au=au, au_index=k, status="skipped" if k == 2 else "ok"),
                   layout.finetune_net(SPLIT, "dlib_resnet", "face", au))


def test_a_multilabel_network_is_loaded_and_run_once(tmp_path):
    from au_transfer.device import resolve_device
    from au_transfer.layout import Layout
    from au_transfer.models import load_au_model
    from au_transfer.predict import FaceChunk, Inputs

    aus = (1, 2, 4)
    _multilabel(tmp_path, aus)
    layout = Layout.of(tmp_path)
    inputs = Inputs(layout, SPLIT, {}, resolve_device("cpu"), batch_size=4)
    rng = np.random.default_rng(0)
    chunk = FaceChunk(rng.integers(0, 256, (6, 160, 160, 3), dtype=np.uint8), np.zeros((6, 3, 4)), "pad")
    for au in aus:
        path = Path(layout.finetune_net(SPLIT, "dlib_resnet", "face", au))
        shared = inputs.load_model(path, "dlib_resnet_ft-face-softmax", au, device="cpu", batch_size=4)
        alone = load_au_model(path, "dlib_resnet_ft-face-softmax", au, device="cpu", batch_size=4)
        assert shared.needs == alone.needs
        crops = inputs(shared.needs, shared.model_id, au, chunk)
        s1, p1 = shared.score(crops)
        s2, p2 = alone.score(crops)
        np.testing.assert_array_equal(s1, s2)  # same network, same batches: the same numbers
        np.testing.assert_array_equal(p1, p2)
        assert np.isnan(s1).all() == (au == 4)  # the skipped AU has no opinion
    assert len(inputs._shared) == 1  # one network for the three AU files


def test_command_line_default_interval_is_the_predictors():
    from au_transfer import cli
    from au_transfer.predict import DETECT_EVERY

    assert cli.DETECT_EVERY == DETECT_EVERY
    args = cli.build_parser().parse_args(["predict", "v.mp4", "-o", "o.csv"])
    assert args.detect_every == DETECT_EVERY
    assert cli.build_parser().parse_args(["predict", "v.mp4", "-o", "o.csv", "--detect-every", "1"]).detect_every == 1


def test_outputs_computed_ahead_by_batch_are_those_of_the_chunk(tmp_path, monkeypatch):
    """The predictor runs the networks on each batch of a track's faces as it arrives (Inputs.batch_outputs, then
    attach): the models then read the very values the chunk would have computed, and no network runs again."""
    from au_transfer.device import resolve_device
    from au_transfer.faces.regions import cut_region
    from au_transfer.layout import Layout
    from au_transfer.models import Needs
    from au_transfer.predict import FaceChunk, FeatureNet, Inputs
    from au_transfer.predict.inputs import SharedNetwork

    aus = (1, 2, 4)
    _multilabel(tmp_path, aus)
    layout = Layout.of(tmp_path)
    inputs = Inputs(layout, SPLIT, {"backbones": {"dlib_resnet": {"weights": "random"}}}, resolve_device("cpu"),
                    batch_size=4)
    models = [inputs.load_model(Path(layout.finetune_net(SPLIT, "dlib_resnet", "face", au)),
                                "dlib_resnet_ft-face-softmax", au, device="cpu", batch_size=4) for au in aus]
    feats = Needs("features", "dlib_resnet", "face")
    crop = inputs.check(feats, "dlib_resnet-face-svm", 1)
    assert len(inputs.outputs) == 2  # the frozen backbone's features, the multilabel network's probabilities
    faces = np.random.default_rng(0).integers(0, 256, (6, 160, 160, 3), dtype=np.uint8)
    crops = {crop: np.stack([cut_region(f, None, crop[1], "pad") for f in faces])}

    whole = FaceChunk(faces, np.zeros((6, 3, 4)), "pad", dict(crops))
    expected_features = inputs(feats, "dlib_resnet-face-svm", 1, whole)
    expected = [m.score(inputs(m.needs, m.model_id, m.au, whole)) for m in models]

    ahead = FaceChunk(faces, np.zeros((6, 3, 4)), "pad", dict(crops))
    parts = [inputs.batch_outputs({k: v[i:i + 4] for k, v in crops.items()}) for i in (0, 4)]  # 4 faces, then 2
    with pytest.raises(ValueError, match="5 precomputed outputs for a chunk of 6"):
        inputs.attach(ahead, [{k: v[:1] for k, v in parts[1].items()}, parts[0]])
    inputs.attach(ahead, parts)

    def ran(*_):
        raise AssertionError("a network ran again")

    monkeypatch.setattr(FeatureNet, "batch", ran)
    monkeypatch.setattr(SharedNetwork, "batch", ran)
    np.testing.assert_array_equal(inputs(feats, "dlib_resnet-face-svm", 1, ahead), expected_features)
    for m, (score, pred) in zip(models, expected, strict=True):
        s, p = m.score(inputs(m.needs, m.model_id, m.au, ahead))
        np.testing.assert_array_equal(s, score)
        np.testing.assert_array_equal(p, pred)
