"""The fine-tuning optimiser's three learning rates: the new classifier at lr, the fully connected layers below it at
lr * hidden_lr_mult, the convolutional body at lr * body_lr_mult (frozen parameters in no group)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from au_transfer import finetune as ft
from au_transfer.backbones import Backbone, BackboneSpec

INPUT = 8


def tiny() -> Backbone:
    spec = BackboneSpec(name="tiny_optim", family="test", layer="fc6", feature_dim=6, input_size=INPUT,
                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    torch.manual_seed(1)
    body = nn.Sequential(nn.Conv2d(3, 2, 3, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, 2, 1), nn.Flatten())
    fc = nn.Sequential(nn.Linear(8, 6), nn.ReLU())
    tail = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    return Backbone(spec, body, fc, tail, weights="pretrained", weights_sha256="tiny")


def _lr_of(opt: torch.optim.Optimizer) -> dict[int, float]:
    return {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}


@pytest.mark.parametrize("norm", ["none", "standardize"])
def test_each_part_learns_at_its_own_rate(norm):
    net = ft.FinetuneNet(tiny(), n_aus=2, norm=norm)
    cfg = ft.FinetuneConfig(optimizer="adam", lr=1e-3, hidden_lr_mult=0.1, body_lr_mult=0.01)
    lr = _lr_of(ft._make_optimizer(net, cfg))
    assert len(lr) == sum(1 for p in net.parameters() if p.requires_grad)  # every trainable parameter, once
    for p in net.classifier.parameters():
        assert lr[id(p)] == pytest.approx(1e-3)
    hidden = [*net.backbone.fc.parameters(), *net.backbone.tail[0].parameters()]  # fc6 and the kept fc7
    assert hidden and all(lr[id(p)] == pytest.approx(1e-4) for p in hidden)
    assert all(lr[id(p)] == pytest.approx(1e-5) for p in net.backbone.body.parameters())


def test_frozen_body_is_in_no_group_and_a_zero_multiplier_keeps_the_hidden_layers():
    net = ft.FinetuneNet(tiny(), n_aus=2)
    ft.reinit_layers(net, "all", seed=0)
    nn.init.normal_(net.classifier.weight)  # non-zero, so that gradients reach the layers below it
    ft.freeze_layers(net, "body")
    cfg = ft.FinetuneConfig(optimizer="sgd", lr=0.5, hidden_lr_mult=0.0)
    opt = ft._make_optimizer(net, cfg)
    assert not set(_lr_of(opt)) & {id(p) for p in net.backbone.body.parameters()}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net(torch.randn(4, 3, INPUT, INPUT)).sum().backward()
    opt.step()
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"backbone.tail.2.weight", "backbone.tail.2.bias"}  # the classifier only
