"""au-transfer convert-weights: MatConvNet files (simplenn with weights or filters/biases, DagNN; MATLAB v5 and
v7.3) written here in MatConvNet's own structures, converted, checked against NumPy forwards of the MATLAB arrays."""

from __future__ import annotations

import functools
import hashlib

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from test_features import _store

from au_transfer.backbones import (
    BackboneSpec,
    create_backbone,
    preprocess,
    preprocess_numpy,
    register_backbone,
)
from au_transfer.backbones.classic import (
    RAW255_STD,
    TABLE_I,
    ConvBlock,
    _split_flat,
    conv_stack,
    native_builder,
)
from au_transfer.backbones.convert import ConversionError, convert_weights
from au_transfer.backbones.weights import load_weights_file
from au_transfer.features import extract_features, read_features

torch.set_num_threads(1)

# a small network of the cnn_* kind: conv1 (LRN, pool 3/2 rounded up), conv2 (pool 2/2), fc6 (6 x 6 x 6 filters), fc7
TINY_BLOCKS = (ConvBlock(4, 3, 1, 1, lrn=True, pool=(3, 2)), ConvBlock(6, 3, 1, 0, pool=(2, 2), pool_ceil=False))
TINY = BackboneSpec("tiny_mcn", "cnn", "fc6 (after ReLU)", 5, 28, (0.5, 0.5, 0.5), RAW255_STD, pretrained="none")
register_backbone("tiny_mcn", TINY, native_builder(TINY, lambda: conv_stack(TINY_BLOCKS, 28, 3, 5), _split_flat),
                  overwrite=True)
LRN = [5.0, 2.0, 1e-4, 0.75]  # MatConvNet's normalize param [N kappa alpha beta] of the Table I networks


# ------------------------------------------------------------------------------ MatConvNet structures
def mcn_layers(blocks, input_size, hidden, classes, rng, old_format=False, shapes_only=False):
    """The layer list of a simplenn file for ``conv_stack(blocks)``: dicts in MatConvNet's field names; filters
    H x W x Cin x Cout (MATLAB order), biases 1 x Cout. ``shapes_only``: zero-stride arrays (no memory)."""
    layers, ch, size = [], 3, input_size

    def uniform(shape):  # in [-0.1, 0.1), float32 without float64 copies (fc6 of CNN-F has 38 M values)
        if shapes_only:
            return np.broadcast_to(np.float32(0), shape)
        a = rng.random(shape, dtype=np.float32)
        a -= 0.5
        a *= 0.2
        return a

    def conv(name, k, cin, cout, stride, pad):
        f, b = uniform((k, k, cin, cout)), uniform((1, cout))
        layer = {"name": name, "type": "conv", "stride": np.array([[stride, stride]], float),
                 "pad": np.array([[pad, pad, pad, pad]], float)}
        if old_format:
            layer.update(filters=f, biases=b)
        else:
            w = np.empty((1, 2), dtype=object)
            w[0, 0], w[0, 1] = f, b
            layer["weights"] = w
        return layer

    for i, b in enumerate(blocks, 1):
        layers.append(conv(f"conv{i}", b.kernel, ch, b.filters, b.stride, b.pad))
        layers.append({"name": f"relu{i}", "type": "relu", "leak": 0.0})
        ch, size = b.filters, (size + 2 * b.pad - b.kernel) // b.stride + 1
        if b.lrn and not b.lrn_after_pool:
            layers.append({"name": f"norm{i}", "type": "normalize", "param": np.array([LRN])})
        if b.pool:
            k, s = b.pool
            out = -(-(size - k) // s) + 1 if b.pool_ceil else (size - k) // s + 1
            extra = (out - 1) * s + k - size  # MatConvNet pads bottom/right to round up
            layers.append({"name": f"pool{i}", "type": "pool", "method": "max", "pool": np.array([[k, k]], float),
                           "stride": np.array([[s, s]], float), "pad": np.array([[0, extra, 0, extra]], float)})
            size = out
        if b.lrn and b.lrn_after_pool:
            layers.append({"name": f"norm{i}", "type": "normalize", "param": np.array([LRN])})
    layers.append(conv("fc6", size, ch, hidden, 1, 0))
    layers.append({"name": "relu6", "type": "relu"})
    layers.append(conv("fc7", 1, hidden, hidden, 1, 0))
    layers.append({"name": "relu7", "type": "relu"})
    layers.append(conv("fc8", 1, hidden, classes, 1, 0))
    layers.append({"name": "prob", "type": "softmax"})
    return layers


def cell(items):
    c = np.empty((1, len(items)), dtype=object)
    for i, x in enumerate(items):
        c[0, i] = x
    return c


def write_simplenn(path, layers, normalization):
    scipy.io.savemat(str(path), {"layers": cell(layers), "meta": {"normalization": normalization}}, do_compression=False)


def write_dagnn(path, layers, normalization):
    """The same network as a DagNN saved with net.saveobj(): layers and params as struct arrays."""
    fields = ["name", "type", "inputs", "outputs", "params", "block"]
    dl = np.zeros((1, len(layers)), dtype=[(f, object) for f in fields])
    params = []
    for i, L in enumerate(layers):
        t = {"conv": "dagnn.Conv", "relu": "dagnn.ReLU", "normalize": "dagnn.LRN", "pool": "dagnn.Pooling",
             "softmax": "dagnn.SoftMax"}[L["type"]]
        block, names = {}, []
        if L["type"] == "conv":
            f, b = L["weights"][0, 0], L["weights"][0, 1]
            names = [f"{L['name']}f", f"{L['name']}b"]
            params += [(names[0], f), (names[1], b)]
            block = {"size": np.array([f.shape], float), "hasBias": True, "pad": L["pad"], "stride": L["stride"]}
        elif L["type"] == "pool":
            block = {"poolSize": L["pool"], "pad": L["pad"], "stride": L["stride"], "method": L["method"]}
        elif L["type"] == "normalize":
            block = {"param": L["param"]}
        dl[0, i] = (L["name"], t, cell([f"x{i}"]), cell([f"x{i + 1}"]), cell(names), block)
    dp = np.zeros((1, len(params)), dtype=[("name", object), ("value", object), ("learningRate", object)])
    for i, (n, v) in enumerate(params):
        dp[0, i] = (n, v, 1.0)
    scipy.io.savemat(str(path), {"vars": cell([]), "layers": dl, "params": dp,
                                 "meta": {"normalization": normalization}})


def _h5_write(fh, group, name, value, refs):
    """MATLAB v7.3's layout: arrays transposed, char as uint16, cells as references into #refs#."""
    if isinstance(value, dict):
        g = group.create_group(name)
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        for k, v in value.items():
            _h5_write(fh, g, k, v, refs)
    elif isinstance(value, str):
        d = group.create_dataset(name, data=np.array([[ord(c) for c in value]], np.uint16).T)
        d.attrs["MATLAB_class"] = np.bytes_("char")
    elif isinstance(value, np.ndarray) and value.dtype == object:
        out = np.empty(value.T.shape, dtype=h5py.ref_dtype)
        for idx in np.ndindex(value.shape):
            key = f"r{len(refs.keys())}"
            _h5_write(fh, refs, key, value[idx], refs)
            out[idx[::-1]] = refs[key].ref
        d = group.create_dataset(name, data=out)
        d.attrs["MATLAB_class"] = np.bytes_("cell")
    else:
        arr = np.asarray(value)
        d = group.create_dataset(name, data=arr.T)
        d.attrs["MATLAB_class"] = np.bytes_("single" if arr.dtype == np.float32 else "double")


def write_simplenn_v73(path, layers, normalization):
    with h5py.File(path, "w") as fh:
        refs = fh.create_group("#refs#")
        _h5_write(fh, fh, "layers", cell(layers), refs)
        _h5_write(fh, fh, "meta", {"normalization": normalization}, refs)


# ----------------------------------------------------------------------------------- NumPy references
def np_conv(x, f, b, stride, pad):
    """MatConvNet's vl_nnconv on one H x W x C image: y(i, j, k) = b(k) + sum f(u, v, c, k) x(i*s+u, j*s+v, c)."""
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw, _, cout = f.shape
    oh, ow = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    y = np.tile(b.reshape(1, 1, -1), (oh, ow, 1)).astype(np.float64)
    for u in range(kh):
        for v in range(kw):
            patch = x[u:u + stride * (oh - 1) + 1:stride, v:v + stride * (ow - 1) + 1:stride]
            y += patch @ f[u, v].astype(np.float64)
    return y


def np_lrn(x, n, kappa, alpha, beta):
    """vl_nnnormalize: x / (kappa + alpha * sum over n neighbouring channels of x^2)^beta."""
    n = int(n)
    sq = np.pad(x * x, ((0, 0), (0, 0), (n // 2, (n - 1) // 2)))
    s = sum(sq[:, :, j:j + x.shape[2]] for j in range(n))
    return x / (kappa + alpha * s) ** beta


def np_pool(x, k, s, pad):
    """vl_nnpool max with MatConvNet's [top bottom left right] padding (ignored by the maximum)."""
    t, b, left, r = pad
    x = np.pad(x, ((t, b), (left, r), (0, 0)), constant_values=-np.inf)
    oh, ow = (x.shape[0] - k) // s + 1, (x.shape[1] - k) // s + 1
    return np.stack([np.stack([x[i * s:i * s + k, j * s:j * s + k].max(axis=(0, 1)) for j in range(ow)])
                     for i in range(oh)])


def _layer(layers, name):
    return next(L for L in layers if L["name"] == name)


def _params(layer):
    if "weights" in layer:
        return layer["weights"][0, 0], layer["weights"][0, 1]
    return layer["filters"], layer["biases"]


def _assert_weights_equal(sd, layers, names):
    for name in names:
        f, b = _params(_layer(layers, name))
        w = sd[f"{name}.weight"].numpy()
        want = f.transpose(3, 2, 0, 1)
        np.testing.assert_array_equal(w.reshape(want.shape), want, err_msg=name)
        np.testing.assert_array_equal(sd[f"{name}.bias"].numpy(), b.reshape(-1), err_msg=name)


def _modules_until(net, name):
    """The body's modules up to and including ``name``."""
    mods = []
    for n, m in net.body.named_children():
        mods.append(m)
        if n == name:
            return torch.nn.Sequential(*mods)
    raise KeyError(name)


# ---------------------------------------------------------------------------------------------- tests
def test_full_size_cnn_f_simplenn(tmp_path):
    """imagenet-vgg-f's structure at full size: weights equal after the transposition, conv1-pool1 and fc6 equal
    a NumPy forward of the MATLAB arrays, the release's mean image reaches preprocessing and feature files."""
    rng = np.random.default_rng(0)
    layers = mcn_layers(TABLE_I["cnn_f"], 224, 4096, 1000, rng)
    avg = rng.uniform(90, 140, (224, 224, 3)).astype(np.float32)
    src = tmp_path / "imagenet-vgg-f.mat"
    write_simplenn(src, layers, {"averageImage": avg, "imageSize": np.array([[224, 224, 3]], float),
                                 "interpolation": "bilinear", "border": np.array([[32, 32]], float)})
    dst = tmp_path / "weights" / "cnn_f.pth"
    rec = convert_weights(src, dst, "cnn_f")
    assert rec["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert rec["layers"] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    obj = torch.load(dst, map_location="cpu", weights_only=True)
    sd = obj["state_dict"]
    assert tuple(sd["fc6.weight"].shape) == (4096, 9216) and tuple(sd["conv1.weight"].shape) == (64, 3, 11, 11)
    _assert_weights_equal(sd, layers, rec["layers"])

    net = create_backbone("cnn_f", dst, key_map="matconvnet")
    x = rng.normal(0, 40, (224, 224, 3)).astype(np.float32)  # an input already normalised, H x W x C
    xt = torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
    with torch.inference_mode():
        got = _modules_until(net, "pool1")(xt)[0].numpy().transpose(1, 2, 0)
        pool5 = _modules_until(net, "pool5")(xt)
        fc6 = net.fc.fc6(torch.flatten(pool5, 1))[0].numpy()
    f1, b1 = _params(_layer(layers, "conv1"))
    ref = np_pool(np_lrn(np.maximum(np_conv(x, f1, b1, 4, 0), 0), *LRN), 3, 2, (0, 1, 0, 1))
    assert ref.shape == got.shape == (27, 27, 64)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    f6, b6 = _params(_layer(layers, "fc6"))  # 6 x 6 x 256 x 4096: sum over h, w, c of pool5(h, w, c) f(h, w, c, k)
    p5 = pool5[0].numpy().transpose(1, 2, 0).astype(np.float64)
    ref6 = np.einsum("hwc,hwck->k", p5, f6.astype(np.float64)) + b6.reshape(-1)
    np.testing.assert_allclose(fc6, ref6, rtol=1e-4, atol=1e-3 * np.abs(ref6).max())

    # the release's normalisation, not the hand-typed default: its mean image (and mean pixel) in preprocessing
    assert net.spec.mean == pytest.approx(tuple(avg.astype(np.float64).mean(axis=(0, 1)) / 255), rel=1e-6)
    images = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    want = (images.astype(np.float32) - avg).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(preprocess(net.spec, images).numpy(), want, atol=1e-4)
    np.testing.assert_array_equal(preprocess_numpy(net.spec, images).numpy(), preprocess(net.spec, images).numpy())
    assert rec["normalization"]["image_size"] == [224, 224, 3] and rec["normalization"]["border"] == [32.0, 32.0]


def _tiny(tmp_path, rng, fmt="simplenn", old=False, avg=(120.0, 110.0, 100.0), name="tiny.mat"):
    layers = mcn_layers(TINY_BLOCKS, 28, 5, 3, rng, old_format=old)
    norm = {"averageImage": np.array(avg, np.float32).reshape(1, 1, 3), "imageSize": np.array([[28.0, 28.0, 3.0]])}
    src = tmp_path / name
    {"simplenn": write_simplenn, "dagnn": write_dagnn, "v73": write_simplenn_v73}[fmt](src, layers, norm)
    return src, layers


@pytest.mark.parametrize(("fmt", "old"), [("simplenn", True), ("dagnn", False), ("v73", False)],
                         ids=["simplenn-filters-biases", "dagnn", "simplenn-v7.3"])
def test_small_formats_convert_and_match_a_numpy_forward(tmp_path, fmt, old):
    rng = np.random.default_rng(1)
    src, layers = _tiny(tmp_path, rng, fmt, old)
    rec = convert_weights(src, tmp_path / "tiny.pth", "tiny_mcn")
    assert rec["source_format"].startswith("MatConvNet " + ("dagnn" if fmt == "dagnn" else "simplenn"))
    assert ("v7.3" in rec["source_format"]) == (fmt == "v73")
    sd, meta = load_weights_file(tmp_path / "tiny.pth")
    _assert_weights_equal(sd, layers, ["conv1", "conv2", "fc6", "fc7", "fc8"])
    net = create_backbone("tiny_mcn", tmp_path / "tiny.pth")
    x = rng.normal(0, 1, (28, 28, 3)).astype(np.float32)
    ref = np_lrn(np.maximum(np_conv(x, *_params(_layer(layers, "conv1")), 1, 1), 0), *LRN)
    ref = np_pool(ref, 3, 2, tuple(int(v) for v in _layer(layers, "pool1")["pad"][0]))
    ref = np_pool(np.maximum(np_conv(ref, *_params(_layer(layers, "conv2")), 1, 0), 0), 2, 2, (0, 0, 0, 0))
    f6, b6 = _params(_layer(layers, "fc6"))
    ref = np.maximum(np.einsum("hwc,hwck->k", ref, f6) + b6.reshape(-1), 0)  # the feature: fc6 after its ReLU
    with torch.inference_mode():
        got = net.features(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    # a mean pixel release: the spec's mean is the file's, and there is no mean image
    assert net.spec.mean == pytest.approx((120 / 255, 110 / 255, 100 / 255))
    assert "average_image" not in net.spec.extra and meta["normalization"]["average_image"] == "mean pixel"


def test_safetensors_output_keeps_the_record_and_the_mean_image(tmp_path):
    rng = np.random.default_rng(2)
    layers = mcn_layers(TINY_BLOCKS, 28, 5, 3, rng)
    avg = rng.uniform(0, 255, (28, 28, 3)).astype(np.float32)
    write_simplenn(tmp_path / "t.mat", layers, {"averageImage": avg})
    convert_weights(tmp_path / "t.mat", tmp_path / "t.safetensors", "tiny_mcn")
    sd, meta = load_weights_file(tmp_path / "t.safetensors")
    assert set(sd) == set(conv_stack(TINY_BLOCKS, 28, 3, 5).state_dict())  # the native names, no extra tensor
    np.testing.assert_array_equal(meta["average_image"], avg)
    net = create_backbone("tiny_mcn", tmp_path / "t.safetensors")
    np.testing.assert_array_equal(net.spec.extra["average_image"], avg)


def test_feature_files_record_the_release(tmp_path):
    rng = np.random.default_rng(3)
    layers = mcn_layers(TINY_BLOCKS, 28, 5, 3, rng)
    avg = rng.uniform(80, 160, (28, 28, 3)).astype(np.float32)
    write_simplenn(tmp_path / "t.mat", layers, {"averageImage": avg})
    rec = convert_weights(tmp_path / "t.mat", tmp_path / "t.pth", "tiny_mcn")
    store = _store(tmp_path / "SN001.h5", n=6, invalid=(2,))
    out = tmp_path / "f.h5"
    extract_features(store, out, "tiny_mcn", "face", weights=str(tmp_path / "t.pth"), batch_size=4,
                     num_workers=0, device="cpu", progress=False)
    _, X, valid, attrs = read_features(out)
    assert attrs["weights_source"] == "t.mat" and attrs["weights_source_sha256"] == rec["source_sha256"]
    assert attrs["release_mean_image_sha256"] == hashlib.sha256(avg.tobytes()).hexdigest()
    assert attrs["mean_image"] == attrs["mean_image_sha256"] == ""  # no training-set mean image (the predictor's)
    from au_transfer.faces.store import FaceStore

    net = create_backbone("tiny_mcn", tmp_path / "t.pth")
    with FaceStore(store) as st:
        idx = np.flatnonzero(st.valid)
        crops = st.crops(idx, "face", 28)
    x = torch.from_numpy((crops.astype(np.float32) - avg).transpose(0, 3, 1, 2).copy())  # the release's mean image
    with torch.inference_mode():
        ref = net.features(x).numpy()
    np.testing.assert_allclose(X[valid], ref, rtol=2e-3, atol=2e-3)


def _mutate(layers, name, **changes):
    L = _layer(layers, name)
    L.update(changes)


@pytest.mark.parametrize(("change", "message"), [
    (lambda ls, rng: _mutate(ls, "conv2", weights=cell([rng.normal(size=(3, 3, 5, 6)).astype(np.float32),
                                                        np.zeros((1, 6), np.float32)])),
     r"layer 'conv2'.*\(3, 3, 5, 6\) take 5 input channels, the layer before gives 4"),
    (lambda ls, rng: _mutate(ls, "fc6", weights=cell([rng.normal(size=(5, 5, 6, 5)).astype(np.float32),
                                                      np.zeros((1, 5), np.float32)])),
     r"layer 'fc6'.*whole 6x6 input.*5x5"),
    (lambda ls, rng: _mutate(ls, "fc7", weights=cell([rng.normal(size=(1, 1, 5, 7)).astype(np.float32),
                                                      np.zeros((1, 7), np.float32)])),
     r"layer 'fc7'.*\(7, 5\), the network has \(5, 5\)"),
    (lambda ls, rng: _mutate(ls, "conv1", stride=np.array([[2.0, 2.0]])), r"layer 'conv1'.*stride \[2, 2\]"),
    (lambda ls, rng: _mutate(ls, "norm1", param=np.array([[5.0, 1.0, 2e-5, 0.75]])), r"layer 'norm1'.*LRN"),
    (lambda ls, rng: _mutate(ls, "pool1", pad=np.array([[0.0, 0.0, 0.0, 0.0]])),
     r"layer 'pool1'.*gives 13x13.*gives 14x14"),
    (lambda ls, rng: ls.pop(2), r"has 11 layers.*has 12"),
], ids=["conv2-cin", "fc6-support", "fc7-shape", "conv1-stride", "lrn-param", "pool-rounding", "missing-lrn"])
def test_a_file_that_does_not_fit_names_the_layer(tmp_path, change, message):
    rng = np.random.default_rng(4)
    layers = mcn_layers(TINY_BLOCKS, 28, 5, 3, rng)
    change(layers, rng)
    write_simplenn(tmp_path / "bad.mat", layers, {"averageImage": np.zeros((1, 1, 3), np.float32)})
    with pytest.raises(ConversionError, match=message):
        convert_weights(tmp_path / "bad.mat", tmp_path / "bad.pth", "tiny_mcn")
    assert not (tmp_path / "bad.pth").exists()


def test_a_release_of_another_network_and_a_wrong_image_size_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    layers = mcn_layers(TINY_BLOCKS, 28, 5, 3, rng)
    write_simplenn(tmp_path / "t.mat", layers, {"averageImage": np.zeros((1, 1, 3), np.float32),
                                                "imageSize": np.array([[32.0, 32.0, 3.0]])})
    with pytest.raises(ConversionError, match=r"32 x 32 inputs, backbone 'tiny_mcn' takes 28 x 28"):
        convert_weights(tmp_path / "t.mat", tmp_path / "t.pth", "tiny_mcn")
    assert not (tmp_path / "t.pth").exists()
    with pytest.raises(ConversionError, match=r"12 layers.*backbone 'cnn_f' has 20"):
        convert_weights(tmp_path / "t.mat", tmp_path / "t.pth", "cnn_f")
    (tmp_path / "x.mat").write_bytes(b"not a mat file")
    with pytest.raises(ConversionError, match=r"x\.mat: not a readable MATLAB"):
        convert_weights(tmp_path / "x.mat", tmp_path / "t.pth", "tiny_mcn")


def vgg_face_layers():
    """vgg-face.mat's chain (conv1_1 ... conv5_3 3x3 pad 1, 2x2 pools, fc6 7x7x512x4096, fc8 2622), shapes only."""
    zeros = functools.partial(np.broadcast_to, np.float32(0))
    layers, ch = [], 3
    for b, (n, width) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], 1):
        for i in range(1, n + 1):
            layers.append({"name": f"conv{b}_{i}", "type": "conv", "weights": cell([zeros((3, 3, ch, width)),
                                                                                     zeros((width, 1))]),
                           "stride": np.array([[1.0, 1.0]]), "pad": np.array([[1.0, 1.0, 1.0, 1.0]])})
            layers.append({"name": f"relu{b}_{i}", "type": "relu"})
            ch = width
        layers.append({"name": f"pool{b}", "type": "pool", "method": "max", "pool": np.array([[2.0, 2.0]]),
                       "stride": np.array([[2.0, 2.0]]), "pad": np.zeros((1, 4))})
    for name, k, cin, cout in (("fc6", 7, 512, 4096), ("fc7", 1, 4096, 4096), ("fc8", 1, 4096, 2622)):
        layers.append({"name": name, "type": "conv", "weights": cell([zeros((k, k, cin, cout)), zeros((cout, 1))]),
                       "stride": np.array([[1.0, 1.0]]), "pad": np.zeros((1, 4))})
        if name != "fc8":
            layers.append({"name": f"relu{name[2:]}", "type": "relu"})
    layers.append({"name": "prob", "type": "softmax"})
    return layers


@pytest.mark.parametrize("backbone", ["cnn_m", "cnn_s", "zfnet", "vgg_face"])
def test_the_release_structures_fit_their_networks(backbone):
    """The chains of imagenet-vgg-m/-s.mat, a ZFNet of Section II-B and vgg-face.mat (shapes only, no memory) pass
    the layer-by-layer comparison with the registered networks, in the order of their parameters."""
    from au_transfer.backbones.classic import ZFNET
    from au_transfer.backbones.convert import _compare, native_factory
    from au_transfer.backbones.matconvnet import MatNet, _simplenn_layers

    raw = vgg_face_layers() if backbone == "vgg_face" else mcn_layers(
        ZFNET if backbone == "zfnet" else TABLE_I[backbone], 224, 4096, 1000, None, shapes_only=True)
    raw = [{**L, "weights": list(L["weights"][0])} if "weights" in L else L for L in raw]  # cells as scipy.io's
    net = MatNet("release.mat", "simplenn", "v5", _simplenn_layers(raw, "release.mat"), {}, "0" * 64)
    with torch.device("meta"):
        native = native_factory(backbone)()
    pairs = _compare(net, native, backbone, 224)
    want = [n for n, m in native.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [mname for _, mname, _ in pairs] == want
    assert [L.name for L, _, _ in pairs][-3:] == ["fc6", "fc7", "fc8"]


def test_the_command_line_converts_and_names_a_bad_layer(tmp_path, capsys):
    from au_transfer.cli import main

    rng = np.random.default_rng(6)
    layers = mcn_layers(TINY_BLOCKS, 28, 5, 3, rng)
    write_simplenn(tmp_path / "t.mat", layers, {"averageImage": np.full((1, 1, 3), 100.0)})
    assert main(["convert-weights", str(tmp_path / "t.mat"), str(tmp_path / "t.pth"), "--backbone", "tiny_mcn"]) == 0
    out = capsys.readouterr().out
    assert "5 layers (conv1, conv2, fc6, fc7, fc8)" in out and "mean pixel" in out
    _mutate(layers, "fc8", weights=cell([np.zeros((1, 1, 5, 4), np.float32), np.zeros((1, 4), np.float32)]))
    write_simplenn(tmp_path / "b.mat", layers, {})
    assert main(["convert-weights", str(tmp_path / "b.mat"), str(tmp_path / "b.pth"), "--backbone", "tiny_mcn"]) == 1
    err = capsys.readouterr().err
    assert "au-transfer convert-weights: error:" in err and "layer 'fc8'" in err and "(4, 5)" in err
