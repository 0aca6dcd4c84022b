"""The fine-tuned network and its surgery.

:class:`FinetuneNet`: a registry backbone whose classifier is replaced by ``n_aus`` softmax pairs (optionally with a
:class:`Standardize` before it); :func:`reinit_layers` re-initialises its fully connected layers (seeded),
:func:`freeze_layers` freezes body stages. Also the backbone adapters fine-tuning uses by default (registry
construction, preprocessing) and the CPU copy of a state dict (checkpoints, bundles).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import NORMS, REINIT, FinetuneError

log = logging.getLogger(__name__)

def _linears(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def _feature_dim(backbone: nn.Module) -> int:
    spec = getattr(backbone, "spec", None)
    dim = getattr(spec, "feature_dim", None)
    if dim:
        return int(dim)
    size = int(spec.input_size) if spec is not None else 224
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        out = backbone.features(torch.zeros(1, 3, size, size))
        backbone.train(was)
    return int(out.shape[1])


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed statistics (buffers, saved with the network): the same in training and
    evaluation, unlike batch norm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class FinetuneNet(nn.Module):
    """A backbone whose classifier is replaced by ``n_aus`` softmax pairs; ``forward`` gives (B, n_aus, 2) logits.

    ``backbone.tail`` keeps its layers up to the last linear layer (e.g. dropout, fc7, relu, dropout for CNN-F),
    which is replaced by a new ``Linear(in, 2 * n_aus)``; a backbone without a linear layer in its tail (ResNet,
    dlib's ResNet) gets the new layer appended after its feature layer. ``norm="standardize"`` puts a
    :class:`Standardize` before the new layer (its input standardised with the training frames' mean and std,
    like the scaler before an SVM; it helps features whose frame-to-frame variation is small beside their mean,
    e.g. dlib's face descriptor). Set its statistics with :func:`fit_standardize`.
    """

    def __init__(self, backbone: nn.Module, n_aus: int, norm: str = "none") -> None:
        super().__init__()
        if n_aus < 1:
            raise FinetuneError("a fine-tuned network needs at least one AU")
        self.n_aus = int(n_aus)
        tail = list(getattr(backbone, "tail", nn.Sequential()))
        last = max((i for i, m in enumerate(tail) if isinstance(m, nn.Linear)), default=None)
        if norm not in NORMS:
            raise FinetuneError(f"config key 'finetune.classifier_norm': {norm!r} is not one of {list(NORMS)}")
        self.norm = norm
        keep = list(tail) if last is None else list(tail[:last])
        in_dim = _feature_dim(backbone) if last is None else tail[last].in_features
        head = [Standardize(in_dim)] if norm == "standardize" else []
        backbone.tail = nn.Sequential(*keep, *head, nn.Linear(in_dim, 2 * self.n_aus))
        self.backbone = backbone

    @property
    def classifier(self) -> nn.Linear:
        return self.backbone.tail[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's feature layer (fc6 after ReLU / pooled vector) of the fine-tuned network."""
        return self.backbone.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.tail(self.backbone.features(x)).view(x.shape[0], self.n_aus, 2)


def hidden_linears(net: FinetuneNet) -> list[tuple[str, nn.Linear]]:
    """The fully connected layers before the new classifier, in order (fc6, fc7, ... of the VGG naming)."""
    named = [(f"fc.{n}", m) for n, m in _linears(net.backbone.fc)] if hasattr(net.backbone, "fc") else []
    named += [(f"tail.{n}", m) for n, m in _linears(net.backbone.tail) if m is not net.classifier]
    return named


def reinit_layers(net: FinetuneNet, reinit: str, seed: int) -> list[str]:
    """Re-initialise fully connected layers (seeded): ``all`` of them, ``fc6_fc7`` (the first two) or ``none``.

    The new classifier always starts at zero (p = 0.5 for every AU). Returns the names of re-initialised layers.
    """
    if reinit not in REINIT:
        raise FinetuneError(f"config key 'finetune.reinit': {reinit!r} is not one of {list(REINIT)}")
    layers = hidden_linears(net)
    chosen = {"all": layers, "fc6_fc7": layers[:2], "none": []}[reinit]
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for _, m in chosen:
            m.reset_parameters()
    finally:
        torch.random.set_rng_state(gen_state)
    # the new classifier starts at zero: every AU starts at p(present) = 0.5 and a loss of ln 2, whatever the scale
    # of the features below it (random logits from large pooled features would start training saturated)
    nn.init.zeros_(net.classifier.weight)
    if net.classifier.bias is not None:
        nn.init.zeros_(net.classifier.bias)
    names = [n for n, _ in chosen]
    log.info("re-initialised fully connected layers: %s (+ new classifier); kept: %s", names or "none",
             [n for n, _ in layers if n not in names] or "none")
    return names


def body_stages(body: nn.Module) -> list[nn.Module]:
    """Top-level stages of a body, descending through single-child wrappers."""
    stages = list(body.children())
    while len(stages) == 1 and len(list(stages[0].children())) > 0:
        stages = list(stages[0].children())
    return stages or [body]


def freeze_layers(net: FinetuneNet, freeze: str | int) -> list[nn.Module]:
    """Freeze the whole body (``body``), its first ``k`` stages (an int) or nothing (``none``).

    Frozen modules get ``requires_grad=False`` and are kept in eval mode during training (batch-norm statistics
    stay those of the pretrained network). Returns the frozen modules.
    """
    if freeze == "none" or freeze == 0:
        return []
    body = net.backbone.body
    if freeze == "body":
        frozen = [body]
    elif isinstance(freeze, int) and freeze > 0:
        stages = body_stages(body)
        if freeze > len(stages):
            raise FinetuneError(f"config key 'finetune.freeze': {freeze} stages requested, the body has {len(stages)}")
        frozen = stages[:freeze]
    else:
        raise FinetuneError(f"config key 'finetune.freeze': {freeze!r}; expected none, body or a number of stages")
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    return frozen


def _set_train_mode(net: nn.Module, frozen: Sequence[nn.Module]) -> None:
    net.train()
    for m in frozen:
        m.eval()


def _state_dict_cpu(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def _default_preprocess(spec: Any, images: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    from ..backbones import preprocess

    return preprocess(spec, images, device)


def _create_backbone(name: str, weights: str = "pretrained", **kwargs: Any):
    from ..backbones import create_backbone

    return create_backbone(name, weights=weights, **kwargs)
