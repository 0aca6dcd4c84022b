"""``au-transfer weights check`` and ``weights fetch``: every weight a workflow config needs, checked or
downloaded ahead of the jobs.

``check``: each local file is loaded into its network (keys and shapes, as the feature job will; no forward pass),
hub weights are looked up in the caches the jobs read (``$TORCH_HOME/hub/checkpoints``, the Hugging Face cache).
``fetch``: every hub weight (torchvision, timm) is downloaded into those caches (torchvision's file checked against
the sha256 prefix in its name), then loaded into its network, and its path printed: run it on a login node with
internet, with the same ``TORCH_HOME`` / ``HF_HOME`` as the compute nodes' jobs (docs/backbones.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .weights_plan import convert_command, is_local, resolve_path, used_backbones, weights_value


@dataclass
class WeightStatus:
    """One backbone's weights: what they are, where, and whether they are ready (``ok``)."""

    backbone: str
    source: str          # file | torchvision | timm | package | random | none
    where: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':4}  {self.backbone}: {self.source} {self.where}  {self.detail}".rstrip()


def _options(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    return dict((cfg.get("backbones") or {}).get(name) or {})


def _builder(name: str) -> Any:
    from .backbones.base import _REGISTRY
    from .backbones.registry import _resolve

    _resolve(name)
    return _REGISTRY[name][1] if name in _REGISTRY else None


def torchvision_weights(name: str) -> Any | None:
    """The torchvision weights enum of a registry backbone (None for a network without one)."""
    hub = getattr(_builder(name), "hub", None)
    return hub() if hub is not None else None


_HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def timm_cache_path(name: str) -> str | None:
    """Where the timm / Hugging Face cache holds a timm model's pretrained file (None: not cached)."""
    import timm

    from .backbones.registry import get_spec
    from .backbones.weights import hub_checkpoint_path

    tname = get_spec(name).extra.get("timm_name", name)
    cfg = timm.models.get_pretrained_cfg(tname)
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg or {})
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        files = ([cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else []) + list(_HF_FILES)
        for fname in files:
            hit = try_to_load_from_cache(cfg["hf_hub_id"], fname)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
        return None
    if cfg.get("url"):
        path = hub_checkpoint_path(cfg["url"])
        return str(path) if path.is_file() else None
    return None


def _load(name: str, weights: str, opts: Mapping[str, Any]) -> Any:
    from .backbones import create_backbone

    return create_backbone(name, weights, key_map=opts.get("key_map"), seed=int(opts.get("seed", 0)))


def _describe(net: Any, local: bool = False) -> str:
    release = net.spec.extra.get("release") or {}
    text = f"sha256 {str(net.weights_sha256 or '')[:16]}..."
    if local and not release:
        mean = ", ".join(f"{v:.4f}" for v in net.spec.mean)
        text += f"; no conversion record: the network's default normalisation (mean {mean} on the 0-1 scale)"
    if release:
        norm = release.get("normalization", {})
        text += (f"; converted from {release.get('source')} (sha256 {str(release.get('source_sha256'))[:16]}...), "
                 f"mean {norm.get('average_image', '?')}")
    return text


def check_backbone(cfg: Mapping[str, Any], name: str, *, base: str | None = None, offline: bool = False) -> WeightStatus:
    """The status of one backbone's weights (a local file is loaded into the network: keys and shapes)."""
    from .backbones import get_spec

    opts = _options(cfg, name)
    weights = weights_value(cfg, name)
    if weights == "random":
        return WeightStatus(name, "random", f"(seed {int(opts.get('seed', 0))})", True, "explicit random weights")
    if is_local(weights):
        path = resolve_path(weights, base)
        if not os.path.isfile(path):
            return WeightStatus(name, "file", weights, False, f"missing; {convert_command(name, weights)}")
        try:
            net = _load(name, path, opts)
        except Exception as exc:  # noqa: BLE001 - every reason a file does not fit, as one line
            return WeightStatus(name, "file", weights, False, f"does not fit: {exc}")
        return WeightStatus(name, "file", weights, True, f"fits {name} ({_describe(net, local=True)})")
    spec = get_spec(name)
    if spec.pretrained == "torchvision":
        from .backbones.weights import hub_checkpoint_path

        enum = torchvision_weights(name)
        path = hub_checkpoint_path(enum.url)
        cached = path.is_file()
        return WeightStatus(name, "torchvision", str(path), cached or not offline,
                            "cached" if cached else f"not cached (downloaded by the first job; offline: "
                                                    f"au-transfer weights fetch, or put {enum.url} there)")
    if spec.pretrained == "timm":
        hit = timm_cache_path(name)
        return WeightStatus(name, "timm", hit or "(Hugging Face / timm cache)", bool(hit) or not offline,
                            "cached" if hit else "not cached (offline: au-transfer weights fetch)")
    if spec.pretrained == "package":
        return WeightStatus(name, "package", "", True, "ship with its pip package")
    return WeightStatus(name, "none", "", False,
                        f"no hub weights: set backbones.{name}.weights to a file; {convert_command(name, f'weights/{name}.pth')}")


def check_weights(cfg: Mapping[str, Any], *, base: str | None = None, offline: bool = False) -> list[WeightStatus]:
    """:func:`check_backbone` for every backbone the config's jobs build."""
    return [check_backbone(cfg, name, base=base, offline=offline) for name in used_backbones(cfg)]


def fetch_backbone(cfg: Mapping[str, Any], name: str, *, progress: bool = True) -> WeightStatus | None:
    """Download one backbone's hub weights into the caches the jobs read and load them into the network (None:
    not hub weights)."""
    from .backbones import get_spec
    from .backbones.weights import WeightsError, hub_checkpoint_path, hub_error

    if weights_value(cfg, name) != "pretrained":
        return None
    spec = get_spec(name)
    opts = _options(cfg, name)
    if spec.pretrained == "torchvision":
        enum = torchvision_weights(name)
        try:
            enum.get_state_dict(progress=progress, check_hash=True)  # torch.hub: download, sha256-prefix check
        except Exception as exc:  # noqa: BLE001 - URLError, hash mismatch, ...
            raise hub_error(name, enum.url, exc) from exc
        net = _load(name, "pretrained", opts)
        return WeightStatus(name, "torchvision", str(hub_checkpoint_path(enum.url)), True, _describe(net))
    if spec.pretrained == "timm":
        net = _load(name, "pretrained", opts)
        where = timm_cache_path(name)
        if where is None:
            raise WeightsError(f"timm weights of {name!r} loaded but not found in the cache afterwards")
        return WeightStatus(name, "timm", where, True, _describe(net))
    return None


def fetch_weights(cfg: Mapping[str, Any], *, progress: bool = True,
                  report: Callable[[WeightStatus], None] | None = None) -> list[WeightStatus]:
    """:func:`fetch_backbone` for every backbone the config's jobs build with hub weights."""
    out = []
    for name in used_backbones(cfg):
        status = fetch_backbone(cfg, name, progress=progress)
        if status is not None:
            out.append(status)
            if report is not None:
                report(status)
    return out


def cache_dirs() -> dict[str, str]:
    """The caches the jobs read: torch hub (``TORCH_HOME``) and Hugging Face (``HF_HOME`` / ``HF_HUB_CACHE``)."""
    import torch

    try:
        from huggingface_hub import constants

        hf = str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        hf = ""
    return {"torch hub": str(Path(torch.hub.get_dir()) / "checkpoints"), "hugging face": hf}
