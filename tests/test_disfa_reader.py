"""The DISFA reader on DISFA-layout fixtures with the quirks of the real database."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from au_transfer import DISFA_AUS
from au_transfer.datasets import disfa
from au_transfer.datasets.disfa import DisfaError

RNG = np.random.default_rng(0)


def write_labels(root: Path, subject: str, n: int, aus=DISFA_AUS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    folder = root / "ActionUnit_Labels" / subject
    folder.mkdir(parents=True, exist_ok=True)
    cols = {"frame": np.arange(1, n + 1)}
    for au in aus:
        v = rng.integers(0, 6, n)
        cols[f"AU{au}"] = v
        (folder / f"{subject}_au{au}.txt").write_text("".join(f"{i + 1},{x}\n" for i, x in enumerate(v)))
    return pd.DataFrame(cols)


def write_video(path: Path, n: int, size=(64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, size)
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), (i * 10) % 255, np.uint8))
    w.release()


def write_landmarks(root: Path, subject: str, frames, scheme: str = "subject") -> dict[int, np.ndarray]:
    folder = root / "Landmark_Points" / subject / "tmp_frame_lm"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in frames:
        pts = RNG.uniform(0, 500, (66, 2))
        name = disfa.landmark_name(subject, f) if scheme == "subject" else f"l0{f - 1:04d}_lm.mat"
        disfa.write_landmark_file(folder / name, pts)
        out[f] = pts
    return out


# ----------------------------------------------------------------------------------------------------- videos
@pytest.mark.parametrize("folder,name,camera", [
    ("Videos_LeftCamera", "LeftVideoSN001_comp.avi", "left"),
    ("Video_LeftCamera", "LeftVideoSN001_Comp.avi", "left"),
    ("Video_RightCamera", "RightVideoSN001_Comp.avi", "right"),
    ("Videos_RightCamera", "RightVideoSN001_COMP.avi", "right"),
])
def test_video_path_spellings(tmp_path, folder, name, camera):
    p = tmp_path / folder / name
    p.parent.mkdir()
    p.write_bytes(b"")
    assert disfa.video_path(tmp_path, "SN001", camera) == p
    other = "right" if camera == "left" else "left"
    with pytest.raises(DisfaError, match=f"no {other} video for subject SN001"):
        disfa.video_path(tmp_path, "SN001", other)


def test_video_path_errors(tmp_path):
    with pytest.raises(DisfaError, match="Videos_LeftCamera.*Video_LeftCamera"):
        disfa.video_path(tmp_path, "SN002")
    for folder in ("Videos_LeftCamera", "Video_LeftCamera"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "LeftVideoSN002_comp.avi").write_bytes(b"")
    with pytest.raises(DisfaError, match="several left videos"):
        disfa.video_path(tmp_path, "SN002")
    with pytest.raises(DisfaError, match="unknown DISFA subject 'SN014'"):
        disfa.video_path(tmp_path, "SN014")
    with pytest.raises(DisfaError, match="unknown camera"):
        disfa.video_path(tmp_path, "SN002", "middle")


def test_video_info(tmp_path):
    p = tmp_path / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    write_video(p, 12)
    info = disfa.video_info(p)
    assert (info.n_frames, info.width, info.height) == (12, 64, 48)
    assert info.fps == pytest.approx(20.0)
    assert disfa.video_info(p, count=True).n_frames == 12
    with pytest.raises(DisfaError, match="missing"):
        disfa.video_info(tmp_path / "nope.avi")
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video")
    with pytest.raises(DisfaError, match="bad.avi"):
        disfa.video_info(bad)


# ----------------------------------------------------------------------------------------------------- labels
def test_read_labels_roundtrip_and_4844_frames(tmp_path):
    truth = write_labels(tmp_path, "SN001", 60)
    df = disfa.read_labels(tmp_path, "SN001", DISFA_AUS)
    assert list(df.columns) == ["frame"] + [f"AU{a}" for a in DISFA_AUS]
    pd.testing.assert_frame_equal(df, truth, check_dtype=False)
    sub = disfa.read_labels(tmp_path, "SN001", [26, 1])          # DISFA order is kept, whatever was asked
    assert list(sub.columns) == ["frame", "AU1", "AU26"]
    write_labels(tmp_path, "SN010", 4844, aus=(1, 2))
    df10 = disfa.read_labels(tmp_path, "SN010", [1, 2])
    assert len(df10) == 4844 and df10["frame"].iloc[-1] == 4844


@pytest.mark.parametrize("lines,match", [
    (["1,0", "2,1", "3;2"], r"SN001_au4\.txt, line 3: expected 'frame,intensity'"),
    (["1,0", "2,x"], r"SN001_au4\.txt, line 2: expected two integers"),
    (["1,0", "2,6"], r"SN001_au4\.txt, line 2: intensity 6 of frame 2 is outside 0-5"),
    (["1,0", "2,-1"], r"line 2: intensity -1"),
    (["1,0", "1,2"], r"SN001_au4\.txt, line 2: frame 1 is duplicated \(first on line 1\)"),
    (["1,0", "3,2"], r"SN001_au4\.txt: missing frame number\(s\) 2"),
    (["0,0", "1,2"], r"line 1: frame 0 is not a 1-based"),
    ([], r"SN001_au4\.txt: AU label file is empty"),
])
def test_read_labels_bad_lines(tmp_path, lines, match):
    write_labels(tmp_path, "SN001", 2, aus=(1, 4))
    (tmp_path / "ActionUnit_Labels" / "SN001" / "SN001_au4.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DisfaError, match=match):
        disfa.read_labels(tmp_path, "SN001", [1, 4])


def test_read_labels_blank_lines_and_spaces_ok(tmp_path):
    folder = tmp_path / "ActionUnit_Labels" / "SN002"
    folder.mkdir(parents=True)
    (folder / "SN002_au1.txt").write_text("1, 0\n2,3\r\n\n3 ,5\n\n")
    df = disfa.read_labels(tmp_path, "SN002", [1])
    assert df["AU1"].tolist() == [0, 3, 5]


def test_read_labels_missing_file_and_length_mismatch(tmp_path):
    write_labels(tmp_path, "SN003", 10, aus=(1, 2))
    with pytest.raises(DisfaError, match=r"SN003_au12\.txt: AU label file is missing"):
        disfa.read_labels(tmp_path, "SN003", [1, 2, 12])
    (tmp_path / "ActionUnit_Labels" / "SN003" / "SN003_au2.txt").write_text(
        "".join(f"{i},0\n" for i in range(1, 10)))
    with pytest.raises(DisfaError, match=r"SN003_au2\.txt: 9 frames, but .*SN003_au1\.txt has 10"):
        disfa.read_labels(tmp_path, "SN003", [1, 2])
    with pytest.raises(DisfaError, match="unknown DISFA subject"):
        disfa.read_labels(tmp_path, "SN099", [1])
    with pytest.raises(DisfaError, match=r"AU\(s\) \[3\]"):
        disfa.read_labels(tmp_path, "SN003", [1, 3])


# -------------------------------------------------------------------------------------------------- landmarks
def test_landmark_files_both_schemes(tmp_path):
    a = write_landmarks(tmp_path, "SN001", [1, 2, 3])
    b = write_landmarks(tmp_path, "SN005", [1, 2, 3, 4], scheme="l0")
    files1 = disfa.landmark_files(tmp_path, "SN001")
    files5 = disfa.landmark_files(tmp_path, "SN005")
    assert list(files1) == [1, 2, 3] and files1[1].name == "SN001_0000_lm.mat"
    assert list(files5) == [1, 2, 3, 4] and files5[1].name == "l00000_lm.mat"
    np.testing.assert_allclose(disfa.read_landmark_file(files1[2]), a[2], rtol=1e-6)
    np.testing.assert_allclose(disfa.read_landmark_file(files5[4]), b[4], rtol=1e-6)
    assert disfa.read_landmark_file(files1[1]).dtype == np.float32


def test_landmark_files_conflicts_and_strays(tmp_path, caplog):
    write_landmarks(tmp_path, "SN002", [1, 2])
    folder = tmp_path / "Landmark_Points" / "SN002" / "tmp_frame_lm"
    disfa.write_landmark_file(folder / "notes_lm_old.mat", np.zeros((66, 2)))
    with caplog.at_level(logging.WARNING):
        assert list(disfa.landmark_files(tmp_path, "SN002")) == [1, 2]
    assert "notes_lm_old.mat" in caplog.text
    disfa.write_landmark_file(folder / "l00001_lm.mat", np.zeros((66, 2)))   # frame 2 again
    with pytest.raises(DisfaError, match=r"frame 2 already has landmark file .*SN002_0001_lm\.mat"):
        disfa.landmark_files(tmp_path, "SN002")
    with pytest.raises(DisfaError, match=r"Landmark_Points/SN003/tmp_frame_lm: landmark folder .* missing"):
        disfa.landmark_files(tmp_path, "SN003")


def test_read_landmark_file_errors(tmp_path):
    from scipy.io import savemat

    savemat(str(tmp_path / "a_lm.mat"), {"pts": np.zeros((68, 2))})
    with pytest.raises(DisfaError, match=r"a_lm\.mat: 'pts' has shape \(68, 2\), expected \(66, 2\)"):
        disfa.read_landmark_file(tmp_path / "a_lm.mat")
    savemat(str(tmp_path / "b_lm.mat"), {"points": np.zeros((66, 2))})
    with pytest.raises(DisfaError, match=r"b_lm\.mat: no variable 'pts' \(found \['points'\]\)"):
        disfa.read_landmark_file(tmp_path / "b_lm.mat")
    (tmp_path / "c_lm.mat").write_bytes(b"garbage" * 20)
    with pytest.raises(DisfaError, match=r"c_lm\.mat: cannot read MATLAB file"):
        disfa.read_landmark_file(tmp_path / "c_lm.mat")
    bad = np.zeros((66, 2))
    bad[3, 1] = np.nan
    savemat(str(tmp_path / "d_lm.mat"), {"pts": bad})
    with pytest.raises(DisfaError, match=r"d_lm\.mat: 'pts' holds non-finite"):
        disfa.read_landmark_file(tmp_path / "d_lm.mat")


def test_66_68_conversion():
    pts68 = RNG.uniform(0, 100, (68, 2)).astype(np.float32)
    pts66 = disfa.to_66(pts68)
    assert pts66.shape == (66, 2)
    back = disfa.to_68(pts66)
    keep = [i for i in range(68) if i not in (60, 64)]
    np.testing.assert_array_equal(back[keep], pts68[keep])
    # the estimated inner corners lie between the outer corner and the inner lips
    for inner, outer, a, b in ((60, 48, 61, 67), (64, 54, 63, 65)):
        mid = (pts68[a] + pts68[b]) / 2
        t = np.dot(back[inner] - pts68[outer], mid - pts68[outer]) / np.dot(mid - pts68[outer], mid - pts68[outer])
        assert 0 < t < 0.5
    assert disfa.to_68(np.stack([pts66, pts66])).shape == (2, 68, 2)


# -------------------------------------------------------------------------------------------------- reconcile
def test_reconcile_counts_4844_labels_4845_video(caplog):
    with caplog.at_level(logging.WARNING):
        rec = disfa.reconcile_counts("SN010", range(1, 4845), 4845, range(1, 4846))
    assert rec.frames == list(range(1, 4845))
    assert rec.video_without_labels == [4845]
    assert rec.landmarks_without_frame == [4845]
    assert rec.labels_without_video == [] and rec.without_landmarks == []
    assert not rec.consistent
    assert "video without labels: 1 (4845)" in caplog.text
    d = rec.to_dict()
    assert d["frames"] == "1-4844" and d["n_video_without_labels"] == 1
    ok = disfa.reconcile_counts("SN001", range(1, 11), 10, range(1, 11))
    assert ok.consistent and ok.frames == list(range(1, 11))
    short = disfa.reconcile_counts("SN002", range(1, 11), 9, [1, 2, 5])
    assert short.labels_without_video == [10]
    assert short.without_landmarks == [3, 4, 6, 7, 8, 9]
    assert "3-4, 6-9" in short.summary()


def test_export_labels_with_extra_landmark_file(tmp_path):
    truth = write_labels(tmp_path, "SN004", 12, aus=(1, 12, 25))
    write_video(disfa.canonical_video_path(tmp_path, "SN004", "right"), 12)
    write_landmarks(tmp_path, "SN004", range(1, 14))           # one landmark file more than frames
    rec = disfa.export_labels(tmp_path, "SN004", [1, 12, 25], tmp_path / "out" / "SN004.csv",
                              tmp_path / "out" / "SN004.json", camera="right")
    assert rec.landmarks_without_frame == [13]
    out = pd.read_csv(tmp_path / "out" / "SN004.csv")
    pd.testing.assert_frame_equal(out, truth, check_dtype=False)
    report = json.loads((tmp_path / "out" / "SN004.json").read_text())
    assert report["n_landmarks_without_frame"] == 1 and report["n_video"] == 12 and report["aus"] == [1, 12, 25]
    # a video one frame short: the CSV keeps only frames the video has
    write_video(disfa.canonical_video_path(tmp_path, "SN004", "right"), 11)
    disfa.export_labels(tmp_path, "SN004", [1], tmp_path / "out" / "b.csv", camera="right")
    assert pd.read_csv(tmp_path / "out" / "b.csv")["frame"].tolist() == list(range(1, 12))
