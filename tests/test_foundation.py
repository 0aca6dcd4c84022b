"""Face foundation ViTs (FMAE, FaRL): release key maps on checkpoints shaped like the releases, their features
against a reference forward pass written from the releases' model definitions, missing weights, the timm specs of
DINOv2 / CLIP, and one of them (random weights, said in the config) through the feature stage."""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from au_transfer.backbones import WeightsError, create_backbone, get_spec, list_backbones, preprocess
from au_transfer.backbones.foundation import (
    CLIP_MEAN,
    CLIP_STD,
    RELEASES,
    farl_key_map,
    fmae_key_map,
    register_release,
)
from au_transfer.config import validate_config
from au_transfer.faces.store import FaceStore, FaceStoreWriter
from au_transfer.features import extract_features, read_features

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ checkpoints with the releases' names and shapes
def _vit_keys(prefix: str, dim: int, depth: int, names: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """One transformer stack's keys and shapes, with the release's per-block names (``names[kind]``)."""
    out: dict[str, tuple[int, ...]] = {}
    for i in range(depth):
        p = f"{prefix}{i}."
        out.update({p + names["n1"] + ".weight": (dim,), p + names["n1"] + ".bias": (dim,),
                    p + names["qkv_w"]: (3 * dim, dim), p + names["qkv_b"]: (3 * dim,),
                    p + names["proj"] + ".weight": (dim, dim), p + names["proj"] + ".bias": (dim,),
                    p + names["n2"] + ".weight": (dim,), p + names["n2"] + ".bias": (dim,),
                    p + names["fc1"] + ".weight": (4 * dim, dim), p + names["fc1"] + ".bias": (4 * dim,),
                    p + names["fc2"] + ".weight": (dim, 4 * dim), p + names["fc2"] + ".bias": (dim,)})
    return out


TIMM_BLOCK = {"n1": "norm1", "qkv_w": "attn.qkv.weight", "qkv_b": "attn.qkv.bias", "proj": "attn.proj",
              "n2": "norm2", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}          # timm 0.3.2's Block (FMAE's models_mae)
CLIP_BLOCK = {"n1": "ln_1", "qkv_w": "attn.in_proj_weight", "qkv_b": "attn.in_proj_bias", "proj": "attn.out_proj",
              "n2": "ln_2", "fc1": "mlp.c_fc", "fc2": "mlp.c_proj"}       # CLIP's ResidualAttentionBlock (FaRL)


def fmae_pretrain_shapes(dim: int, depth: int, img: int = 224, patch: int = 16, dec: int = 512,
                         dec_depth: int = 8) -> dict[str, tuple[int, ...]]:
    """FMAE's MaskedAutoencoderViT state dict (models_mae.py, branch mae_pretraining): encoder, then decoder."""
    n = (img // patch) ** 2
    out = {"cls_token": (1, 1, dim), "pos_embed": (1, n + 1, dim), "patch_embed.proj.weight": (dim, 3, patch, patch),
           "patch_embed.proj.bias": (dim,)}
    out.update(_vit_keys("blocks.", dim, depth, TIMM_BLOCK))
    out.update({"norm.weight": (dim,), "norm.bias": (dim,), "decoder_embed.weight": (dec, dim),
                "decoder_embed.bias": (dec,), "mask_token": (1, 1, dec), "decoder_pos_embed": (1, n + 1, dec)})
    out.update(_vit_keys("decoder_blocks.", dec, dec_depth, TIMM_BLOCK))
    out.update({"decoder_norm.weight": (dec,), "decoder_norm.bias": (dec,),
                "decoder_pred.weight": (patch * patch * 3, dec), "decoder_pred.bias": (patch * patch * 3,)})
    return out


def fmae_finetuned_shapes(dim: int, depth: int, n_aus: int = 12, n_ids: int = 41, **kw) -> dict[str, tuple]:
    """An FMAE-IAT fine-tuned state dict (models_vit.py with global_pool: norm deleted, fc_norm, AU and ID heads)."""
    out = {k: v for k, v in fmae_pretrain_shapes(dim, depth, **kw).items()
           if not k.startswith(("decoder_", "mask_token", "norm."))}
    out.update({"fc_norm.weight": (dim,), "fc_norm.bias": (dim,), "head.weight": (n_aus, dim), "head.bias": (n_aus,),
                "ID_head.weight": (n_ids, dim), "ID_head.bias": (n_ids,)})
    return out


def farl_shapes(dim: int, depth: int, img: int = 224, patch: int = 16, out_dim: int = 512, text: int = 512,
                text_depth: int = 12, mim_depth: int = 1, vocab: int = 8192) -> dict[str, tuple[int, ...]]:
    """FaRL's checkpoint['state_dict']: CLIP's image tower (visual.*) with FaRL's MIM head, and the text tower."""
    n = (img // patch) ** 2
    out = {"visual.class_embedding": (dim,), "visual.positional_embedding": (n + 1, dim),
           "visual.proj": (dim, out_dim), "visual.conv1.weight": (dim, 3, patch, patch),
           "visual.ln_pre.weight": (dim,), "visual.ln_pre.bias": (dim,)}
    out.update(_vit_keys("visual.transformer.resblocks.", dim, depth, CLIP_BLOCK))
    out.update({"visual.ln_post.weight": (dim,), "visual.ln_post.bias": (dim,), "visual.mask_token": (dim,)})
    out.update(_vit_keys("visual.lm_transformer.resblocks.", dim, mim_depth, CLIP_BLOCK))
    out.update({"visual.ln_lm.weight": (dim,), "visual.ln_lm.bias": (dim,), "visual.lm_head.weight": (vocab, dim),
                "visual.lm_head.bias": (vocab,)})
    out.update({"positional_embedding": (77, text), "text_projection": (text, out_dim), "logit_scale": (),
                "token_embedding.weight": (49408, text), "ln_final.weight": (text,), "ln_final.bias": (text,)})
    out.update(_vit_keys("transformer.resblocks.", text, text_depth, CLIP_BLOCK))
    return out


def _meta(shapes):
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def _timm_meta_shapes(name):
    with torch.device("meta"):
        model = RELEASES[name].make()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("name", "shapes"), [
    ("fmae_vit_s", fmae_pretrain_shapes(384, 12)), ("fmae_vit_b", fmae_pretrain_shapes(768, 12)),
    ("fmae_vit_l", fmae_pretrain_shapes(1024, 24)), ("fmae_vit_l", fmae_finetuned_shapes(1024, 24)),
    ("farl_vit_b16", farl_shapes(768, 12)),
], ids=["fmae_s", "fmae_b", "fmae_l", "fmae_iat_l_finetuned", "farl_b16"])
def test_full_size_release_keys_map_onto_the_timm_model(name, shapes):
    # full-size release key names and shapes, on the meta device (no memory): the mapped names and shapes are
    # exactly the timm model's
    km = fmae_key_map if name.startswith("fmae") else farl_key_map
    mapped = {k: tuple(v.shape) for k, v in km(_meta(shapes)).items()}
    assert mapped == _timm_meta_shapes(name)


def test_the_wrong_size_names_the_mismatched_keys(tmp_path):
    torch.save({"model": {k: torch.zeros(s) for k, s in fmae_pretrain_shapes(64, 2, img=32).items()}},
               tmp_path / "tiny.pth")
    with pytest.raises(WeightsError, match=r"do not fit backbone 'fmae_vit_s'.*(missing keys: blocks\.2|shape)"):
        create_backbone("fmae_vit_s", tmp_path / "tiny.pth")


# ------------------------------------------------------------------ tiny variants: values and a reference forward
D, DEPTH, HEADS, IMG, OUT = 32, 2, 2, 32, 16
TINY = {"img_size": IMG, "embed_dim": D, "depth": DEPTH, "num_heads": HEADS}
FMAE_TINY = replace(RELEASES["fmae_vit_b"], name="fmae_tiny_test", feature_dim=D, input_size=IMG,
                    timm_kwargs={**RELEASES["fmae_vit_b"].timm_kwargs, **TINY})
FARL_TINY = replace(RELEASES["farl_vit_b16"], name="farl_tiny_test", feature_dim=D, input_size=IMG, head_dim=OUT,
                    timm_kwargs=TINY)
register_release(FMAE_TINY, overwrite=True)
register_release(FARL_TINY, overwrite=True)


def _random_sd(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * (0.3 if len(s) > 1 else 1.0) for k, s in shapes.items()}


def _blocks(tok, sd, prefix, names, depth, heads, eps, act):
    """Pre-norm transformer blocks computed from the release's tensors (attention as in timm 0.3.2's Attention)."""
    b, n, d = tok.shape
    hd = d // heads
    for i in range(depth):
        p = f"{prefix}{i}."
        h = F.layer_norm(tok, (d,), sd[p + names["n1"] + ".weight"], sd[p + names["n1"] + ".bias"], eps)
        qkv = F.linear(h, sd[p + names["qkv_w"]], sd[p + names["qkv_b"]]).reshape(b, n, 3, heads, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1) @ v
        tok = tok + F.linear(att.transpose(1, 2).reshape(b, n, d), sd[p + names["proj"] + ".weight"],
                             sd[p + names["proj"] + ".bias"])
        h = F.layer_norm(tok, (d,), sd[p + names["n2"] + ".weight"], sd[p + names["n2"] + ".bias"], eps)
        h = F.linear(act(F.linear(h, sd[p + names["fc1"] + ".weight"], sd[p + names["fc1"] + ".bias"])),
                     sd[p + names["fc2"] + ".weight"], sd[p + names["fc2"] + ".bias"])
        tok = tok + h
    return tok


def fmae_reference(sd, x, fc_norm=None):
    """FMAE's models_vit forward_features with global_pool: patches + cls + pos, blocks, mean of the patch tokens,
    fc_norm (eps 1e-6; a fresh one when the checkpoint has none)."""
    tok = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16).flatten(2).transpose(1, 2)
    tok = torch.cat([sd["cls_token"].expand(len(x), -1, -1), tok], 1) + sd["pos_embed"]
    tok = _blocks(tok, sd, "blocks.", TIMM_BLOCK, DEPTH, HEADS, 1e-6, F.gelu)
    w, b = fc_norm if fc_norm is not None else (None, None)
    return F.layer_norm(tok[:, 1:].mean(1), (tok.shape[-1],), w, b, 1e-6)


def farl_reference(sd, x):
    """FaRL's VisualTransformer.forward (pool_type default): conv1 (no bias), class embedding, positional
    embedding, ln_pre, CLIP blocks (nn.MultiheadAttention, QuickGELU), class token, ln_post; then @ proj."""
    v = {k[len("visual."):]: t for k, t in sd.items() if k.startswith("visual.")}
    tok = F.conv2d(x, v["conv1.weight"], stride=16).flatten(2).transpose(1, 2)
    tok = torch.cat([v["class_embedding"].expand(len(x), 1, -1), tok], 1) + v["positional_embedding"]
    tok = F.layer_norm(tok, (D,), v["ln_pre.weight"], v["ln_pre.bias"], 1e-5).transpose(0, 1)  # LND
    for i in range(DEPTH):
        p = f"transformer.resblocks.{i}."
        mha = nn.MultiheadAttention(D, HEADS)
        mha.load_state_dict({"in_proj_weight": v[p + "attn.in_proj_weight"], "in_proj_bias": v[p + "attn.in_proj_bias"],
                             "out_proj.weight": v[p + "attn.out_proj.weight"],
                             "out_proj.bias": v[p + "attn.out_proj.bias"]})
        h = F.layer_norm(tok, (D,), v[p + "ln_1.weight"], v[p + "ln_1.bias"], 1e-5)
        tok = tok + mha(h, h, h, need_weights=False)[0]
        h = F.layer_norm(tok, (D,), v[p + "ln_2.weight"], v[p + "ln_2.bias"], 1e-5)
        h = F.linear(h, v[p + "mlp.c_fc.weight"], v[p + "mlp.c_fc.bias"])
        tok = tok + F.linear(h * torch.sigmoid(1.702 * h), v[p + "mlp.c_proj.weight"], v[p + "mlp.c_proj.bias"])
    feat = F.layer_norm(tok[0], (D,), v["ln_post.weight"], v["ln_post.bias"], 1e-5)
    return feat, feat @ v["proj"]


def _images(n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, IMG, IMG, 3), dtype=np.uint8)


def test_fmae_pretraining_checkpoint_loads_with_its_training_state(tmp_path):
    sd = _random_sd(fmae_pretrain_shapes(D, DEPTH, img=IMG), seed=1)
    args = argparse.Namespace(model="mae_vit_base_patch16", input_size=224, norm_pix_loss=True, mask_ratio=0.75)
    path = tmp_path / "fmae_pretrain.pth"
    # as FMAE's misc.save_model writes it: model, optimizer, epoch, scaler and the run's argparse.Namespace
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
                "epoch": 49, "scaler": {"scale": 65536.0}, "args": args}, path)
    net = create_backbone("fmae_tiny_test", path)
    got = net.body.model.state_dict()
    assert set(got) == set(fmae_key_map(sd))
    for k, v in got.items():
        want = sd[k] if k in sd else (torch.ones(D) if k == "fc_norm.weight" else torch.zeros(D))
        torch.testing.assert_close(v, want, rtol=0, atol=0, msg=k)
    assert net.spec.feature_dim == D and net.spec.mean == RELEASES["fmae_vit_b"].mean
    x = preprocess(net.spec, _images())
    with torch.inference_mode():
        torch.testing.assert_close(net.features(x), fmae_reference(sd, x), rtol=1e-4, atol=1e-5)
    assert len(net.tail) == 0 and net.weights == str(path) and len(net.weights_sha256) == 64


def test_fmae_iat_finetuned_checkpoint_keeps_its_fc_norm(tmp_path):
    sd = _random_sd(fmae_finetuned_shapes(D, DEPTH, img=IMG), seed=2)
    torch.save({"model": sd}, tmp_path / "fmae_iat.pth")
    net = create_backbone("fmae_tiny_test", tmp_path / "fmae_iat.pth")
    torch.testing.assert_close(net.body.model.fc_norm.weight.detach(), sd["fc_norm.weight"], rtol=0, atol=0)
    x = preprocess(net.spec, _images())
    with torch.inference_mode():
        ref = fmae_reference(sd, x, (sd["fc_norm.weight"], sd["fc_norm.bias"]))
        torch.testing.assert_close(net.features(x), ref, rtol=1e-4, atol=1e-5)


def test_farl_checkpoint_maps_its_visual_tower_and_matches_farls_forward(tmp_path):
    sd = _random_sd(farl_shapes(D, DEPTH, img=IMG, out_dim=OUT, text=16, text_depth=1, vocab=10), seed=3)
    torch.save({"state_dict": sd}, tmp_path / "FaRL-tiny.pth")
    net = create_backbone("farl_tiny_test", tmp_path / "FaRL-tiny.pth")
    got = net.body.model.state_dict()
    torch.testing.assert_close(got["cls_token"].reshape(-1), sd["visual.class_embedding"], rtol=0, atol=0)
    torch.testing.assert_close(got["blocks.1.attn.qkv.weight"], sd["visual.transformer.resblocks.1.attn.in_proj_weight"],
                               rtol=0, atol=0)
    torch.testing.assert_close(net.tail.head.weight.detach(), sd["visual.proj"].t(), rtol=0, atol=0)
    assert not net.tail.head.bias.any()
    assert net.spec.mean == CLIP_MEAN and net.spec.std == CLIP_STD
    x = preprocess(net.spec, _images())
    feat, emb = farl_reference(sd, x)
    with torch.inference_mode():
        torch.testing.assert_close(net.features(x), feat, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(net(x), emb, rtol=1e-4, atol=1e-5)


def test_a_state_dict_in_timm_names_and_a_backbone_state_dict_load_as_they_are(tmp_path):
    src = create_backbone("farl_tiny_test", "random", seed=4)
    torch.save(src.state_dict(), tmp_path / "backbone.pth")
    torch.save(farl_key_map(_random_sd(farl_shapes(D, DEPTH, img=IMG, out_dim=OUT, text=16, text_depth=1,
                                                   vocab=10), 5)), tmp_path / "timm_names.pth")
    a = create_backbone("farl_tiny_test", tmp_path / "backbone.pth")
    for k, v in src.state_dict().items():
        torch.testing.assert_close(a.state_dict()[k], v, rtol=0, atol=0)
    create_backbone("farl_tiny_test", tmp_path / "timm_names.pth")  # farl_key_map passes timm names through


def test_missing_weights_say_where_to_get_the_checkpoint(tmp_path):
    assert {"fmae_vit_s", "fmae_vit_b", "fmae_vit_l", "farl_vit_b16"} <= set(list_backbones())
    with pytest.raises(WeightsError, match=r"no hub weights for backbone 'fmae_vit_l'.*FMAE-IAT.*weights: random"):
        create_backbone("fmae_vit_l")
    with pytest.raises(WeightsError, match=r"FaRL-Base-Patch16-LAIONFace20M-ep16\.pth.*FacePerceiver/FaRL"):
        create_backbone("farl_vit_b16", "pretrained")
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("fmae_vit_b", tmp_path / "nowhere.pth")
    assert get_spec("fmae_vit_b").pretrained == "none" and "FMAE-IAT" in get_spec("fmae_vit_b").extra["download"]


class Payload:
    """Any object but the Namespace of a training run: the weights-only reader must refuse it."""


def test_a_checkpoint_holding_other_objects_is_still_refused(tmp_path):
    torch.save({"model": {"a": torch.zeros(1)}, "obj": Payload()}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        create_backbone("fmae_tiny_test", tmp_path / "bad.pth")


# ------------------------------------------------------------------ DINOv2 / CLIP through timm names
@pytest.mark.parametrize(("name", "size", "mean", "dim"), [
    ("vit_small_patch14_dinov2.lvd142m", 518, (0.485, 0.456, 0.406), 384),
    ("vit_base_patch16_clip_quickgelu_224.openai", 224, CLIP_MEAN, 768),
])
def test_timm_vits_take_input_size_normalisation_and_feature_from_pretrained_cfg(name, size, mean, dim):
    import timm

    spec = get_spec(name)
    with torch.device("meta"):
        cfg = timm.create_model(name, pretrained=False).pretrained_cfg
    assert spec.input_size == cfg["input_size"][-1] == size
    assert spec.mean == pytest.approx(cfg["mean"]) and spec.mean == pytest.approx(mean)
    assert spec.std == pytest.approx(cfg["std"])
    assert spec.feature_dim == dim and spec.layer == "pre-logits: class token after the final norm"
    assert spec.extra["hf_hub_id"] == cfg["hf_hub_id"]


def test_timm_vit_feature_is_the_normed_class_token():
    net = create_backbone("vit_tiny_patch16_224", "random", seed=0)
    x = torch.randn(2, 3, 224, 224)
    m = net.body.model
    with torch.inference_mode():
        assert torch.equal(net.features(x), m.forward_features(x)[:, 0])


# ------------------------------------------------------------------ the feature stage with weights: random
def test_fmae_with_random_weights_said_in_the_config_runs_the_feature_stage(tmp_path):
    cfg = yaml.safe_load((ROOT / "tests" / "config_test.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["backbones"] = {"fmae_vit_s": {"weights": "random", "seed": 2}}
    cfg["features"]["backbones"] = ["fmae_vit_s"]
    opts = validate_config(cfg)["backbones"]["fmae_vit_s"]
    assert opts["weights"] == "random"
    n, size = 4, 48
    rng = np.random.default_rng(0)
    boxes = np.array([[0, 0, size, size / 2], [4, size / 4, size - 4, 3 * size / 4], [0, size / 2, size, size]],
                     np.float32)
    store = tmp_path / "SN001.h5"
    with FaceStoreWriter(store, n, size, subject="SN001", compression="lzf", encoding="raw") as w:
        for i in range(n):
            ok = i != 1
            w.put(i, 10 + i, rng.integers(0, 256, (size, size, 3), dtype=np.uint8) if ok else None, None,
                  boxes if ok else None, None, ok, 0 if ok else 1)
    out = tmp_path / "fmae_vit_s" / "face" / "SN001.h5"
    out.parent.mkdir(parents=True)
    # as the features rule calls it, with the config's backbones.fmae_vit_s options
    extract_features(store, out, "fmae_vit_s", "face", weights=opts["weights"], key_map=opts["key_map"],
                     seed=opts["seed"], batch_size=2, num_workers=0, device="cpu", progress=False)
    frames, X, valid, attrs = read_features(out)
    assert X.shape == (n, 384) and list(valid) == [True, False, True, True] and np.isnan(X[1]).all()
    assert attrs["weights"] == "random" and attrs["weights_sha256"] == "random:seed=2"
    assert attrs["layer"] == RELEASES["fmae_vit_s"].layer and attrs["input_size"] == 224
    net = create_backbone("fmae_vit_s", "random", seed=2)
    with FaceStore(store) as st:
        crops = st.crops(np.array([0, 2, 3]), "face", 224)
    with torch.inference_mode():
        ref = net.features(preprocess(net.spec, crops)).numpy()
    np.testing.assert_allclose(X[[0, 2, 3]], ref, rtol=2e-3, atol=2e-3)
