"""MTCNN's ONet (facenet-pytorch) as a backbone: feature layer, weights from the package file, determinism."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from au_transfer.backbones import mtcnn_onet as M
from au_transfer.backbones.weights import WeightsError

pytest.importorskip("facenet_pytorch")


@pytest.fixture(scope="module")
def net() -> M.MtcnnONet:
    torch.set_num_threads(1)
    return M.build()


@pytest.fixture(scope="module")
def face_crops() -> np.ndarray:
    """The astronaut's face (a real face) and a crop of the background, as uint8 RGB."""
    from skimage import data

    img = data.astronaut()
    face = img[76:166, 175:265]   # her face: dlib's frontal detector box (175, 76)-(265, 166)
    background = img[400:490, 0:90]
    return np.stack([face, background])


def test_feature_dimension_and_layout(net, face_crops):
    x = M.preprocess_uint8(face_crops)
    assert x.shape == (2, 3, 48, 48)
    with torch.inference_mode():
        body = net.body(x)
        feats = net.features(x)
        logits = net(x)
    assert body.shape == (2, 1152) and feats.shape == (2, M.FEATURE_DIM) and logits.shape == (2, 2)
    assert net.fc[0] is net.onet.dense5 and net.tail[0] is net.onet.dense6_1


def test_weights_are_the_package_file(net):
    path = M.default_weights_path()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    ours = net.onet.state_dict()
    assert set(sd) == set(ours)
    for key, value in sd.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=0, msg=f"{key} differs from {path}")
    assert net.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_outputs_as_facenet_pytorch_onet(net, face_crops):
    from facenet_pytorch.models.mtcnn import ONet

    ref = ONet(pretrained=False)
    ref.load_state_dict(torch.load(M.default_weights_path(), map_location="cpu", weights_only=True))
    ref.eval()
    x = M.preprocess_uint8(face_crops)
    with torch.inference_mode():
        _, _, prob = ref(x)
        ours = torch.softmax(net(x), dim=1)
    torch.testing.assert_close(ours, prob)


def test_onet_mirrors_facenet_pytorch(face_crops):
    """The ONet defined here (facenet-pytorch is not imported: start-up) is the package's: same modules, same
    parameter names and shapes, same seeded initialisation, same outputs of all three heads."""
    from facenet_pytorch.models.mtcnn import ONet

    torch.manual_seed(3)
    ref = ONet(pretrained=False).eval()
    torch.manual_seed(3)
    ours = M.ONet().eval()
    assert [(n, type(m)) for n, m in ours.named_children()] == [(n, type(m)) for n, m in ref.named_children()]
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd)
    for key, value in ref_sd.items():
        torch.testing.assert_close(our_sd[key], value, rtol=0, atol=0, msg=key)
    x = M.preprocess_uint8(face_crops)
    with torch.inference_mode():
        for a, b in zip(ours(x), ref(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pretrained_weights_see_a_face(net, face_crops):
    with torch.inference_mode():
        prob = torch.softmax(net(M.preprocess_uint8(face_crops)), dim=1)[:, 1]
    assert prob[0] > 0.9, f"face probability of a real face is {prob[0]:.3f}"
    assert prob[1] < 0.5, f"face probability of a background crop is {prob[1]:.3f}"


def test_preprocessing_matches_facenet(face_crops):
    from facenet_pytorch.models.utils.detect_face import imresample

    ref = (imresample(torch.from_numpy(face_crops).permute(0, 3, 1, 2).float(), (48, 48)) - 127.5) * 0.0078125
    torch.testing.assert_close(M.preprocess_uint8(face_crops), ref)
    # the registry's generic (x/255 - mean)/std on a 48x48 crop gives the same values
    small = face_crops[:, :48, :48]
    generic = (torch.from_numpy(small).permute(0, 3, 1, 2).float() / 255 - M.MEAN[0]) / M.STD[0]
    torch.testing.assert_close(generic, M.preprocess_uint8(small), atol=1e-5, rtol=0)


def test_deterministic(net, face_crops):
    x = M.preprocess_uint8(face_crops)
    with torch.inference_mode():
        a, b = net.features(x), net.features(x)
        single = net.features(x[:1])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(single, a[:1], atol=1e-5, rtol=0)


def test_random_only_when_asked_and_seeded(net, face_crops):
    x = M.preprocess_uint8(face_crops)
    r1, r2, r3 = M.build(weights="random", seed=5), M.build(weights="random", seed=5), M.build(weights="random", seed=6)
    assert r1.weights_sha256 == "random:seed=5" and r1.weights == "random"
    with torch.inference_mode():
        f1, f2, f3, fp = r1.features(x), r2.features(x), r3.features(x), net.features(x)
    torch.testing.assert_close(f1, f2, rtol=0, atol=0)
    assert not torch.allclose(f1, f3) and not torch.allclose(f1, fp)


def test_local_file_and_errors(tmp_path, net, face_crops):
    path = tmp_path / "onet_copy.pt"
    torch.save(net.onet.state_dict(), path)
    loaded = M.build(weights=path)
    x = M.preprocess_uint8(face_crops)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.features(x), net.features(x), rtol=0, atol=0)
    with pytest.raises(WeightsError, match="missing.pt"):
        M.build(weights=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"dense5.weight": torch.zeros(3)}, bad)
    with pytest.raises(WeightsError, match="bad.pt.*ONet"):
        M.build(weights=bad)
    with pytest.raises(KeyError, match="mtcnn_onet.x"):
        M.build("mtcnn_onet.x")


def test_fine_tunable(face_crops):
    model = M.build(weights="random", seed=0).train()
    assert all(p.requires_grad for p in model.parameters())
    model.features(M.preprocess_uint8(face_crops)).sum().backward()
    assert model.body[0].weight.grad is not None and model.body[0].weight.grad.abs().sum() > 0


def test_registry_entry(net, face_crops):
    from au_transfer.backbones import create_backbone, get_spec, list_backbones, preprocess

    assert "mtcnn_onet" in list_backbones()
    spec = get_spec("mtcnn_onet")
    assert (spec.feature_dim, spec.input_size, spec.family) == (256, 48, "mtcnn")
    model = create_backbone("mtcnn_onet")
    assert model.weights_sha256 == net.weights_sha256
    small = face_crops[:, 21:69, 21:69].copy()  # already 48x48: no resampling difference
    with torch.inference_mode():
        ours = model.features(preprocess(spec, small))
        ref = net.features(M.preprocess_uint8(small))
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
