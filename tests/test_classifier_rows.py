"""The LDA/SVM jobs' low-memory data path: row reads, the lazy frame index, block-wise scoring (docs/classifiers.md,
"Memory"). Results must not change: block-wise scoring is bit-identical to one ``decision_function`` call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from au_transfer.classifiers import ClassifierDataError, load_frames, make_estimator, run_frame_job
from au_transfer.classifiers.data import index_frames, write_synthetic_subject
from au_transfer.classifiers.frame import decision_values
from au_transfer.feature_store import FeatureError, read_feature_index, read_feature_rows, read_features

SUBJECTS = ["SN001", "SN002", "SN003", "SN004", "SN005", "SN006"]
SIZES = [161, 142, 155, 150, 147, 163]  # not multiples of 4: BLAS treats a call's last rows apart


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("rows")
    for i, (s, n) in enumerate(zip(SUBJECTS, SIZES, strict=True)):
        write_synthetic_subject(root / "f" / f"{s}.h5", root / "l" / f"{s}.csv", s, aus=[1, 12], n_frames=n,
                                dim=20, n_labelled=n - 5, invalid=[1, 30 + i], seed=i)
    fp = {s: str(root / "f" / f"{s}.h5") for s in SUBJECTS}
    lp = {s: str(root / "l" / f"{s}.csv") for s in SUBJECTS}
    return root, fp, lp


def test_read_feature_rows_any_order_and_blocks(synth):
    _, fp, _ = synth
    frames, X32, valid, attrs = read_features(fp["SN001"])
    frames_i, valid_i, attrs_i, dim = read_feature_index(fp["SN001"])
    np.testing.assert_array_equal(frames_i, frames)
    np.testing.assert_array_equal(valid_i, valid)
    assert attrs_i == attrs and dim == X32.shape[1]
    rows = np.array([150, 3, 3, 77, 0, 160, 12])
    for block_bytes in (1, 20 * 2 * 7, 1 << 20):  # one row, seven rows, everything at a time
        got = read_feature_rows(fp["SN001"], rows, block_bytes=block_bytes)
        assert got.dtype == np.float16 and got.shape == (len(rows), dim)
        np.testing.assert_array_equal(got.astype(np.float32), X32[rows])
    assert read_feature_rows(fp["SN001"], np.array([], int)).shape == (0, dim)
    with pytest.raises(FeatureError, match="row 161 asked for; the file has 161 rows"):
        read_feature_rows(fp["SN001"], [0, 161])


def test_index_reads_the_same_frames_as_load_frames(synth):
    _, fp, lp = synth
    data = load_frames(fp, lp, au=12, threshold=2, subjects=SUBJECTS[:3])
    index = index_frames(fp, lp, au=12, threshold=2, subjects=SUBJECTS[:3])
    np.testing.assert_array_equal(index.subject, data.subject)
    np.testing.assert_array_equal(index.frame, data.frame)
    np.testing.assert_array_equal(index.y, data.y)
    assert index.counts == data.counts and index.attrs == data.attrs and index.dim == data.X.shape[1]
    X16 = index.features()
    assert X16.dtype == np.float16
    np.testing.assert_array_equal(X16.astype(np.float32), data.X)
    idx = np.array([0, 5, 160, 300, len(index) - 1])
    np.testing.assert_array_equal(index.features(idx, np.float32), data.X[idx])


def test_threshold_per_recording(synth):
    """A split whose corpora define present differently gives the job ``{recording: threshold}``: each recording's
    labels are binarised with its own (SN002 at 1 = as with threshold 1 alone; SN001 at 2)."""
    _, fp, lp = synth
    mixed = index_frames(fp, lp, au=12, threshold={"SN001": 2, "SN002": 1}, subjects=SUBJECTS[:2])
    for s, t in (("SN001", 2), ("SN002", 1)):
        alone = index_frames(fp, lp, au=12, threshold=t, subjects=[s])
        np.testing.assert_array_equal(mixed.y[mixed.subject == s], alone.y)
    assert index_frames(fp, lp, au=12, threshold=1, subjects=["SN002"]).y.sum() > \
        index_frames(fp, lp, au=12, threshold=2, subjects=["SN002"]).y.sum()
    with pytest.raises(ClassifierDataError, match="recording SN003: no threshold of present given"):
        index_frames(fp, lp, au=12, threshold={"SN001": 2}, subjects=["SN003"])


@pytest.mark.parametrize("classifier,params", [("lda", {}), ("lda", {"shrinkage": "auto"}), ("svm", {})])
def test_blockwise_scores_are_bit_identical(classifier, params):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((403, 33)).astype(np.float16)
    y = (X[:, :3].astype(np.float32).sum(1) > 0).astype(np.int8)
    est = make_estimator(classifier, params, C=0.1).fit(X[:200].astype(np.float32), y[:200])
    whole = est.decision_function(X.astype(np.float32))
    for block_rows in (1, 7, 64, 4096):
        np.testing.assert_array_equal(decision_values(est, X, block_rows=block_rows), whole)
        np.testing.assert_array_equal(decision_values(est, X.astype(np.float32), block_rows=block_rows), whole)


def test_frame_job_reads_only_the_rows_it_needs(synth, tmp_path, monkeypatch):
    """Training subjects: only the balanced training rows are read; validation: the balanced rows for the fit and
    every row once to score them; test: every row once."""
    _, fp, lp = synth
    import au_transfer.feature_store as fs

    read: dict[str, int] = {}
    real = fs.read_feature_rows

    def counting(path, rows, **kw):
        read[Path(path).stem] = read.get(Path(path).stem, 0) + len(rows)
        return real(path, rows, **kw)

    monkeypatch.setattr(fs, "read_feature_rows", counting)
    bundle = run_frame_job(feature_paths=fp, label_paths=lp, train=SUBJECTS[:3], val=SUBJECTS[3:4],
                           test=SUBJECTS[4:], au=1, backbone="synthetic", region="face", crop_region="face",
                           classifier="svm", params={"C_grid": [0.01, 1.0]}, seed=0, threshold=2,
                           model_out=tmp_path / "m.npz", pred_out=tmp_path / "p.csv", split="t")
    tr = index_frames(fp, lp, 1, 2, SUBJECTS[:3])
    va = index_frames(fp, lp, 1, 2, SUBJECTS[3:4])
    n_pos_tr, n_pos_va = int(tr.y.sum()), int(va.y.sum())
    assert sum(read[s] for s in SUBJECTS[:3]) == 2 * min(n_pos_tr, len(tr) - n_pos_tr) < len(tr)
    assert read["SN004"] == 2 * min(n_pos_va, len(va) - n_pos_va) + len(va)
    assert read["SN005"] == bundle["frame_counts"]["SN005"]["used"]
    pred = pd.read_csv(tmp_path / "p.csv")
    te = index_frames(fp, lp, 1, 2, SUBJECTS[4:])
    assert (pred["face"] == 1).sum() == len(va) + sum(bundle["frame_counts"][s]["used"] for s in SUBJECTS[4:])
    assert (pred["face"] == 0).sum() == len(te.faceless)  # the labelled test frames without a face: no row read


def test_non_finite_feature_on_a_row_read_names_file_subject_and_frame(synth, tmp_path):
    _, fp, lp = synth
    bad = tmp_path / "SN006.h5"
    with h5py.File(fp["SN006"], "r") as src, h5py.File(bad, "w") as dst:
        for k in ("features", "frames", "valid"):
            dst[k] = src[k][()]
        dst.attrs.update(dict(src.attrs))
        X = dst["features"][()]
        X[57, 4] = np.inf
        dst["features"][...] = X
    with pytest.raises(ClassifierDataError, match=r"SN006\.h5 \(subject SN006\), frame 58: non-finite"):
        run_frame_job(feature_paths={**fp, "SN006": str(bad)}, label_paths=lp, train=SUBJECTS[:3],
                      val=SUBJECTS[3:4], test=SUBJECTS[4:], au=1, backbone="synthetic", region="face",
                      crop_region="face", classifier="lda", params={}, seed=0, threshold=2,
                      model_out=tmp_path / "m.npz", pred_out=tmp_path / "p.csv", split="t")


def test_frame_job_does_not_import_torch(synth, tmp_path):
    _, fp, lp = synth
    code = f"""
import sys
from au_transfer.classifiers.jobs import run_frame_job
for clf in ("lda", "svm"):
    run_frame_job(feature_paths={fp!r}, label_paths={lp!r}, train={SUBJECTS[:3]!r}, val={SUBJECTS[3:4]!r},
                  test={SUBJECTS[4:]!r}, au=12, backbone="synthetic", region="face", crop_region="face",
                  classifier=clf, params={{}}, seed=0, threshold=2, model_out={str(tmp_path / "m.npz")!r},
                  pred_out={str(tmp_path / "p.csv")!r}, split="t")
assert "torch" not in sys.modules, "a frame job imported torch"
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
