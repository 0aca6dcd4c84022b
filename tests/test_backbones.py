"""Backbone registry: feature dimensions, paper Table I shapes, weights from files / hub cache, clear errors."""

from __future__ import annotations

import hashlib
import urllib.error

import numpy as np
import pytest
import torch
from torch import nn

from au_transfer.backbones import (
    Backbone,
    BackboneError,
    BackboneSpec,
    WeightsError,
    create_backbone,
    get_spec,
    list_backbones,
    preprocess,
    preprocess_numpy,
    register_backbone,
)
from au_transfer.backbones.classic import KEY_MAPS

torch.set_num_threads(1)

PAPER = ["alexnet", "zfnet", "vgg16", "vgg_face", "cnn_f", "cnn_m", "cnn_s", "googlenet", "resnet50", "resnet152"]
#: feature width of the first FC layer after the conv blocks / the pooled vector (architectures; cf. Table V)
EXPECTED_DIM = {"alexnet": 4096, "zfnet": 4096, "vgg16": 4096, "vgg_face": 4096, "cnn_f": 4096, "cnn_m": 4096,
                "cnn_s": 4096, "googlenet": 1024, "resnet50": 2048, "resnet152": 2048}
EXPECTED_CLASSES = {"vgg_face": 2622}
#: networks with an adaptive pool before the classifier can be checked on small inputs (cheap)
SMALL_INPUT = {"vgg16": 32, "vgg_face": 32, "resnet152": 64, "resnet50": 64, "googlenet": 64, "alexnet": 64}


def _features(net: Backbone, size: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    with torch.inference_mode():
        return net.features(x)


def test_registry_lists_paper_networks_and_lazy_ones():
    names = list_backbones()
    for name in [*PAPER, "dlib_resnet", "mtcnn_onet"]:
        assert name in names


@pytest.mark.parametrize("name", PAPER)
def test_feature_dimensions_random_weights(name):
    spec = get_spec(name)
    assert spec.feature_dim == EXPECTED_DIM[name]
    assert spec.input_size == 224
    net = create_backbone(name, "random", seed=0)
    size = SMALL_INPUT.get(name, spec.input_size)
    f = _features(net, size)
    assert f.shape == (2, EXPECTED_DIM[name])
    assert torch.isfinite(f).all()
    if spec.family in ("alexnet", "zfnet", "vgg", "cnn"):
        assert (f >= 0).all(), "fc6 features are taken after the ReLU"
    with torch.inference_mode():
        logits = net.tail(f)
    assert logits.shape == (2, EXPECTED_CLASSES.get(name, 1000))
    assert net.weights == "random" and net.weights_sha256 == "random:seed=0"
    assert not net.training


def test_timm_model_by_name():
    spec = get_spec("timm:resnet18")
    assert (spec.family, spec.feature_dim, spec.input_size) == ("timm", 512, 224)
    assert get_spec("resnet18").feature_dim == 512  # a bare name that is not registered goes to timm
    net = create_backbone("timm.resnet18", "random", seed=3)
    assert _features(net, 64).shape == (2, 512)
    with torch.inference_mode():
        assert net(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(BackboneError, match="unknown backbone 'no_such_net'.*cnn_f"):
        get_spec("no_such_net")


# ---------------------------------------------------------------------------------------------- Table I
def _trace(net: Backbone, size: int = 224) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
             for name, m in net.body.named_children()]
    _features(net, size, n=1)
    for h in hooks:
        h.remove()
    return shapes


#: paper Table I: filters x kernel, stride, pad; LRN; pooling factor; with 224 inputs, the spatial sizes of the
#: released MatConvNet models (conv1 54/109, conv5 pooled to 6x6 so that fc6 sees 6x6xC)
TABLE_I = {
    "cnn_f": dict(conv=[(64, 11, 4, 0), (256, 5, 1, 2), (256, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)],
                  lrn=[1, 2], pool={1: 2, 2: 2, 5: 2},
                  sizes={"conv1": 54, "pool1": 27, "conv2": 27, "pool2": 13, "conv5": 13, "pool5": 6}),
    "cnn_m": dict(conv=[(96, 7, 2, 0), (256, 5, 2, 1), (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1)],
                  lrn=[1, 2], pool={1: 2, 2: 2, 5: 2},
                  sizes={"conv1": 109, "pool1": 54, "conv2": 26, "pool2": 13, "conv5": 13, "pool5": 6}),
    "cnn_s": dict(conv=[(96, 7, 2, 0), (256, 5, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1)],
                  lrn=[1], pool={1: 3, 2: 2, 5: 3},
                  sizes={"conv1": 109, "pool1": 37, "conv2": 35, "pool2": 17, "conv5": 17, "pool5": 6}),
}


@pytest.mark.parametrize("name", sorted(TABLE_I))
def test_cnn_fms_layers_match_table_I(name):
    table = TABLE_I[name]
    net = create_backbone(name, "random")
    body = dict(net.body.named_children())
    for i, (filters, k, s, p) in enumerate(table["conv"], 1):
        conv = body[f"conv{i}"]
        assert isinstance(conv, nn.Conv2d)
        assert (conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (filters, (k, k), (s, s), (p, p))
    assert sorted(int(n[4:]) for n in body if n.startswith("norm")) == table["lrn"]
    for n in body:
        if n.startswith("norm"):
            lrn = body[n]
            assert isinstance(lrn, nn.LocalResponseNorm) and lrn.size == 5
    pools = {int(n[4:]): m for n, m in body.items() if n.startswith("pool")}
    assert {i: m.stride for i, m in pools.items()} == table["pool"]
    shapes = _trace(net)
    for layer, size in table["sizes"].items():
        assert shapes[layer][-2:] == (size, size), f"{name} {layer}: {shapes[layer]}"
    fc6 = net.fc.fc6
    assert fc6.in_features == table["conv"][-1][0] * 6 * 6 and fc6.out_features == 4096
    assert [type(m) for m in net.tail] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]


def test_zfnet_follows_section_II_B():
    net = create_backbone("zfnet", "random")
    body = dict(net.body.named_children())
    assert body["conv1"].kernel_size == (7, 7) and body["conv1"].stride == (2, 2)
    assert [body[f"conv{i}"].out_channels for i in (3, 4, 5)] == [512, 1024, 512]
    assert _trace(net)["pool5"][-2:] == (6, 6)


# ----------------------------------------------------------------------------------------------- weights
def _googlenet_native(seed: int) -> nn.Module:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=True)


def test_local_pth_and_safetensors_give_identical_features(tmp_path):
    from safetensors.torch import save_file

    sd = _googlenet_native(11).state_dict()  # torchvision's own key names, as torch.save(model.state_dict())
    pth, st = tmp_path / "googlenet.pth", tmp_path / "googlenet.safetensors"
    torch.save(sd, pth)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    nets = [create_backbone("googlenet", str(path)) for path in (pth, st)]
    for net, path in zip(nets, (pth, st), strict=True):
        assert net.weights == str(path)
        assert net.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    f_ref = _features(nets[0], 64, seed=5)
    assert torch.equal(_features(nets[1], 64, seed=5), f_ref)
    assert torch.equal(nets[0].tail.fc.weight, sd["fc.weight"])
    other = create_backbone("googlenet", "random", seed=12)
    assert (_features(other, 64, seed=5) - f_ref).abs().max() > 0.01 * f_ref.abs().max()
    # a whole Backbone's state dict (e.g. saved after fine-tuning), wrapped and with DataParallel prefixes
    whole = tmp_path / "whole.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in nets[0].state_dict().items()}, "epoch": 3}, whole)
    assert torch.equal(_features(create_backbone("googlenet", whole), 64, seed=5), f_ref)
    # a regex key map, as a user would give for a checkpoint with other names
    prefixed = tmp_path / "prefixed.pth"
    torch.save({f"net.{k}": v for k, v in sd.items()}, prefixed)
    assert torch.equal(_features(create_backbone("googlenet", prefixed, key_map={r"^net\.": ""}), 64, seed=5),
                       f_ref)


def test_cadene_vggm_key_map_gives_native_cnn_m_weights():
    from au_transfer.backbones.classic import TABLE_I, _map_keys, conv_stack
    from au_transfer.backbones.weights import fit_shapes

    torch.manual_seed(4)
    native = conv_stack(TABLE_I["cnn_m"])
    sd = native.state_dict()
    # Cadene's vggm port of MatConvNet's imagenet-vgg-m: features.N / classif.N names, BGR conv1
    names = {"conv1": "features.0", "conv2": "features.4", "conv3": "features.8", "conv4": "features.10",
             "conv5": "features.12", "fc6": "classif.0", "fc7": "classif.3", "fc8": "classif.6"}
    cadene = {}
    for k, v in sd.items():
        layer, param = k.split(".")
        cadene[f"{names[layer]}.{param}"] = v.flip(1) if k == "conv1.weight" else v
    cadene["classif.0.weight"] = cadene["classif.0.weight"].reshape(4096, 512, 6, 6)  # fc6 as a 6x6 convolution
    spec = get_spec("cnn_m")
    for mapped in (_map_keys(cadene, native, "cadene_vggm", spec), _map_keys(cadene, native, None, spec)):
        mapped = fit_shapes(mapped, sd)
        assert set(mapped) == set(sd)
        for k in sd:
            assert torch.equal(mapped[k], sd[k]), k


def test_vgg_face_caffe_key_names():
    t = torch.zeros(1)
    mapped = KEY_MAPS["vgg_face_caffe"]({"conv1_1.weight": t, "conv3_3.bias": t, "conv5_3.weight": t,
                                         "fc6.weight": t, "fc8.bias": t})
    assert set(mapped) == {"features.0.weight", "features.14.bias", "features.28.weight", "classifier.0.weight",
                           "classifier.6.bias"}
    w = torch.arange(6.0).reshape(1, 3, 1, 2)
    assert torch.equal(KEY_MAPS["vgg_face_caffe_bgr"]({"conv1_1.weight": w})["features.0.weight"], w.flip(1))


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    sd = _googlenet_native(0).state_dict()
    sd["extra.weight"] = torch.zeros(2)
    del sd["fc.bias"]
    sd["conv1.conv.weight"] = sd["conv1.conv.weight"][:5]
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=r"(?s)missing keys: fc\.bias.*unexpected keys: extra\.weight"
                                           r".*conv1\.conv\.weight: file \(5, 3, 7, 7\)"):
        create_backbone("googlenet", path)
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("cnn_f", tmp_path / "nope.pth")


def test_no_pretrained_weights_for_networks_without_hub():
    for name in ("cnn_f", "vgg_face", "zfnet"):
        with pytest.raises(WeightsError, match=rf"no pretrained weights for {name}.*backbones\.{name}\.weights"):
            create_backbone(name)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no network (every download raises URLError)."""
    import torch.hub

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    # torch.hub.set_dir would stay in force after the test (a later test's TORCH_HOME would be ignored): the
    # module's own setting is patched and restored instead
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    yield tmp_path / "hub"


def test_pretrained_without_network_says_where_to_put_the_file(offline_hub):
    with pytest.raises(WeightsError) as err:
        create_backbone("resnet50")
    msg = str(err.value)
    assert "resnet50-0676ba61.pth" in msg and str(offline_hub / "checkpoints") in msg
    assert "backbones.resnet50.weights" in msg and "URLError" in msg


def test_pretrained_loads_from_the_hub_cache(offline_hub):
    import torchvision

    torch.manual_seed(0)
    native = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    ckpt = offline_hub / "checkpoints" / "googlenet-1378be20.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(native.state_dict(), ckpt)
    net = create_backbone("googlenet")  # pretrained: the cached file, no download
    assert net.weights == "pretrained:torchvision:GoogLeNet_Weights.IMAGENET1K_V1"
    assert net.weights_sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    native.eval()
    x = torch.rand(2, 3, 64, 64)
    pooled = {}
    native.avgpool.register_forward_hook(lambda m, i, o: pooled.__setitem__("x", torch.flatten(o, 1)))
    with torch.inference_mode():
        logits = native(x)
        assert torch.allclose(net.features(x), pooled["x"], atol=1e-6)
        assert torch.allclose(net(x), logits, atol=1e-5)


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = create_backbone("cnn_f", "random", seed=7)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = create_backbone("cnn_f", "random", seed=7)
    c = create_backbone("cnn_f", "random", seed=8)
    assert torch.equal(a.fc.fc6.weight, b.fc.fc6.weight)
    assert not torch.equal(a.fc.fc6.weight, c.fc.fc6.weight)
    assert c.weights_sha256 == "random:seed=8"


# ------------------------------------------------------------------------------------------ preprocessing
def test_preprocess_normalises_and_resizes():
    spec = get_spec("resnet50")
    mean_px = np.round(np.array(spec.mean) * 255).astype(np.uint8)
    img = np.broadcast_to(mean_px, (2, 50, 60, 3)).copy()
    x = preprocess(spec, img)
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    expected = (torch.tensor(mean_px / 255.0) - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    assert torch.allclose(x[0, :, 100, 100], expected.float(), atol=1e-5)
    white = preprocess(spec, np.full((1, 224, 224, 3), 255, np.uint8))
    assert torch.allclose(white[0, :, 0, 0], ((1 - torch.tensor(spec.mean)) / torch.tensor(spec.std)).float())
    with pytest.raises(ValueError, match="uint8"):
        preprocess(spec, np.zeros((1, 8, 8, 3), np.float32))


def test_preprocess_caffe_style_and_mean_image():
    spec = get_spec("vgg_face")  # 0-255 scale, mean pixel subtracted, no scaling
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    x = preprocess(spec, img)
    assert torch.allclose(x[0, 0], torch.tensor(img[0, :, :, 0], dtype=torch.float32) - 129.186279296875, atol=1e-3)
    mean_image = rng.uniform(0, 255, (224, 224, 3)).astype(np.float32)
    y = preprocess(spec, img, mean_image=mean_image)
    assert torch.allclose(y[0].permute(1, 2, 0), torch.tensor(img[0], dtype=torch.float32) - torch.tensor(mean_image),
                          atol=1e-3)
    with pytest.raises(ValueError, match="mean image"):
        preprocess(spec, img, mean_image=mean_image[:100])


@pytest.mark.parametrize("name", ["resnet50", "vgg_face", "dlib_resnet", "mtcnn_onet"])
def test_preprocess_numpy_is_preprocess_bit_for_bit(name):
    spec = get_spec(name)
    s = spec.input_size
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (3, s, s, 3), dtype=np.uint8)
    img[0] = 255
    img[1] = 0
    assert torch.equal(preprocess_numpy(spec, img), preprocess(spec, img))
    mean_image = rng.uniform(0, 255, (s, s, 3)).astype(np.float32)
    got = preprocess_numpy(spec, img, mean_image=mean_image)
    assert got.is_contiguous() and torch.equal(got, preprocess(spec, img, mean_image=mean_image))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_numpy(spec, img[:, :-1])
    with pytest.raises(ValueError, match="mean image"):
        preprocess_numpy(spec, img, mean_image=mean_image[:-1])


def test_register_backbone_from_another_module():
    spec = BackboneSpec("tiny_registered", "test", "gap", 4, 16)

    def build(weights, *, key_map=None, seed=0):
        body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        return Backbone(spec, body, weights=weights, weights_sha256="random:seed=0")

    register_backbone("tiny_registered", spec, build, overwrite=True)
    assert "tiny_registered" in list_backbones()
    net = create_backbone("tiny_registered", "random")
    assert _features(net, 16).shape == (2, 4)
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny_registered", spec, build)
    with pytest.raises(ValueError, match="letters, digits"):
        register_backbone("bad-name", spec, build)


@pytest.mark.parametrize("shape", [(4, 64, 9, 9), (2, 5, 3, 3), (3, 3, 4, 4), (2, 1, 2, 2)])
@pytest.mark.parametrize("size", [5, 4, 1])
def test_cross_channel_lrn_is_pytorchs_bit_for_bit(shape, size):
    from au_transfer.backbones.classic import CrossChannelLRN

    ours, theirs = CrossChannelLRN(size, alpha=5e-4, beta=0.75, k=2.0), nn.LocalResponseNorm(size, 5e-4, 0.75, 2.0)
    g = torch.Generator().manual_seed(size + shape[1])
    x0 = torch.relu(torch.randn(shape, generator=g) * 60)  # after a ReLU, on the scale of a conv1 output
    weights = torch.rand(shape, generator=g)
    got = []
    for m in (ours, theirs):
        x = x0.clone().requires_grad_(True)
        y = m(x)
        (y * weights).sum().backward()
        got.append((y.detach(), x.grad))
    assert torch.equal(got[0][0], got[1][0]) and torch.equal(got[0][1], got[1][1])
    assert torch.equal(ours(x0.double()), theirs(x0.double()))
    with torch.inference_mode():
        assert torch.equal(ours(x0), theirs(x0))
    # half precision and other ranks take PyTorch's own path (its pooling accumulates in float32; on a CPU it has
    # no bfloat16 kernel, and then neither has ours)
    def run(m, x):
        try:
            return m(x)
        except Exception as e:  # noqa: BLE001
            return type(e)

    for x in (x0.bfloat16(), x0[0], x0[None]):
        a, b = run(ours, x), run(theirs, x)
        assert (torch.equal(a, b) if isinstance(b, torch.Tensor) else a is b), x.shape


@pytest.mark.parametrize("ceil_mode", [True, False])
def test_channels_last_max_pool_is_pytorchs(ceil_mode):
    from au_transfer.backbones.classic import ChannelsLastMaxPool2d

    ours, theirs = ChannelsLastMaxPool2d(3, 2, ceil_mode=ceil_mode), nn.MaxPool2d(3, 2, ceil_mode=ceil_mode)
    x = torch.relu(torch.randn(3, 8, 13, 13, generator=torch.Generator().manual_seed(3)))
    with torch.inference_mode():
        y = ours(x)
        assert torch.equal(y, theirs(x)) and y.is_contiguous()
        xc = x.contiguous(memory_format=torch.channels_last)
        assert torch.equal(ours(xc), theirs(xc)) and ours(xc).is_contiguous(memory_format=torch.channels_last)
    # with autograd it is PyTorch's own pooling (same indices for tied maxima, so the same gradients)
    xg = x.clone().requires_grad_(True)
    ours(xg).sum().backward()
    xt = x.clone().requires_grad_(True)
    theirs(xt).sum().backward()
    assert torch.equal(xg.grad, xt.grad)
