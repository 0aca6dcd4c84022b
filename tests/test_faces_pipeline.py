"""Faces stage on a tiny synthetic video: decoding errors, landmark sources and fallbacks, the face store, QC."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from au_transfer.faces import (
    FaceSettings,
    FaceStore,
    VideoError,
    compute_faces,
    compute_landmarks,
    iter_frames,
    iter_video,
    process_frame,
    read_landmarks,
    write_qc,
)
from au_transfer.faces.align import align_face
from au_transfer.faces.landmarks import REASON, SOURCE, DlibLandmarker

N_FRAMES = 16
BLANK = 7          # a frame without a face
NO_FILE = 4        # a frame without a DISFA landmark file (dlib fallback finds the face)
JUMP = 11          # a frame whose DISFA points jump away (dlib fallback)
SIZE = 64


def _face_frames(n: int, h: int = 180, w: int = 240) -> list[np.ndarray]:
    from skimage import data

    face = data.astronaut()[30:260, 110:340]
    frames = []
    for k in range(1, n + 1):
        m = cv2.getRotationMatrix2D((115, 115), 8 * np.sin(k / 4), 0.75 + 0.05 * np.cos(k / 5))
        m[:, 2] += [w / 2 - 115 + k, h / 2 - 115]
        fr = cv2.warpAffine(face, m, (w, h))
        if k == BLANK:
            fr[:] = 0
        frames.append(fr)
    return frames


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (w, h))
    for fr in frames:
        vw.write(cv2.cvtColor(fr, cv2.COLOR_RGB2BGR))
    vw.release()


@pytest.fixture(scope="module")
def landmarker() -> DlibLandmarker:
    return FaceSettings.from_config(landmarks="dlib").landmarker()   # HOG, the schema's detection settings


@pytest.fixture(scope="module")
def clip(tmp_path_factory, landmarker):
    """A 16-frame video of a moving face, with '66-point' files (dlib points as .npy) for most frames."""
    root = tmp_path_factory.mktemp("clip")
    frames = _face_frames(N_FRAMES)
    video = root / "SN001.avi"
    _write_video(video, frames)
    decoded = [rgb for _, rgb in iter_video(video)]
    files = {}
    truth = {}
    for k, rgb in enumerate(decoded, start=1):
        pts, _ = landmarker(rgb)
        if k == BLANK:
            assert pts is None
            pts = truth[k - 1]                    # the tracker "kept" the last face: points on a blank frame
        truth[k] = pts
        if k == NO_FILE:
            continue
        p66 = np.delete(pts, [60, 64], axis=0)
        if k == JUMP:
            p66 = p66 + 40.0
        np.save(root / f"{k}.npy", p66)
        files[k] = root / f"{k}.npy"
    return {"root": root, "video": video, "files": files, "decoded": decoded, "truth": truth}


@pytest.fixture(scope="module")
def stores(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("stores")
    counts = compute_landmarks(clip["video"], out / "lm.h5", "SN001", landmark_files=clip["files"],
                               read_landmark_file=np.load, n_frames_labels=N_FRAMES, progress=False)
    summary = compute_faces(clip["video"], out / "lm.h5", out / "faces.h5", size=SIZE, margin=0.15, encoding="raw",
                            progress=False)
    return {"dir": out, "counts": counts, "summary": summary}


# ------------------------------------------------------------------------------------------------------ video
def test_iter_video_decodes_every_frame_in_order(clip):
    got = list(iter_video(clip["video"], "SN001"))
    assert [k for k, _ in got] == list(range(1, N_FRAMES + 1))
    assert got[0][1].shape == (180, 240, 3) and got[0][1].dtype == np.uint8
    # RGB order: the astronaut's face is reddish, not bluish
    assert got[0][1][..., 0].mean() > got[0][1][..., 2].mean()


def test_truncated_video_is_a_clear_error(clip, tmp_path):
    data = clip["video"].read_bytes()
    bad = tmp_path / "trunc.avi"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"trunc\.avi.*SN009.*stopped after frame \d+ of 16"):
        for _ in iter_video(bad, "SN009", expected=N_FRAMES):
            pass


def test_garbage_or_missing_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "garbage.avi"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match=r"garbage\.avi.*SN002"):
        list(iter_video(bad, "SN002", expected=10))
    with pytest.raises(VideoError, match="does not exist"):
        list(iter_video(tmp_path / "missing.avi", "SN002"))


def test_iter_frames_reads_images_and_folders(tmp_path, clip):
    for k in (3, 1, 2):
        cv2.imwrite(str(tmp_path / f"img_{k}.png"), cv2.cvtColor(clip["decoded"][k], cv2.COLOR_RGB2BGR))
    got = list(iter_frames(tmp_path))
    assert [(i, n) for i, n, _ in got] == [(1, "img_1.png"), (2, "img_2.png"), (3, "img_3.png")]
    np.testing.assert_array_equal(got[0][2], clip["decoded"][1])
    assert len(list(iter_frames(tmp_path / "img_2.png"))) == 1
    assert len(list(iter_frames(clip["video"]))) == N_FRAMES


# -------------------------------------------------------------------------------------------------- landmarks
def test_landmarks_sources_fallbacks_and_validity(stores, clip):
    lm = read_landmarks(stores["dir"] / "lm.h5")
    assert lm.frames.tolist() == list(range(1, N_FRAMES + 1))
    assert lm.points.shape == (N_FRAMES, 68, 2)
    i_nofile, i_jump = NO_FILE - 1, JUMP - 1
    assert lm.source[i_nofile] == SOURCE["dlib"] and lm.fallback_reason[i_nofile] == REASON["no_landmark_file"]
    assert lm.source[i_jump] == SOURCE["dlib"] and lm.fallback_reason[i_jump] == REASON["jump"]
    assert lm.valid[i_jump] and lm.valid[i_nofile]
    np.testing.assert_allclose(lm.points[i_jump], clip["truth"][JUMP], atol=0.5)   # dlib, not the shifted file
    others = [i for i in range(N_FRAMES) if i not in (i_nofile, i_jump)]
    assert (lm.source[others] == SOURCE["disfa"]).all()
    assert np.isnan(lm.points[~lm.valid]).all()
    with h5py.File(stores["dir"] / "lm.h5") as f:
        assert f.attrs["n_frames_video"] == N_FRAMES
        assert f.attrs["n_frames_labels"] == N_FRAMES
        assert f.attrs["n_frames_landmark_files"] == N_FRAMES - 1
        assert f.attrs["subject"] == "SN001"


def test_missing_face_is_invalid_with_a_reason(clip, tmp_path):
    # dlib only: the blank frame has no face -> invalid, reason no_face_detected; all other frames valid
    counts = compute_landmarks(clip["video"], tmp_path / "lm.h5", "SN001", landmarks="dlib", progress=False)
    lm = read_landmarks(tmp_path / "lm.h5")
    assert not lm.valid[BLANK - 1] and lm.reason[BLANK - 1] == REASON["no_face_detected"]
    assert lm.valid.sum() == N_FRAMES - 1 == counts["n_valid"]
    assert (lm.source[lm.valid] == SOURCE["dlib"]).all()
    compute_faces(clip["video"], tmp_path / "lm.h5", tmp_path / "faces.h5", size=SIZE, progress=False)
    with FaceStore(tmp_path / "faces.h5") as fs:
        assert len(fs) == N_FRAMES                          # the frame keeps its row
        assert not fs.valid[BLANK - 1] and fs.reason[BLANK - 1] == REASON["no_face_detected"]
        assert fs.images([BLANK - 1]).max() == 0


def test_without_fallback_frames_without_files_are_invalid(clip, tmp_path):
    compute_landmarks(clip["video"], tmp_path / "lm.h5", "SN001", landmark_files=clip["files"],
                      read_landmark_file=np.load, fallback="none", progress=False)
    lm = read_landmarks(tmp_path / "lm.h5")
    assert not lm.valid[NO_FILE - 1] and lm.reason[NO_FILE - 1] == REASON["no_landmark_file"]
    assert not lm.valid[JUMP - 1] and lm.reason[JUMP - 1] == REASON["jump"]
    assert lm.valid.sum() == N_FRAMES - 2


def test_landmark_job_on_a_truncated_video_leaves_no_output(clip, tmp_path):
    data = clip["video"].read_bytes()
    bad = tmp_path / "trunc.avi"
    bad.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VideoError, match="SN001"):
        compute_landmarks(bad, tmp_path / "lm.h5", "SN001", landmark_files=clip["files"],
                          read_landmark_file=np.load, progress=False)
    assert not (tmp_path / "lm.h5").exists()


def test_blank_frame_with_tracker_points_is_invalid_in_the_face_store(stores):
    # the blank frame has plausible DISFA points (a tracker's), so the landmark file keeps them ...
    lm = read_landmarks(stores["dir"] / "lm.h5")
    assert lm.valid[BLANK - 1] and lm.source[BLANK - 1] == SOURCE["disfa"]
    # ... but there is no face in the pixels: the face store marks it invalid, with its reason
    with FaceStore(stores["dir"] / "faces.h5") as fs:
        assert not fs.valid[BLANK - 1] and fs.reason_names[fs.reason[BLANK - 1]] == "blank_image"
        assert fs.valid.sum() == N_FRAMES - 1
        assert fs.crops([BLANK - 1], "upper", 16).max() == 0


# ------------------------------------------------------------------------------------------------- face store
def test_face_store_random_batches_return_the_right_frames(stores, clip):
    lm = read_landmarks(stores["dir"] / "lm.h5")
    with FaceStore(stores["dir"] / "faces.h5") as fs:
        assert len(fs) == N_FRAMES and fs.size == SIZE and fs.subject == "SN001"
        assert fs.frames.tolist() == list(range(1, N_FRAMES + 1))
        idx = np.array([9, 2, 14, 2, 0, 5])                  # unordered, with a repeat
        got = fs.images(idx)
        assert got.shape == (len(idx), SIZE, SIZE, 3) and got.dtype == np.uint8
        for j, r in enumerate(idx):
            want, aligned, _ = align_face(clip["decoded"][r], lm.points[r].astype(np.float64), SIZE, 0.15)
            np.testing.assert_array_equal(got[j], want)
            np.testing.assert_allclose(fs.landmarks[r], aligned, atol=1e-3)
        np.testing.assert_array_equal(fs.images(np.arange(3, 8)), np.stack([fs.images(i)[0] for i in range(3, 8)]))
        assert fs.rows_of([5, 1]).tolist() == [4, 0]
        with pytest.raises(KeyError, match="no frame 999"):
            fs.rows_of([999])
        with pytest.raises(IndexError, match="out of range"):
            fs.images([N_FRAMES])


def test_face_store_crops(stores):
    with FaceStore(stores["dir"] / "faces.h5") as fs:
        for region in ("face", "upper", "middle", "lower"):
            c = fs.crops([1, 3], region, 48)
            assert c.shape == (2, 48, 48, 3) and c.dtype == np.uint8
            assert c.mean() > 10
        face = fs.crops([1], "face", SIZE)
        np.testing.assert_array_equal(face[0], fs.images([1])[0])
        # a wide region is letterboxed: black bars at the top and bottom, content in the middle row
        up = fs.crops([1], "upper", 48)[0]
        assert up[0].max() < up[24].max()
        with pytest.raises(ValueError, match="unknown region"):
            fs.crops([1], "nose", 32)


def test_face_store_is_picklable_for_dataloader_workers(stores):
    import torch
    from torch.utils.data import DataLoader, Dataset

    class DS(Dataset):
        def __init__(self, store):
            self.store = store

        def __len__(self):
            return len(self.store)

        def __getitem__(self, i):
            return torch.from_numpy(self.store.crops([i], "lower", 32)[0])

    fs = FaceStore(stores["dir"] / "faces.h5")
    fs.images([0])                                           # opens the file in this process
    clone = pickle.loads(pickle.dumps(fs))
    np.testing.assert_array_equal(clone.images([3]), fs.images([3]))
    batches = list(DataLoader(DS(fs), batch_size=8, num_workers=2))
    got = torch.cat(batches).numpy()
    np.testing.assert_array_equal(got, fs.crops(np.arange(N_FRAMES), "lower", 32))
    fs.close()


def test_crop_aspect_is_recorded_in_the_store(stores, clip, tmp_path):
    compute_faces(clip["video"], stores["dir"] / "lm.h5", tmp_path / "f.h5", size=SIZE, crop_aspect="stretch",
                  encoding="raw", progress=False)
    with FaceStore(tmp_path / "f.h5") as st, FaceStore(stores["dir"] / "faces.h5") as pad:
        assert st.aspect == "stretch" and pad.aspect == "pad"
        up = st.crops([1], "upper", 48)[0]
        assert up[0].max() > 0                               # stretched: no black bar at the top
        assert FaceStore(tmp_path / "f.h5", aspect="pad").crops([1], "upper", 48)[0][0].max() == 0


@pytest.mark.parametrize("encoding", ["jpeg", "png"])
def test_encoded_face_stores_match_raw(stores, tmp_path, clip, encoding):
    compute_faces(clip["video"], stores["dir"] / "lm.h5", tmp_path / "f.h5", size=SIZE, encoding=encoding,
                  progress=False)
    with FaceStore(stores["dir"] / "faces.h5") as raw, FaceStore(tmp_path / "f.h5") as enc:
        a, b = raw.images([2, 9]), enc.images([9, 2])[::-1]
        diff = np.abs(a.astype(int) - b.astype(int)).mean()
        assert diff == 0 if encoding == "png" else diff < 4


def test_missing_or_incomplete_store_is_a_clear_error(tmp_path, stores):
    from au_transfer.faces import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        FaceStore(tmp_path / "nope.h5")
    broken = tmp_path / "broken.h5"
    shutil.copy(stores["dir"] / "faces.h5", broken)
    with h5py.File(broken, "a") as f:
        del f["valid"]
    with pytest.raises(StoreError, match="broken.h5"):
        FaceStore(broken)


# ------------------------------------------------------------------------------------------ single image, QC
def test_process_frame_on_a_new_image(clip, landmarker):
    settings = FaceSettings.from_config(size=80)
    fr = process_frame(clip["decoded"][0], settings, landmarker)
    assert fr.valid and fr.reason_name == "ok" and fr.image.shape == (80, 80, 3) and fr.landmarks.shape == (68, 2)
    assert fr.boxes.shape == (3, 4) and fr.confidence > 0.5
    fr = process_frame(clip["decoded"][BLANK - 1], settings, landmarker)
    assert not fr.valid and fr.reason_name == "no_face_detected" and fr.landmarks is None and fr.boxes is None
    assert fr.image.max() == 0 and fr.confidence == 0
    # tracker points on a blank frame: aligned, then invalid by the blank-image rule
    fr = process_frame(clip["decoded"][BLANK - 1], settings, clip["truth"][BLANK])
    assert not fr.valid and fr.reason_name == "blank_image" and fr.transform is not None and fr.boxes is None


@pytest.mark.parametrize("encoding", ["jpeg", "png", "raw"])
def test_process_frame_gives_what_the_face_store_holds(stores, clip, tmp_path, encoding):
    """One pipeline: the faces job stores what process_frame returns, and process_frame's image is what the feature
    stage reads back from the store (the encode round trip), with the same landmarks, boxes and validity."""
    settings = FaceSettings.from_config(size=SIZE, encoding=encoding, jpeg_quality=80, region_pad=0.2)
    compute_faces(clip["video"], stores["dir"] / "lm.h5", tmp_path / "f.h5", settings, progress=False)
    lm = read_landmarks(stores["dir"] / "lm.h5")
    with FaceStore(tmp_path / "f.h5") as fs:
        assert fs.encoding == encoding
        for r in np.flatnonzero(lm.valid):
            fr = process_frame(clip["decoded"][r], settings, lm.points[r])
            assert fr.valid == fs.valid[r] and fr.reason == fs.reason[r]
            np.testing.assert_array_equal(fr.image, fs.images([r])[0])
            if fr.valid:
                np.testing.assert_array_equal(fr.landmarks, fs.landmarks[r])
                np.testing.assert_array_equal(fr.boxes, fs.boxes[r])


def test_qc_sheet_and_table(stores, clip, tmp_path):
    d = stores["dir"]
    counts = write_qc(d / "lm.h5", d / "faces.h5", tmp_path / "qc.png", tmp_path / "qc.csv", n_samples=8,
                      columns=4, tile=64, video=clip["video"])
    import pandas as pd

    df = pd.read_csv(tmp_path / "qc.csv")
    assert df["frame"].tolist() == list(range(1, N_FRAMES + 1))
    assert list(df.columns) == ["frame", "source", "confidence", "valid", "reason", "fallback_reason", "aligned"]
    assert df.loc[df.frame == JUMP, "fallback_reason"].item() == "jump"
    assert counts["n_valid"] == int(df["valid"].sum())
    img = cv2.imread(str(tmp_path / "qc.png"))
    assert img is not None and img.shape[1] == 4 * 64 and img.shape[0] >= 2 * 64


def test_qc_sheet_shows_the_video_frame_of_invalid_frames(clip, tmp_path):
    from au_transfer.faces.qc import contact_sheet

    compute_landmarks(clip["video"], tmp_path / "lm.h5", "SN001", landmark_files=clip["files"],
                      read_landmark_file=np.load, fallback="none", progress=False)
    compute_faces(clip["video"], tmp_path / "lm.h5", tmp_path / "f.h5", size=SIZE, progress=False)
    kw = dict(n_samples=N_FRAMES, columns=N_FRAMES, tile=32)
    plain = contact_sheet(tmp_path / "f.h5", tmp_path / "lm.h5", **kw)
    shown = contact_sheet(tmp_path / "f.h5", tmp_path / "lm.h5", video=clip["video"], **kw)
    x = (NO_FILE - 1) * 32                                   # the invalid frame's tile (a face, but no landmarks)
    tile_plain, tile_shown = plain[28:60, x + 4:x + 28], shown[28:60, x + 4:x + 28]
    assert tile_shown.mean() > tile_plain.mean() + 10
    np.testing.assert_array_equal(plain[:, :32], shown[:, :32])  # valid tiles are unchanged
