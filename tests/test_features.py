"""Feature store: batched extraction from a face store, the HDF5 layout, invalid rows, mean image, workflow."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from au_transfer.backbones import (
    Backbone,
    BackboneSpec,
    WeightsError,
    create_backbone,
    file_sha256,
    load_state_dict_file,
    preprocess,
    random_tag,
    register_backbone,
)
from au_transfer.backbones.weights import load_into
from au_transfer.faces.regions import cut_region
from au_transfer.faces.store import FaceStore, FaceStoreWriter
from au_transfer.features import (
    FeatureError,
    compute_mean_image,
    extract_features,
    read_features,
)

torch.set_num_threads(1)

N, SIZE = 24, 48
INVALID = (0, 5, 6, 17)
TINY = BackboneSpec("tiny_feat", "test", "gap after ReLU", 8, 32, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def _build_tiny(weights, *, key_map=None, seed=0):
    """A registered builder as another module would write one (random, or a Backbone state dict file)."""
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    net = Backbone(TINY, body, nn.Sequential(), nn.Sequential(nn.Linear(8, 3)), weights="random",
                   weights_sha256=random_tag(seed))
    if weights == "pretrained":
        raise WeightsError("tiny_feat has no pretrained weights")
    if weights != "random":
        load_into(net, load_state_dict_file(weights), name="tiny_feat", source=weights)
        net.weights, net.weights_sha256 = weights, file_sha256(weights)
    return net


register_backbone("tiny_feat", TINY, _build_tiny, overwrite=True)


def _store(path, subject="SN001", seed=0, n=N, invalid=INVALID, encoding="raw"):
    """A face store in the faces stage's layout (via its writer): random faces, fixed region boxes."""
    rng = np.random.default_rng(seed)
    boxes = np.array([[0, 0, SIZE, SIZE / 2], [4, SIZE / 4, SIZE - 4, 3 * SIZE / 4], [0, SIZE / 2, SIZE, SIZE]],
                     np.float32)
    with FaceStoreWriter(path, n, SIZE, subject=subject, compression="lzf", encoding=encoding) as w:
        for i in range(n):
            ok = i not in invalid
            img = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) if ok else None
            w.put(i, 101 + i, img, None, boxes if ok else None, None, ok, 0 if ok else 1)
    return path


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("faces") / "SN001.h5")


def _expected(store_path, net, region, size, mean_image=None):
    with FaceStore(store_path) as st:
        idx = np.flatnonzero(st.valid)
        crops = st.crops(idx, region, size)
    with torch.inference_mode():
        return idx, net.features(preprocess(net.spec, crops, mean_image=mean_image)).numpy()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_extraction_matches_direct_forward_and_keeps_invalid_rows(store_path, tmp_path, num_workers):
    out = tmp_path / "feat.h5"
    # workers are spawned, not forked: this long-lived pytest process may hold other libraries' threads (dlib,
    # OpenBLAS), which can hang a forked child; a workflow job is a fresh process and forks safely
    info = extract_features(store_path, out, "tiny_feat", "upper", weights="random", seed=3, batch_size=5,
                            num_workers=num_workers, device="cpu", progress=False,
                            mp_context="spawn" if num_workers else None)
    assert info["frames"] == N - len(INVALID)
    frames, X, valid, attrs = read_features(out)
    assert X.dtype == np.float32 and X.shape == (N, 8)
    np.testing.assert_array_equal(frames, np.arange(101, 101 + N))
    np.testing.assert_array_equal(valid, [i not in INVALID for i in range(N)])
    assert np.isnan(X[list(INVALID)]).all()
    net = create_backbone("tiny_feat", "random", seed=3)
    idx, ref = _expected(store_path, net, "upper", 32)
    np.testing.assert_allclose(X[idx], ref.astype(np.float16).astype(np.float32), rtol=0, atol=0)
    assert attrs["backbone"] == "tiny_feat" and attrs["region"] == "upper" and attrs["subject"] == "SN001"
    assert attrs["layer"] == "gap after ReLU" and attrs["dim"] == 8 and attrs["input_size"] == 32
    assert attrs["weights"] == "random" and attrs["weights_sha256"] == "random:seed=3"
    assert attrs["invalid_rows"] == "nan"
    with h5py.File(out) as h5:
        assert h5["features"].dtype == np.float16 and h5["frames"].dtype == np.int32


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_store_crops_are_the_cut_images_and_extraction_is_exact(tmp_path, encoding):
    # crops() of an encoded store reads a batch's bytes at once (contiguous rows: their span; scattered rows: the
    # rows) and cuts each decoded face straight into the batch; the reading thread normalises with NumPy. Both
    # must give what the plain path gives: cut_region of images(), then preprocess.
    path = _store(tmp_path / "SN001.h5", encoding=encoding)
    with FaceStore(path) as st:
        for rows in ([9, 2, 14, 2, 0], list(range(3, 12)), [0, 11, 23], [7]):
            imgs = st.images(rows)
            for region in ("face", "upper", "middle", "lower"):
                boxes = None if region == "face" else st.region_boxes(rows, region)
                want = np.stack([cut_region(imgs[j], None if boxes is None else boxes[j], 32, st.aspect)
                                 for j in range(len(rows))])
                np.testing.assert_array_equal(st.crops(rows, region, 32), want, err_msg=f"{rows} {region}")
    out = tmp_path / "feat.h5"
    extract_features(path, out, "tiny_feat", "middle", weights="random", seed=1, batch_size=4, num_workers=0,
                     device="cpu", progress=False)
    idx, ref = _expected(path, create_backbone("tiny_feat", "random", seed=1), "middle", 32)
    np.testing.assert_array_equal(read_features(out)[1][idx], ref.astype(np.float16).astype(np.float32))


def test_regions_differ_and_weights_file_sha_is_recorded(store_path, tmp_path):
    net = create_backbone("tiny_feat", "random", seed=1)
    wpath = tmp_path / "tiny.pth"
    torch.save(net.state_dict(), wpath)
    feats = {}
    for region in ("face", "lower"):
        out = tmp_path / f"{region}.h5"
        extract_features(store_path, out, "tiny_feat", region, weights=str(wpath), batch_size=7, num_workers=0,
                         progress=False)
        _, X, valid, attrs = read_features(out)
        assert attrs["weights"] == str(wpath)
        assert attrs["weights_sha256"] == hashlib.sha256(wpath.read_bytes()).hexdigest()
        idx, ref = _expected(store_path, net, region, 32)
        np.testing.assert_allclose(X[idx], ref, rtol=2e-3, atol=1e-3)
        feats[region] = X[valid]
    assert not np.allclose(feats["face"], feats["lower"])


def test_bad_region_and_non_finite_features_are_clear_errors(store_path, tmp_path):
    with pytest.raises(FeatureError, match="au_region"):
        extract_features(store_path, tmp_path / "x.h5", "tiny_feat", "au_region", weights="random", progress=False)
    net = create_backbone("tiny_feat", "random")
    net.fc = nn.Sequential(nn.Identity())
    net.fc.append(_Scale(1e9))
    with pytest.raises(FeatureError, match=r"subject SN001, frame 102: tiny_feat features are not finite"):
        extract_features(store_path, tmp_path / "x.h5", net, "face", num_workers=0, progress=False)
    assert not (tmp_path / "x.h5").exists()


class _Scale(nn.Module):
    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s + self.s


def test_read_features_rejects_other_files(tmp_path):
    with pytest.raises(FeatureError, match="does not exist"):
        read_features(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["features"] = np.zeros((3, 2), np.float16)
    with pytest.raises(FeatureError, match=r"other\.h5: not a feature file.*frames"):
        read_features(other)


def test_mean_image_from_training_stores(tmp_path):
    paths = [_store(tmp_path / "SN001.h5", "SN001", seed=1), _store(tmp_path / "SN002.h5", "SN002", seed=2,
                                                                     invalid=(3,))]
    mean = compute_mean_image(paths, "middle", 32, batch_size=4, progress=False)
    crops = []
    for p in paths:
        with FaceStore(p) as st:
            crops.append(st.crops(np.flatnonzero(st.valid), "middle", 32).astype(np.float64))
    ref = np.concatenate(crops).mean(axis=0)
    assert mean.shape == (32, 32, 3) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, ref, rtol=1e-5)
    mi_path = tmp_path / "mean.npy"
    np.save(mi_path, mean)
    out = tmp_path / "mi.h5"
    extract_features(paths[0], out, "tiny_feat", "middle", weights="random", mean_image=mi_path, num_workers=0,
                     progress=False)
    _, X, valid, attrs = read_features(out)
    assert attrs["mean_image"] == str(mi_path)
    assert attrs["mean_image_sha256"] == hashlib.sha256(mi_path.read_bytes()).hexdigest()
    net = create_backbone("tiny_feat", "random")
    idx, ref = _expected(paths[0], net, "middle", 32, mean_image=mean)
    np.testing.assert_allclose(X[idx], ref, rtol=2e-3, atol=1e-3)
    _, plain = _expected(paths[0], net, "middle", 32)
    assert not np.allclose(X[idx], plain, rtol=2e-3, atol=1e-3)


@pytest.mark.workflow
@pytest.mark.xdist_group("workflow")
def test_workflow_writes_feature_files(finished_workflow):
    """The shared tiny run (tests/config_test.yaml): dlib_resnet features of every region and subject."""
    import yaml
    from conftest import TEST_CONFIG

    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    backbones = cfg["features"]["backbones"]
    subjects = cfg["data"]["demo"]["subjects"]
    for b in backbones:
        for region in ("face", "upper", "middle", "lower"):
            for s in subjects:
                path = finished_workflow / "results" / "features" / b / region / f"{s}.h5"
                frames, X, valid, attrs = read_features(path)
                with FaceStore(finished_workflow / "results" / "faces" / f"{s}.h5") as st:
                    np.testing.assert_array_equal(frames, st.frames)
                    np.testing.assert_array_equal(valid, st.valid)
                assert attrs["backbone"] == b and attrs["region"] == region and attrs["subject"] == s
                assert len(attrs["weights_sha256"]) == 64
                assert valid.any() and np.isfinite(X[valid]).all() and np.isnan(X[~valid]).all()
                assert X.shape[1] == attrs["dim"]


def test_num_workers_auto():
    from au_transfer.features import resolve_num_workers

    assert resolve_num_workers("auto", torch.device("cpu"), 4) == 0
    assert resolve_num_workers("auto", torch.device("cuda"), 8) == 7
    assert resolve_num_workers("auto", torch.device("cuda"), 1) == 2
    assert resolve_num_workers(3, torch.device("cpu"), 1) == 3
    with pytest.raises(FeatureError, match="num_workers"):
        resolve_num_workers(-1, torch.device("cpu"))


def test_an_error_of_the_reading_thread_stops_the_job(store_path, tmp_path):
    class Broken:
        """A face store whose images cannot be read after the first batch."""

        def __init__(self, path):
            self.store, self.calls = FaceStore(path), 0
            self.frames, self.valid, self.subject = self.store.frames, self.store.valid, self.store.subject

        def __len__(self):
            return len(self.store)

        def crops(self, idx, region, size):
            self.calls += 1
            if self.calls > 1:
                raise OSError(f"{self.store.path}: read error")
            return self.store.crops(idx, region, size)

    out = tmp_path / "feat.h5"
    with pytest.raises(OSError, match="read error"):
        extract_features(store_path, out, "tiny_feat", "face", weights="random", batch_size=5, num_workers=0,
                         device="cpu", store_opener=Broken, progress=False)
    assert not out.exists()


def test_cpu_streams_give_the_same_features_in_order_and_restore_threads(store_path, tmp_path):
    """With several cores, batches run side by side (one intra-op thread each): the same file as one batch at a
    time, rows in the store's order, and torch's thread count as it was."""
    net = create_backbone("tiny_feat", "random", seed=5)
    torch.set_num_threads(1)
    one = tmp_path / "one.h5"
    extract_features(store_path, one, net, "lower", batch_size=3, num_workers=0, device="cpu", threads=2,
                     cpu_streams=False, progress=False)
    assert torch.get_num_threads() == 2
    streams = tmp_path / "streams.h5"
    extract_features(store_path, streams, net, "lower", batch_size=3, num_workers=0, device="cpu", threads=3,
                     cpu_streams=True, progress=False)
    assert torch.get_num_threads() == 3
    torch.set_num_threads(1)
    (_, a, va, _), (_, b, vb, _) = read_features(one), read_features(streams)
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_array_equal(a, b)  # NaN rows in the same places, every value equal
    idx, ref = _expected(store_path, net, "lower", 32)
    np.testing.assert_array_equal(b[idx], ref.astype(np.float16).astype(np.float32))


def test_forward_in_order_keeps_order_and_raises_a_stream_error():
    import random
    import time

    from au_transfer.features import _forward_in_order

    def batches(n):
        for i in range(n):
            yield np.array([i]), torch.tensor([float(i)])

    def slow(x):
        time.sleep(random.uniform(0, 0.01))  # finish out of order
        return x * 2

    got = [(int(i[0]), float(f[0])) for i, f in _forward_in_order(batches(20), slow, 3)]
    assert got == [(i, 2.0 * i) for i in range(20)]

    def broken(x):
        if float(x[0]) == 7:
            raise RuntimeError("forward failed on batch 7")
        return x

    seen = []
    with pytest.raises(RuntimeError, match="batch 7"):
        for i, _ in _forward_in_order(batches(20), broken, 2):
            seen.append(int(i[0]))
    assert seen == list(range(7))


def test_cpu_stream_split_bounds_the_batches_in_flight():
    from au_transfer.features import MAX_CPU_STREAMS, cpu_stream_split

    assert cpu_stream_split(1) == (1, 1)
    assert cpu_stream_split(2) == (2, 1)
    assert cpu_stream_split(3) == (3, 1)
    assert cpu_stream_split(8) == (MAX_CPU_STREAMS, 8 // MAX_CPU_STREAMS)
    assert all(s <= MAX_CPU_STREAMS and s * t <= n for n in range(1, 65) for s, t in [cpu_stream_split(n)])


def test_an_undecodable_jpeg_row_is_named_by_images_and_crops(tmp_path):
    from au_transfer.faces.store import StoreError

    path = _store(tmp_path / "SN001.h5", encoding="jpeg")
    with h5py.File(path, "r+") as h5:
        h5["images"][9] = np.frombuffer(b"not a jpeg at all", np.uint8)
    with FaceStore(path) as st:
        assert st.images([8]).shape == (1, SIZE, SIZE, 3)  # the rows around it still read
        for read in (lambda: st.images([8, 9]), lambda: st.crops([7, 9, 10], "lower", 32)):
            with pytest.raises(StoreError, match=r"SN001.h5: row 9 \(frame 110\) does not decode"):
                read()
