"""Which weights a workflow config needs, and how to get each one: local files, their public releases and the
converter's command. Imports no torch: the workflow's start-up check (via :func:`au_transfer.plan.check_workflow`)
and ``au-transfer validate-config`` call :func:`missing_weights` before any job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FT_SUFFIX = "_ft"
DOCS = "docs/backbones.md"


@dataclass(frozen=True)
class Release:
    """A public MatConvNet release that ``au-transfer convert-weights`` turns into a backbone's weights."""

    file: str
    url: str
    network: str


#: The paper's networks without hub weights, and the MatConvNet release each one is converted from.
RELEASES: dict[str, Release] = {
    "cnn_f": Release("imagenet-vgg-f.mat", "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-f.mat",
                     "CNN-F / VGG-Fast (Chatfield et al. 2014)"),
    "cnn_m": Release("imagenet-vgg-m.mat", "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-m.mat",
                     "CNN-M / VGG-Medium (Chatfield et al. 2014)"),
    "cnn_s": Release("imagenet-vgg-s.mat", "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-s.mat",
                     "CNN-S / VGG-Slow (Chatfield et al. 2014)"),
    "vgg_face": Release("vgg-face.mat", "https://www.vlfeat.org/matconvnet/models/vgg-face.mat",
                        "VGG-Face (Parkhi et al. 2015)"),
}


def weights_value(cfg: Mapping[str, Any], backbone: str) -> str:
    """``backbones.<name>.weights`` of a config (default ``pretrained``)."""
    entry = (cfg.get("backbones") or {}).get(backbone) or {}
    return str(entry.get("weights", "pretrained"))


def is_local(weights: str) -> bool:
    """Whether a ``weights`` value names a file (not ``pretrained`` / ``random``)."""
    return weights not in ("pretrained", "random")


def used_backbones(cfg: Mapping[str, Any]) -> list[str]:
    """Every registry backbone whose network a job of this config builds (features, LSTMs, regressors,
    fine-tuning), in the order the config names them; ``*_ft`` names give their base network."""
    names: list[str] = []
    names += list(cfg["features"].get("backbones") or [])
    names += list(cfg["classifiers"].get("backbones") or [])
    names += list(cfg["classifiers"]["lstm"].get("backbones") or []) if cfg["classifiers"]["lstm"]["enabled"] else []
    names += list(cfg["classifiers"].get("ft_backbones") or [])
    names += list(cfg["finetune"].get("backbones") or []) if cfg["finetune"]["enabled"] else []
    reg = cfg["regressors"]
    if reg["enabled"]:
        names += list(reg.get("backbones") or []) + list(reg.get("ft_backbones") or [])
        names += list(reg["lstm"].get("backbones") or []) if reg["lstm"]["enabled"] else []
    return list(dict.fromkeys(n.removesuffix(FT_SUFFIX) for n in names))


def convert_command(backbone: str, dst: str) -> str:
    """The one-line command that makes ``dst`` for ``backbone`` from its public release (or how to get it)."""
    release = RELEASES.get(backbone)
    if release is None:
        return f"put {backbone}'s weights there (a state dict, or the release's checkpoint file; see {DOCS})"
    return f"au-transfer convert-weights {release.file} {dst} --backbone {backbone}  (release: {release.url})"


def resolve_path(weights: str, base: str | os.PathLike[str] | None = None) -> str:
    """A weights path as the jobs open it: ``~`` expanded, relative to ``base`` (the working directory)."""
    path = os.path.expanduser(weights)
    return path if base is None or os.path.isabs(path) else os.path.join(os.fspath(base), path)


def missing_weights(cfg: Mapping[str, Any], base: str | os.PathLike[str] | None = None) -> list[str]:
    """One line per local weights file this config needs that does not exist: the file, the backbone (and its
    config key) and the command that makes it."""
    lines = []
    for name in used_backbones(cfg):
        weights = weights_value(cfg, name)
        if not is_local(weights):
            continue
        path = resolve_path(weights, base)
        if not os.path.isfile(path):
            lines.append(f"backbone {name}: weights file {weights} does not exist (backbones.{name}.weights); "
                         f"{convert_command(name, weights)}")
    return lines


def missing_weights_message(lines: list[str]) -> str:
    """The error of :func:`missing_weights`' lines, one line each."""
    return ("local weights missing:\n  " + "\n  ".join(lines)
            + f"\n  (or set backbones.<name>.weights: random for a random-feature baseline; see {DOCS})")
