"""dlib's face ResNet in PyTorch: parity with dlib's own descriptor on real faces, the .dat reader, the Backbone
view, weights handling."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from au_transfer.backbones import dlib_resnet as D
from au_transfer.backbones.weights import WeightsError

dlib = pytest.importorskip("dlib")

PARITY_TOL = 1e-3


@pytest.fixture(scope="module")
def dat_path() -> Path:
    return D.default_model_path()


@pytest.fixture(scope="module")
def net() -> D.DlibResNet:
    torch.set_num_threads(1)
    return D.build("dlib_resnet")


def _real_faces() -> list[tuple[str, np.ndarray]]:
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        hopper = np.array(Image.open(fh).convert("RGB"))
    return [("astronaut", data.astronaut()), ("grace_hopper", hopper)]


@pytest.fixture(scope="module")
def faces(dat_path: Path) -> list[dict]:
    """Real faces: image, dlib's 5-point shape, dlib's chip and dlib's own descriptor."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dat_path.parent / "shape_predictor_5_face_landmarks.dat"))
    recognizer = dlib.face_recognition_model_v1(str(dat_path))
    out = []
    for name, img in _real_faces():
        dets = detector(img, 1)
        assert len(dets) >= 1, f"no face found in {name}"
        shape = predictor(img, dets[0])
        chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
        out.append({
            "name": name, "img": img, "chip": chip,
            "ref": np.array(recognizer.compute_face_descriptor(img, shape)),
            "ref_chip": np.array(recognizer.compute_face_descriptor(chip)),
        })
    return out


def _run(model: torch.nn.Module, chips: np.ndarray, features: bool = False) -> np.ndarray:
    x = D.preprocess_uint8(chips)
    with torch.inference_mode():
        return (model.features(x) if features else model(x)).numpy().astype(np.float64)


# ------------------------------------------------------------------------------------------------ parity
def test_descriptor_matches_dlib_on_real_faces(net, faces):
    chips = np.stack([f["chip"] for f in faces])
    ours = _run(net, chips)  # one batch: batching must not change anything
    for f, v in zip(faces, ours, strict=True):
        assert np.abs(f["ref"] - f["ref_chip"]).max() < 1e-6, "dlib's two overloads disagree"
        diff = np.abs(v - f["ref"]).max()
        assert diff < PARITY_TOL, f"{f['name']}: max abs difference {diff:.2e} per dimension"
        # dlib returns the raw fc output, not an L2-normalised vector; so do we
        assert abs(np.linalg.norm(v) - np.linalg.norm(f["ref"])) < 1e-3
        assert abs(np.linalg.norm(v) - 1.0) > 0.05


def test_descriptor_distinguishes_people(net, faces):
    a, b = _run(net, np.stack([f["chip"] for f in faces]))
    # dlib's same-person threshold is 0.6
    assert np.linalg.norm(a - b) > 0.6


def test_preprocessing_is_dlibs_input_layer(faces):
    chip = faces[0]["chip"]
    x = D.preprocess_uint8(chip[None])
    assert x.shape == (1, 3, 150, 150)
    expected = (chip[75, 40].astype(np.float64) - np.array(D.DLIB_MEAN_RGB)) / 256.0
    np.testing.assert_allclose(x[0, :, 75, 40].numpy(), expected, atol=1e-6)
    # the registry's generic (x/255 - mean)/std gives the same tensor
    generic = (torch.from_numpy(chip).permute(2, 0, 1).float() / 255.0 - torch.tensor(D.MEAN).view(3, 1, 1)) \
        / torch.tensor(D.STD).view(3, 1, 1)
    torch.testing.assert_close(generic, x[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="150x150"):
        D.preprocess_uint8(np.zeros((1, 100, 100, 3), np.uint8))


# ------------------------------------------------------------------------------------------ feature layers
@pytest.mark.parametrize("layer", list(D.LAYERS))
def test_feature_layers(layer, net, faces):
    model = D.DlibResNet(net.trunk, layer, weights_sha256=net.weights_sha256)
    chips = np.stack([f["chip"] for f in faces])
    feats = _run(model, chips, features=True)
    assert feats.shape == (len(faces), D.LAYERS[layer][0])
    assert np.isfinite(feats).all() and feats.std() > 0
    # the tail takes every feature layer back to dlib's descriptor
    np.testing.assert_allclose(_run(model, chips), np.stack([f["ref"] for f in faces]), atol=PARITY_TOL)


def test_pool_layer_is_mean_of_level0(net, faces):
    model = D.build("dlib_resnet.pool")
    x = D.preprocess_uint8(np.stack([f["chip"] for f in faces]))
    with torch.inference_mode():
        pooled = model.features(x)
        y = x
        for stage in list(model.body)[:6]:
            y = stage(y)
    assert y.shape[1:] == (256, 2, 2)
    torch.testing.assert_close(pooled, y.mean(dim=(2, 3)))
    assert model.weights_sha256 == net.weights_sha256


def test_unknown_layer():
    with pytest.raises(KeyError, match="dlib_resnet.nope"):
        D.build("dlib_resnet.nope", weights="random")


# ------------------------------------------------------------------------------------------------- weights
def test_sha256_of_the_dat(net, dat_path):
    assert net.weights_sha256 == hashlib.sha256(dat_path.read_bytes()).hexdigest()


def test_reader_layer_inventory(dat_path):
    dnet = D.read_dlib_dnn(dat_path)
    kinds = [layer.kind for layer in dnet.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("fc") == 1
    assert kinds[:4] == ["con", "affine", "relu", "max_pool"] and kinds[-2:] == ["avg_pool", "fc"]
    assert dnet.loss["type"] == "loss_metric" and abs(dnet.loss["distance_threshold"] - 0.6) < 1e-6
    np.testing.assert_allclose(dnet.input["mean_rgb"], D.DLIB_MEAN_RGB, atol=1e-4)
    n_params = sum(layer.attrs["weight"].size for layer in dnet.layers if "weight" in layer.attrs)
    assert n_params > 5_000_000


def test_weights_copied_from_file(net, dat_path):
    dnet = D.read_dlib_dnn(dat_path)
    first = dnet.layers[0].attrs
    trunk = net.trunk
    np.testing.assert_array_equal(trunk.stem.conv.weight.detach().numpy(), first["weight"])
    np.testing.assert_array_equal(trunk.stem.conv.bias.detach().numpy(), first["bias"])
    np.testing.assert_array_equal(trunk.fc.weight.detach().numpy(), dnet.layers[-1].attrs["weight"].T)


@pytest.mark.parametrize("cut", [10, 5000, 1_000_000])
def test_truncated_file_is_a_clear_error(tmp_path, dat_path, cut):
    bad = tmp_path / "cut.dat"
    bad.write_bytes(dat_path.read_bytes()[:cut])
    with pytest.raises(D.DlibFormatError, match=r"cut\.dat.*byte"):
        D.build(weights=bad)


def test_wrong_layer_type_is_a_clear_error(tmp_path, dat_path):
    data = bytearray(dat_path.read_bytes())
    i = data.index(b"\x01\x07affine_")
    data[i + 2:i + 9] = b"affinX_"
    bad = tmp_path / "bad.dat"
    bad.write_bytes(bytes(data))
    with pytest.raises(D.DlibFormatError, match=r"bad\.dat.*'affinX_'"):
        D.read_dlib_dnn(bad)


def test_other_dlib_network_is_rejected(dat_path):
    with pytest.raises(D.DlibFormatError, match="mmod_human_face_detector.dat"):
        D.build(weights=dat_path.parent / "mmod_human_face_detector.dat")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_state_dict_round_trip(tmp_path, net, faces, suffix):
    trunk = net.trunk
    path = tmp_path / f"dlib{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in trunk.state_dict().items()}, str(path))
    else:
        torch.save(trunk.state_dict(), path)
    loaded = D.build(weights=path)
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    chips = np.stack([f["chip"] for f in faces])
    np.testing.assert_array_equal(_run(loaded, chips), _run(net, chips))


def test_view_state_dict_round_trip(tmp_path, faces):
    """A fine-tuned Backbone's own state dict (body/fc/tail keys) loads back into the same layer view."""
    model = D.build("dlib_resnet.level1", weights="random", seed=3)
    path = tmp_path / "ft.pth"
    torch.save(model.state_dict(), path)
    loaded = D.build("dlib_resnet.level1", weights=path)
    chips = np.stack([f["chip"] for f in faces])
    np.testing.assert_array_equal(_run(loaded, chips, features=True), _run(model, chips, features=True))
    with pytest.raises(WeightsError, match="ft.pth.*dlib_resnet.pool"):
        D.build("dlib_resnet.pool", weights=path)


def test_foreign_state_dict_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="other.pth.*missing keys"):
        D.build(weights=path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="nothere.dat"):
        D.build(weights=tmp_path / "nothere.dat")


def test_random_only_when_asked_and_seeded(net, faces):
    chips = np.stack([f["chip"] for f in faces])
    r1, r2, r3 = D.build(weights="random", seed=1), D.build(weights="random", seed=1), D.build(weights="random", seed=2)
    assert r1.weights_sha256 == "random:seed=1" and r1.weights == "random"
    np.testing.assert_array_equal(_run(r1, chips), _run(r2, chips))
    assert not np.allclose(_run(r1, chips), _run(r3, chips))
    assert np.abs(_run(r1, chips) - _run(net, chips)).max() > 0.01


# --------------------------------------------------------------------------------------------- fine-tuning
def test_fine_tunable(faces):
    model = D.build("dlib_resnet.pool", weights="random", seed=0).train()
    params = list(model.parameters())
    assert params and all(p.requires_grad for p in params)
    assert isinstance(model.body, torch.nn.Sequential) and len(model.body) == 7
    x = D.preprocess_uint8(np.stack([f["chip"] for f in faces]))
    model.features(x).pow(2).sum().backward()
    stem_conv = model.body[0].conv
    assert stem_conv.weight.grad is not None and stem_conv.weight.grad.abs().sum() > 0
    # the feature layer's gradient does not reach the tail (the 128-D fc)
    assert model.tail[0].weight.grad is None


# ------------------------------------------------------------------------------------------------ registry
@pytest.mark.parametrize("layer", list(D.LAYERS))
def test_registry_entries(layer, faces):
    from au_transfer.backbones import create_backbone, get_spec, list_backbones, preprocess

    assert layer in list_backbones()
    spec = get_spec(layer)
    assert (spec.feature_dim, spec.input_size, spec.family) == (D.LAYERS[layer][0], 150, "dlib")
    model = create_backbone(layer)  # pretrained: the package's .dat, found by path
    assert model.weights_sha256 == hashlib.sha256(D.default_model_path().read_bytes()).hexdigest()
    assert model.weights.startswith("pretrained:")
    chips = np.stack([f["chip"] for f in faces])
    x = preprocess(spec, chips)
    with torch.inference_mode():
        feats, desc = model.features(x), model(x)
    assert feats.shape == (len(faces), spec.feature_dim)
    # the registry's generic preprocessing reproduces dlib's descriptor as well
    np.testing.assert_allclose(desc.numpy(), np.stack([f["ref"] for f in faces]), atol=PARITY_TOL)


# ------------------------------------------------------------------------------------- synthetic demo corpus
@pytest.fixture(scope="module")
def demo_faces(tmp_path_factory, dat_path) -> list[dict]:
    """Frames of the synthetic demo corpus (both source photos, plain and mirrored), read back from its videos."""
    import cv2

    demo = pytest.importorskip("au_transfer.datasets.demo")
    from au_transfer.datasets import disfa

    root = tmp_path_factory.mktemp("demo")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dat_path.parent / "shape_predictor_5_face_landmarks.dat"))
    recognizer = dlib.face_recognition_model_v1(str(dat_path))
    out = []
    for subject in ("SN001", "SN002", "SN003", "SN004"):
        demo.generate_subject(root, subject, n_frames=2, width=480, height=360, seed=11)
        cap = cv2.VideoCapture(str(disfa.video_path(root, subject)))
        ok, bgr = cap.read()
        cap.release()
        assert ok, f"cannot read the demo video of {subject}"
        img = np.ascontiguousarray(bgr[:, :, ::-1])
        dets = detector(img, 1)
        assert len(dets) == 1, f"{subject} frame 1: {len(dets)} faces found"
        shape = predictor(img, dets[0])
        out.append({"name": subject, "chip": dlib.get_face_chip(img, shape, size=150, padding=0.25),
                    "ref": np.array(recognizer.compute_face_descriptor(img, shape))})
    return out


def test_descriptor_matches_dlib_on_demo_corpus(net, demo_faces):
    ours = _run(net, np.stack([f["chip"] for f in demo_faces]))
    for f, v in zip(demo_faces, ours, strict=True):
        diff = np.abs(v - f["ref"]).max()
        assert diff < PARITY_TOL, f"demo {f['name']}: max abs difference {diff:.2e} per dimension"
