"""Face foundation ViTs: FMAE (MAE pretrained on 9 M faces) and FaRL (image-text pretraining on LAION-Face).

Built with timm; their released checkpoints load through key maps written from the releases' own key names:

* ``fmae_vit_s`` / ``fmae_vit_b`` / ``fmae_vit_l``: the FMAE / FMAE-IAT release (github.com/forever208/FMAE-IAT,
  branch ``mae_pretraining``): an MAE checkpoint ``{"model": state_dict, ...}`` whose encoder keys are already
  timm's ViT names (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,
  mlp.fc1,mlp.fc2}``, ``norm``) beside the MAE decoder (``decoder_*``, ``mask_token``). The feature is the one
  FMAE fine-tunes on AUs (its ``models_vit.py`` with ``global_pool=True``, the default of its AU scripts): the mean
  of the patch tokens after the last block (class token left out), through ``fc_norm``, a LayerNorm that FMAE
  creates fresh for fine-tuning (weight 1, bias 0) in place of the encoder's ``norm``, which it discards. A
  fine-tuned FMAE-IAT checkpoint holds its trained ``fc_norm`` (and AU / identity heads, dropped here).
* ``farl_vit_b16``: FaRL-Base-Patch16 (github.com/FacePerceiver/FaRL), ``{"state_dict": ...}`` of a whole CLIP
  ViT-B/16 (image tower ``visual.*``, text tower, and FaRL's masked-image-modelling head ``visual.lm_*``). The
  image tower is renamed to timm's CLIP ViT (QuickGELU, pre-norm); the feature is the class token after
  ``ln_post`` (768-d, what CLIP's ``encode_image`` projects), the 512-d projection ``visual.proj`` is the tail.

Preprocessing is the releases': 224 x 224, ImageNet mean / std for FMAE, CLIP's for FaRL. Neither is on a hub
that timm reads: ``weights: pretrained`` fails with where to download the file; ``weights: random`` only when
written. A file saved with timm's own key names (or a whole Backbone's ``body.`` / ``tail.`` keys) loads as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone, BackboneSpec, register_backbone
from .classic import KEY_MAPS, wrap_timm
from .weights import (
    DOCS,
    KeyMap,
    WeightsError,
    apply_key_map,
)

#: CLIP's normalisation, which FaRL's image encoder uses (FaRLVisualFeatures' image_mean / image_std).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

FMAE_URL = "https://github.com/forever208/FMAE-IAT (branch mae_pretraining, README: 'Face9M pre-trained checkpoints')"
FARL_URL = "https://github.com/FacePerceiver/FaRL/releases/download/pretrained_weights/"

_SD = dict[str, torch.Tensor]


# ------------------------------------------------------------------------------------------------- key maps
#: Keys of an FMAE checkpoint the encoder does not use: the MAE decoder, and the heads of a fine-tuned one.
_FMAE_DROP = ("decoder_", "mask_token", "head.", "ID_head.")


def fmae_key_map(sd: _SD) -> _SD:
    """FMAE (MAE / FMAE-IAT) checkpoint -> timm ViT with ``global_pool='avg'`` and ``fc_norm``.

    Encoder keys keep their names (they are timm's). Decoder and heads are dropped. Without ``fc_norm.*`` (a
    pretraining checkpoint) the encoder's ``norm.*`` is dropped and ``fc_norm`` starts as FMAE's fine-tuning does,
    a LayerNorm with weight 1 and bias 0; a fine-tuned checkpoint's own ``fc_norm`` is kept.
    """
    out = {k: v for k, v in sd.items() if not k.startswith(_FMAE_DROP)}
    if "fc_norm.weight" not in out and "norm.weight" in out:
        ref = out.pop("norm.weight")
        out.pop("norm.bias", None)
        out["fc_norm.weight"] = torch.ones_like(ref)
        out["fc_norm.bias"] = torch.zeros_like(ref)
    return out


#: FaRL's (= OpenAI CLIP's) image-tower names -> timm's CLIP ViT names (after the ``visual.`` prefix is removed).
_FARL_RULES = {
    r"^conv1\.weight$": "patch_embed.proj.weight",
    r"^ln_pre\.": "norm_pre.",
    r"^ln_post\.": "norm.",
    r"^transformer\.resblocks\.(\d+)\.ln_1\.": r"blocks.\1.norm1.",
    r"^transformer\.resblocks\.(\d+)\.ln_2\.": r"blocks.\1.norm2.",
    r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$": r"blocks.\1.attn.qkv.\2",
    r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.": r"blocks.\1.attn.proj.",
    r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.": r"blocks.\1.mlp.fc1.",
    r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.": r"blocks.\1.mlp.fc2.",
}
#: FaRL's masked-image-modelling head inside ``visual.`` (not part of the encoder).
_FARL_DROP = ("lm_transformer.", "ln_lm.", "lm_head.", "mask_token")


def farl_key_map(sd: _SD) -> _SD:
    """FaRL / CLIP checkpoint (``visual.*`` image tower) -> timm's CLIP ViT (``vit_*_clip_quickgelu_*``).

    Only the image tower is kept (text tower, ``logit_scale`` and the MIM head are dropped). ``class_embedding``
    (D,) becomes ``cls_token`` (1, 1, D), ``positional_embedding`` (1 + N, D) ``pos_embed`` (1, 1 + N, D), and the
    projection ``proj`` (D, 512), applied as ``x @ proj``, the tail's ``head.weight`` (512, D) with a zero bias.
    A state dict without ``visual.`` keys is returned as it is (already timm's names).
    """
    if not any(k.startswith("visual.") for k in sd):
        return sd
    vis = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    vis = {k: v for k, v in vis.items() if not k.startswith(_FARL_DROP)}
    out: _SD = {}
    special = {"class_embedding", "positional_embedding", "proj"}
    out.update(apply_key_map({k: v for k, v in vis.items() if k not in special}, _FARL_RULES))
    if "class_embedding" in vis:
        out["cls_token"] = vis["class_embedding"].reshape(1, 1, -1)
    if "positional_embedding" in vis:
        out["pos_embed"] = vis["positional_embedding"].unsqueeze(0)
    if "proj" in vis:
        proj = vis["proj"]
        out["head.weight"] = proj.t().contiguous()
        out["head.bias"] = torch.zeros(proj.shape[1], dtype=proj.dtype, device=proj.device)
    return out


KEY_MAPS.setdefault("fmae", fmae_key_map)
KEY_MAPS.setdefault("farl", farl_key_map)


# ------------------------------------------------------------------------------------------------- releases
@dataclass(frozen=True)
class ViTRelease:
    """A released face ViT: the timm model it is built as, its feature, its preprocessing and where it comes from."""

    name: str
    timm_name: str
    timm_kwargs: dict[str, Any]
    feature_dim: int
    layer: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    key_map: str                     # name in KEY_MAPS
    download: str                    # where to get the checkpoint (the error message and docs say it)
    input_size: int = 224
    head_dim: int = 0                # the tail's output width (FaRL's 512-d projection); 0 = no tail
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> BackboneSpec:
        return BackboneSpec(self.name, "vit", self.layer, self.feature_dim, self.input_size, self.mean, self.std,
                            pretrained="none", key_maps=(self.key_map,), notes=self.notes,
                            extra={"timm_name": self.timm_name, "download": self.download, **self.extra})

    def make(self) -> nn.Module:
        import timm

        return timm.create_model(self.timm_name, pretrained=False, num_classes=self.head_dim, **self.timm_kwargs)


_FMAE_LAYER = "mean of the patch tokens after the last block, then fc_norm (FMAE's global_pool)"
_FMAE_KW = {"global_pool": "avg", "fc_norm": True}
_FMAE_NOTES = ("FMAE (MAE on Face9M); a pretraining checkpoint's fc_norm is FMAE's fresh one (weight 1, bias 0); "
               "feature = FMAE's AU fine-tuning input")
_FARL_FILES = "FaRL-Base-Patch16-LAIONFace20M-ep16.pth (the paper's) or -ep64.pth"

RELEASES: dict[str, ViTRelease] = {r.name: r for r in (
    ViTRelease("fmae_vit_s", "vit_small_patch16_224", _FMAE_KW, 384, _FMAE_LAYER, IMAGENET_MEAN, IMAGENET_STD,
               "fmae", f"the FMAE ViT-small checkpoint from {FMAE_URL}", notes=_FMAE_NOTES),
    ViTRelease("fmae_vit_b", "vit_base_patch16_224", _FMAE_KW, 768, _FMAE_LAYER, IMAGENET_MEAN, IMAGENET_STD,
               "fmae", f"the FMAE ViT-base checkpoint from {FMAE_URL}", notes=_FMAE_NOTES),
    ViTRelease("fmae_vit_l", "vit_large_patch16_224", _FMAE_KW, 1024, _FMAE_LAYER, IMAGENET_MEAN, IMAGENET_STD,
               "fmae", f"the FMAE ViT-large checkpoint (or an FMAE-IAT fine-tuned one) from {FMAE_URL}",
               notes=_FMAE_NOTES),
    ViTRelease("farl_vit_b16", "vit_base_patch16_clip_quickgelu_224", {}, 768,
               "class token after ln_post (before the 512-d projection)", CLIP_MEAN, CLIP_STD, "farl",
               f"{_FARL_FILES} from {FARL_URL}", head_dim=512,
               notes="FaRL image encoder (CLIP ViT-B/16, QuickGELU); tail = visual.proj (CLIP image embedding)"),
)}


def release_builder(rel: ViTRelease) -> Callable[..., Backbone]:
    """The builder of a released face ViT: a local checkpoint (release or timm key names), or explicit random."""
    spec = rel.spec()

    def build(weights: str, *, key_map: KeyMap | str | None = None, seed: int = 0) -> Backbone:
        if weights == "pretrained":
            raise WeightsError(
                f"no hub weights for backbone {rel.name!r}: download {rel.download} and set "
                f"backbones.{rel.name}.weights: /path/to/that/file.pth (the release's file as it is; see {DOCS}), "
                f"or backbones.{rel.name}.weights: random for a random-feature baseline"
            )
        return wrap_timm(rel.make(), spec, weights, name=rel.name, key_map=key_map,
                         default_key_map=KEY_MAPS[rel.key_map], seed=seed, keep_head=bool(rel.head_dim))

    return build


def register_release(rel: ViTRelease, *, overwrite: bool = False) -> None:
    """Register a released face ViT as a backbone (tests register small variants of the same releases)."""
    register_backbone(rel.name, rel.spec(), release_builder(rel), overwrite=overwrite)


for _rel in RELEASES.values():
    register_release(_rel)
