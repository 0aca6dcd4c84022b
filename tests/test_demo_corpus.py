"""The synthetic demo corpus: DISFA layout, determinism, landmarks where the face is, FACS-like AU motion."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import run_snakemake

from au_transfer import DISFA_AUS
from au_transfer.datasets import demo, disfa


def read_frame(video, frame: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, frame - 1)
    ok, img = cap.read()
    cap.release()
    assert ok, f"cannot read frame {frame} of {video}"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_reads_back_through_disfa_reader(tiny_corpus):
    c = tiny_corpus
    for s in c.subjects:
        labels = disfa.read_labels(c.root, s, DISFA_AUS)
        expected = demo.make_labels(c.n_frames, c.fps, demo._rng(c.seed, s, 2))
        pd.testing.assert_frame_equal(labels, expected, check_dtype=False)
        info = disfa.video_info(disfa.video_path(c.root, s, c.camera), count=True)
        assert (info.n_frames, info.width, info.height) == (c.n_frames, c.width, c.height)
        assert info.fps == pytest.approx(c.fps)
        files = disfa.landmark_files(c.root, s)
        defects = {int(k) for k in c.manifests[s]["defects"]}
        assert defects, "a 40-frame subject has an occluded frame"
        assert set(files) == set(range(1, c.n_frames + 1)) - defects
        pts = np.stack([disfa.read_landmark_file(files[f]) for f in sorted(files)])
        assert pts.shape == (len(files), 66, 2)
        assert (pts[..., 0] > 0).all() and (pts[..., 0] < c.width).all()
        assert (pts[..., 1] > 0).all() and (pts[..., 1] < c.height).all()
        # every AU reaches intensity >= 2 in every subject (so every split set has positives)
        assert (labels.drop(columns="frame").max() >= 2).all(), labels.max()
        rec = disfa.reconcile_counts(s, labels["frame"], info.n_frames, files)
        assert rec.without_landmarks == sorted(defects)
        # the face fills roughly a third to half of the frame height
        span = np.median(pts[:, :, 1].max(1) - pts[:, :, 1].min(1))
        assert 0.25 * c.height < span < 0.5 * c.height


def test_same_seed_same_corpus_and_subjects_differ(tiny_corpus, tmp_path):
    c = tiny_corpus
    demo.generate_subject(tmp_path, "SN002", n_frames=c.n_frames, width=c.width, height=c.height, fps=c.fps,
                          seed=c.seed)
    for au in DISFA_AUS:
        a = disfa.label_path(c.root, "SN002", au).read_text()
        assert a == disfa.label_path(tmp_path, "SN002", au).read_text()
    f1, f2 = disfa.landmark_files(c.root, "SN002"), disfa.landmark_files(tmp_path, "SN002")
    assert f1.keys() == f2.keys()
    for f in f1:
        np.testing.assert_array_equal(disfa.read_landmark_file(f1[f]), disfa.read_landmark_file(f2[f]))
    np.testing.assert_array_equal(read_frame(disfa.video_path(c.root, "SN002"), 5),
                                  read_frame(disfa.video_path(tmp_path, "SN002"), 5))
    # different subjects: different labels, face geometry and appearance
    lab = {s: disfa.read_labels(c.root, s).drop(columns="frame").to_numpy() for s in c.subjects}
    assert not np.array_equal(lab["SN001"], lab["SN002"]) and not np.array_equal(lab["SN001"], lab["SN003"])
    first = {s: disfa.read_landmark_file(disfa.landmark_files(c.root, s)[1]) for s in c.subjects}
    norm = {s: (p - p.mean(0)) / p.std() for s, p in first.items()}
    assert np.abs(norm["SN001"] - norm["SN002"]).mean() > 0.02
    assert np.abs(norm["SN001"] - norm["SN003"]).mean() > 0.02
    imgs = {s: read_frame(disfa.video_path(c.root, s), 1).astype(float) for s in c.subjects}
    assert np.abs(imgs["SN001"] - imgs["SN003"]).mean() > 10
    # a different seed gives different labels
    other = demo.make_labels(c.n_frames, c.fps, demo._rng(c.seed + 1, "SN002", 2))
    assert not np.array_equal(other.drop(columns="frame").to_numpy(), lab["SN002"])


def test_dlib_finds_the_face_at_the_landmarks(tiny_corpus):
    import dlib

    c = tiny_corpus
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(demo._model_dir() / "shape_predictor_68_face_landmarks.dat"))
    for s in c.subjects:
        files = disfa.landmark_files(c.root, s)
        frame = sorted(files)[len(files) // 3]
        img = read_frame(disfa.video_path(c.root, s), frame)
        truth = disfa.to_68(disfa.read_landmark_file(files[frame]))
        rects = detector(img, 1)
        assert len(rects) >= 1, f"dlib finds no face in {s} frame {frame}"
        rect = max(rects, key=lambda r: r.area())
        found = np.array([[p.x, p.y] for p in predictor(img, rect).parts()], float)
        iod = np.linalg.norm(truth[36:42].mean(0) - truth[42:48].mean(0))
        err = np.linalg.norm(found - truth, axis=1).mean() / iod
        assert err < 0.15, f"{s} frame {frame}: dlib landmarks {err:.2f} inter-ocular distances away"


def test_defect_frames(tiny_corpus):
    c = tiny_corpus
    s = c.subjects[0]
    bad = int(next(iter(c.manifests[s]["defects"])))
    good = bad - 1 if bad > 1 else bad + 1
    a, b = read_frame(disfa.video_path(c.root, s), bad), read_frame(disfa.video_path(c.root, s), good)
    assert np.abs(a.astype(float) - b).mean() > 5            # the occluder changes the frame visibly
    assert json.loads(demo.manifest_path(c.root, s).read_text())["defects"] == c.manifests[s]["defects"]


def _face_axes(pts):
    f = demo.FaceFrame.of(pts)
    return lambda d: np.array([d @ f.ex, d @ f.ey]) / f.u


# (AU, points, expected sign of the mean x-offset away from the midline (0 = don't care), sign of y (down))
MOTIONS = [
    (1, [21, 22], 0, -1), (2, [17, 26], 0, -1), (4, [21, 22], -1, +1), (5, [37, 38, 43, 44], 0, -1),
    (6, [40, 41, 46, 47], 0, -1), (9, [31, 35], 0, -1), (12, [48, 54], +1, -1), (15, [48, 54], 0, +1),
    (17, [8], 0, -1), (20, [48, 54], +1, 0), (25, [66], 0, +1), (26, [8], 0, +1),
]


@pytest.mark.parametrize("subject", ["SN001", "SN002", "SN003", "SN004"])  # both photos, mirrored and not
def test_au_motion_directions(subject):
    subj = demo.make_subject(subject, width=240, height=180, seed=3)
    rng = np.random.default_rng(0)
    neutral, p0 = demo.render_frame(subj, np.zeros(12), np.zeros(4), 1.0, rng)
    axes = _face_axes(p0)
    mid = p0[[27, 28, 29, 30, 33, 51, 57, 62, 66, 8]].mean(0)
    for au, idx, sx, sy in MOTIONS:
        inten = np.zeros(12)
        inten[DISFA_AUS.index(au)] = 5
        img, p1 = demo.render_frame(subj, inten, np.zeros(4), 1.0, rng)
        moves = np.array([axes(p1[i] - p0[i]) for i in idx])
        out = np.array([np.sign(axes(p0[i] - mid)[0]) for i in idx])
        dx_out, dy = (moves[:, 0] * out).mean(), moves[:, 1].mean()
        assert abs(dx_out) + abs(dy) > 0.03, f"AU{au} hardly moves points {idx}"
        if sx:
            assert np.sign(dx_out) == sx, f"{subject} AU{au}: points {idx} move {dx_out:+.3f} (out)"
        if sy:
            assert np.sign(dy) == sy, f"{subject} AU{au}: points {idx} move {dy:+.3f} (down)"
        # the image changes where the AU is: above the nose tip for upper-face AUs, below it for lower-face
        diff = np.abs(img.astype(float) - neutral.astype(float)).sum(2)
        diff[diff < 12] = 0
        assert diff.sum() > 0, f"AU{au} does not change the image"
        ys = np.nonzero(diff)[0]
        cy = (ys * diff[diff > 0]).sum() / diff[diff > 0].sum()
        nose_tip = p0[30, 1]
        if au in (1, 2, 4, 5):
            assert cy < nose_tip, f"AU{au}: the image changes mostly below the nose tip"
        elif au in (6, 9):  # cheeks / nose: between the brows and the mouth
            assert p0[19, 1] < cy < p0[51, 1], f"AU{au}: the image changes outside the middle face"
        elif au in (12, 15, 17, 20, 25, 26):
            assert cy > nose_tip, f"AU{au}: the image changes mostly above the nose tip"


def test_mouth_interior_visible_when_lips_part():
    subj = demo.make_subject("SN002", width=480, height=360, seed=3)
    rng = np.random.default_rng(0)
    neutral, p0 = demo.render_frame(subj, np.zeros(12), np.zeros(4), 1.0, rng)
    inten = np.zeros(12)
    inten[DISFA_AUS.index(25)] = inten[DISFA_AUS.index(26)] = 5
    open_, p1 = demo.render_frame(subj, inten, np.zeros(4), 1.0, rng)
    y0, y1 = int(p1[62, 1]) + 2, int(p1[66, 1]) - 1
    x = int(p1[[62, 66], 0].mean())
    assert y1 > y0
    inside = open_[y0:y1, x - 2:x + 3].astype(float)
    before = neutral[y0:y1, x - 2:x + 3].astype(float)
    # dark cavity (and light teeth): the colour there is no longer the lips' colour
    assert np.abs(inside - before).mean() > 20


def test_label_statistics_like_disfa():
    rng = np.random.default_rng(11)
    df = pd.concat([demo.make_labels(4845, 20.0, rng, cover=False) for _ in range(3)])
    frac = {au: (df[f"AU{au}"] >= 2).mean() for au in DISFA_AUS}
    common, rare = (25, 4, 12), (5, 15, 20)
    assert min(frac[a] for a in common) > max(frac[a] for a in rare), frac
    assert all(frac[a] > 0 for a in DISFA_AUS)
    assert 0.001 < frac[5] < 0.05 and 0.15 < frac[25] < 0.45, frac
    # co-occurrence: AU6 is mostly seen with AU12; AU26 mostly with AU25
    assert ((df["AU6"] >= 2) & (df["AU12"] >= 2)).sum() > 0.5 * (df["AU6"] >= 2).sum()
    assert ((df["AU26"] >= 2) & (df["AU25"] >= 2)).sum() > 0.5 * (df["AU26"] >= 2).sum()
    # episodes are smooth: intensity changes by at most 2 between frames
    assert df.drop(columns="frame").diff().abs().max().max() <= 2


def test_generation_is_atomic(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = demo.render_frame

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")
        return real(*a, **k)

    monkeypatch.setattr(demo.layout, "render_frame", failing)  # where generate_subject looks it up
    with pytest.raises(RuntimeError, match="boom"):
        demo.generate_subject(tmp_path, "SN001", n_frames=20, width=96, height=72, seed=1)
    assert not list(tmp_path.rglob("*.avi")) and not list(tmp_path.rglob("*.txt"))
    assert not list(tmp_path.rglob("*.mat")) and not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())
    with pytest.raises(disfa.DisfaError, match="unknown DISFA subject 'SN015'"):
        demo.generate_subject(tmp_path, "SN015", n_frames=20, width=96, height=72, seed=1)


def test_right_camera_layout(tmp_path):
    demo.generate_subject(tmp_path, "SN016", n_frames=20, width=96, height=72, seed=1, camera="right")
    assert disfa.video_path(tmp_path, "SN016", "right").name == "RightVideoSN016_Comp.avi"
    assert disfa.video_path(tmp_path, "SN016", "right").parent.name == "Video_RightCamera"


@pytest.mark.workflow
def test_corpus_and_labels_workflow(tmp_path):
    """The corpus and labels stages alone (not the shared whole-workflow run), so that they are tested even when
    a later stage is broken."""
    wd = tmp_path
    targets = [f"results/labels/SN00{i}.csv" for i in (1, 2, 3)]
    run_snakemake(wd, "--show-failed-logs", *targets)
    root = wd / "demo_corpus"
    for s in ("SN001", "SN002", "SN003"):
        df = pd.read_csv(wd / "results" / "labels" / f"{s}.csv")
        assert list(df.columns) == ["frame"] + [f"AU{a}" for a in DISFA_AUS]
        assert df["frame"].tolist() == list(range(1, 41))
        pd.testing.assert_frame_equal(df, disfa.read_labels(root, s), check_dtype=False)
        report = json.loads((wd / "results" / "labels" / f"{s}.json").read_text())
        defects = json.loads(demo.manifest_path(root, s).read_text())["defects"]
        assert report["n_video"] == 40 and report["n_without_landmarks"] == len(defects) > 0
        assert report["without_landmarks"] == ", ".join(sorted(defects, key=int))
        assert "landmark files" in (wd / "logs" / "labels" / f"{s}.log").read_text()
    again = run_snakemake(wd, "--dry-run", *targets)
    assert "Nothing to be done" in again.stdout + again.stderr
