"""Many inputs in one `au-transfer predict`: one CSV per input named after it, a broken input that does not stop the
others, one predictor for all, inputs read side by side, resume (skip complete, redo changed), frame sampling with
tracking, and the pictures (--plot, --overlay)."""

from __future__ import annotations

import json
import os
import time

import conftest
import cv2
import numpy as np
import pandas as pd
import pytest
from test_predict import AUS, SPLIT, results  # noqa: F401  (the fixture: a results folder with tiny models)
from test_predict_media import _video

from au_transfer.cli import main
from au_transfer.predict import Predictor, expand_inputs, iter_predictions, output_names
from au_transfer.predict.batch import RECORD_SUFFIX

MODEL = "dlib_resnet-face-svm"


def _argv(results, *args):  # noqa: F811
    return ["predict", *map(str, args), "--results", str(results), "--split", SPLIT, "--model", MODEL, "-q"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two short videos, one with the name of the other in another folder, a folder of 2 images (with a stray .txt),
    and a broken video."""
    root = tmp_path_factory.mktemp("study")
    (root / "day2").mkdir()
    a = _video(root / "clip.avi", n=4)
    b = _video(root / "day2" / "clip.avi", n=3)
    imgs = root / "stills"
    imgs.mkdir()
    cap = cv2.VideoCapture(str(a))
    for i in range(2):
        ok, face = cap.read()
        assert ok
        cv2.imwrite(str(imgs / f"{i + 1}.png"), face)
    cap.release()
    (imgs / "notes.txt").write_text("not an image")
    broken = root / "broken.avi"
    broken.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    return {"root": root, "a": a, "b": b, "imgs": imgs, "broken": broken}


def test_inputs_are_expanded_and_names_disambiguated(study):
    root = study["root"]
    inputs, notes = expand_inputs([str(root / "*.avi"), root / "day2", root / "stills", root / "nope.avi"])
    assert inputs == [study["broken"], study["a"], study["b"], study["imgs"]]
    assert any("nope.avi: does not exist" in n for n in notes)
    assert any("notes.txt" in n and "skipped" in n for n in notes)  # said, not skipped without a word
    mapping, renamed = output_names(inputs, "out")
    names = {p.name: str(mapping[p]) for p in inputs}
    assert mapping[study["broken"]] == mapping[study["broken"]].parent / "broken.csv"
    assert mapping[study["imgs"]].name == "stills.csv"
    a, b = mapping[study["a"]].name, mapping[study["b"]].name
    assert a != b and "day2" in b, names  # the two clip.avi are told apart by their folders
    assert len(renamed) == 2 and all("clip.avi" in r for r in renamed)
    # a folder of videos: each video is an input of its own
    assert expand_inputs([root / "day2"])[0] == [study["b"]]


def _csvs(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.csv"))}


def test_a_batch_with_a_broken_input_predicts_the_others_with_one_predictor(study, results, tmp_path, capsys,  # noqa: F811
                                                                          monkeypatch):
    built = []
    init = Predictor.__init__
    monkeypatch.setattr(Predictor, "__init__", lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    out = tmp_path / "out"
    root = study["root"]
    rc = main(_argv(results, study["broken"], study["a"], study["b"], study["imgs"], "-o", f"{out}/",
                    "--front-end", "thread"))
    captured = capsys.readouterr()
    assert rc == 1
    assert len(built) == 1  # the networks loaded once for the four inputs
    assert len(_csvs(out)) == 3
    fails = [line for line in captured.out.splitlines() if "FAILED" in line]
    assert len(fails) == 1 and str(study["broken"]) in fails[0]
    assert "failed:" in captured.err and str(study["broken"]) in captured.err
    assert "3 done, 0 skipped (complete), 1 failed, of 4" in captured.out
    assert not list(out.glob("broken*"))
    mapping, _ = output_names([study["broken"], study["a"], study["b"], study["imgs"]], out)
    for src, n in ((study["a"], 4), (study["b"], 3), (study["imgs"], 2)):
        df = pd.read_csv(mapping[src])
        assert df["frame"].tolist() == list(range(1, n + 1)) and df["success"].all()
    assert str(root) in captured.out  # the mapping of the colliding names is printed


def test_inputs_read_side_by_side_give_the_tables_of_one_at_a_time(study, results, tmp_path):  # noqa: F811
    """Two front-end processes reading two inputs at once, their chunks scored in turn, write the CSVs that one
    input at a time writes (each input's face tracks keep their own sequence state)."""
    one, two = tmp_path / "one", tmp_path / "two"
    args = [study["a"], study["b"], study["imgs"]]
    assert main(_argv(results, *args, "-o", f"{one}/", "--workers", "1", "--chunk-size", "2")) == 0
    assert main(_argv(results, *args, "-o", f"{two}/", "--workers", "2", "--chunk-size", "2")) == 0
    assert _csvs(one) == _csvs(two) and len(_csvs(one)) == 3


def test_a_rerun_skips_complete_inputs_and_redoes_changed_ones(study, results, tmp_path, capsys):  # noqa: F811
    work = tmp_path / "in"
    work.mkdir()
    a = _video(work / "a.avi", n=3)
    b = _video(work / "b.avi", n=3)
    out = tmp_path / "out"
    argv = _argv(results, work, "-o", f"{out}/", "--front-end", "thread")
    assert main(argv) == 0
    record = json.loads((out / f"a.csv{RECORD_SUFFIX}").read_text())
    assert record["input"]["size"] == a.stat().st_size and record["model"]["model"] == MODEL
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("*.csv")}
    capsys.readouterr()

    assert main(argv) == 0  # nothing changed: both skipped, and said so
    text = capsys.readouterr().out
    assert text.count("skipped") >= 2 and "0 done, 2 skipped" in text
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.csv")} == stamp

    time.sleep(0.01)
    _video(b, n=5)  # b changed: redone; a still skipped
    assert main(argv) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out
    assert len(pd.read_csv(out / "b.csv")) == 5 and (out / "a.csv").stat().st_mtime_ns == stamp[out / "a.csv"]

    model_file = next((results / "models" / SPLIT / MODEL).glob(f"AU{AUS[0]}.*"))
    st = model_file.stat()
    os.utime(model_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the model changed: everything redone
    try:
        assert main(argv) == 0
        assert "2 done, 0 skipped" in capsys.readouterr().out
    finally:
        os.utime(model_file, ns=(st.st_atime_ns, st.st_mtime_ns))

    assert main([*argv, "--every", "2"]) == 0  # another sampling: redone
    assert "2 done, 0 skipped" in capsys.readouterr().out
    assert main([*argv, "--every", "2", "--overwrite"]) == 0  # --overwrite redoes complete ones
    assert "2 done, 0 skipped" in capsys.readouterr().out

    (out / f"a.csv{RECORD_SUFFIX}").unlink()  # a CSV without its record (e.g. killed before it) is redone
    assert main([*argv, "--every", "2"]) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out


def test_one_input_to_one_csv_works_as_before(study, results, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "o.csv"
    assert main(_argv(results, study["a"], "-o", out, "--front-end", "thread")) == 0
    assert len(pd.read_csv(out)) == 4 and not list(tmp_path.glob("*.json"))
    assert main(_argv(results, study["broken"], "-o", tmp_path / "b.csv")) == 1
    assert "au-transfer predict: error:" in capsys.readouterr().err
    # two inputs cannot go to one CSV
    assert main(_argv(results, study["a"], study["b"], "-o", tmp_path / "x.csv")) == 1
    assert "name an output folder" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------------------------------------- sampling
@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """The synthetic demo face moving and making expressions, 18 frames."""
    return conftest.demo_video(tmp_path_factory.mktemp("moving"), n_frames=18, seed=3)


def _table(results, video, **kw):  # noqa: F811
    with Predictor(MODEL, model_dir=results / "models" / SPLIT, front_end="thread") as p:
        return pd.concat(list(iter_predictions(video, p, chunk_size=4, progress=False, **kw)), ignore_index=True), \
            p.detections


def test_sampled_frames_keep_their_numbers_and_times_and_tracking_follows_them(results, moving):  # noqa: F811
    full, _ = _table(results, moving, detect_every=1)
    fps = cv2.VideoCapture(str(moving)).get(cv2.CAP_PROP_FPS)
    every, n_det = _table(results, moving, every=3, detect_every=9)  # a detection every 3 read frames
    assert every["frame"].tolist() == list(range(1, 19, 3))
    np.testing.assert_allclose(every["timestamp"], (every["frame"] - 1) / fps)
    assert n_det == 2  # frames 1 and 10: the frames between are followed, across the skipped ones
    assert every["success"].all() and (every["face"] == 0).all()
    ref = full.set_index("frame").loc[every["frame"]]
    for au in AUS:
        a, b = every[f"AU{au:02d}_p"].to_numpy(float), ref[f"AU{au:02d}_p"].to_numpy(float)
        assert a[0] == b[0]  # a detection frame: the full run's values
        # followed across skipped frames, the scores stay within what per-frame detection moves between samples
        assert np.abs(a - b).max() <= max(np.abs(np.diff(b)).max(), 1e-9), (au, a, b)
    # --fps half the video's rate reads the same frames as every 2nd
    half, _ = _table(results, moving, fps=fps / 2, detect_every=1)
    two, _ = _table(results, moving, every=2, detect_every=1)
    pd.testing.assert_frame_equal(half, two)


def test_sampling_options_are_checked(results, moving, tmp_path, capsys):  # noqa: F811
    assert main(_argv(results, moving, "-o", tmp_path / "o.csv", "--every", "2", "--fps", "5")) == 1
    assert "--every and --fps" in capsys.readouterr().err
    with pytest.raises(Exception, match="fps resamples a video"):
        _table(results, moving.parent, fps=5)


# ---------------------------------------------------------------------------------------------- pictures
def test_plot_and_overlay_are_written(results, moving, tmp_path):  # noqa: F811
    out = tmp_path / "pics"
    assert main(_argv(results, moving, "-o", f"{out}/", "--plot", "--overlay", "--every", "2",
                      "--front-end", "thread")) == 0
    stem = moving.stem
    png = cv2.imread(str(out / f"{stem}.png"))
    assert png is not None and png.shape[0] > 200 and png.shape[1] > 500
    cap = cv2.VideoCapture(str(out / f"{stem}.overlay.mp4"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 9  # the sampled frames
    raw = cv2.VideoCapture(str(moving))
    ok, first = raw.read()
    raw.release()
    assert ok and frames[0].shape == first.shape
    # the annotation changed the frame around the face (box, landmarks, labels)
    assert np.abs(frames[0].astype(int) - first.astype(int)).mean() > 1


def test_each_input_starts_its_own_sequence_state(results, study, tmp_path):  # noqa: F811
    """A model with state across frames (a running median) gives the same rows for a video whether it is the first
    or the second input of one predictor, or read beside another: each input's face tracks start afresh."""
    import shutil

    from au_transfer.classifiers.frame import load_model, save_model
    from au_transfer.layout import Layout
    from au_transfer.predict.batch import predict_many

    root = tmp_path / "results"
    shutil.copytree(results, root)
    models = root / "models" / SPLIT
    for au in AUS:
        b = load_model(next((models / MODEL).glob(f"AU{au}.*")))
        save_model({**b, "classifier": "svm_med", "normalise": "median"},
                   Layout.of(root).model_file(SPLIT, "dlib_resnet-face-svm_med", au))
    first = tmp_path / "first.avi"
    shutil.copy2(study["b"], first)
    jobs = {first: tmp_path / "1.csv", study["a"]: tmp_path / "2.csv", study["b"]: tmp_path / "3.csv"}
    with Predictor("dlib_resnet-face-svm_med", model_dir=models, front_end="thread") as p:
        done = predict_many(p, jobs, chunk_size=1, resume=False, progress=False, echo=lambda line: None)
    assert len(done.done) == 3
    # the same video first and third (after another input): the same rows, file column aside
    a, c = (pd.read_csv(tmp_path / n).drop(columns="file") for n in ("1.csv", "3.csv"))
    pd.testing.assert_frame_equal(a, c)
    assert a.filter(like="_p").notna().all().all()
