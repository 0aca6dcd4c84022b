"""Fine-tuned network bundles: one file with everything a predictor needs (:func:`save_bundle`,
:func:`load_bundle`), the network rebuilt from it (:func:`load_finetuned`) and the scikit-learn style
:class:`FinetunedClassifier` on face crops."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..io import atomic_path
from .config import FinetuneError
from .net import FinetuneNet, _create_backbone, _default_preprocess, _state_dict_cpu

BUNDLE_FORMAT = "au_transfer.finetune/1"


def state_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, shapes, dtypes and values (the fingerprint of fine-tuned weights)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _spec_dict(spec: Any) -> dict[str, Any]:
    if spec is None:
        return {}
    if hasattr(spec, "__dataclass_fields__"):
        d = asdict(spec)
    else:
        d = {k: v for k, v in vars(spec).items() if not k.startswith("_")}
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def save_bundle(path: str | os.PathLike[str], net: FinetuneNet, **meta: Any) -> None:
    """Save a fine-tuned network with everything a predictor needs (atomically)."""
    state = _state_dict_cpu(net)
    bundle = {"format": BUNDLE_FORMAT, "state_dict": state, "weights_sha256": state_sha256(state), "n_aus": net.n_aus,
              "classifier_norm": net.norm,
              "spec": _spec_dict(getattr(net.backbone, "spec", None)), "torch": str(torch.__version__), **meta}
    with atomic_path(path) as tmp:
        torch.save(bundle, tmp)


def load_bundle(path: str | os.PathLike[str], *, mmap: bool = False) -> dict[str, Any]:
    """Read a bundle written by :func:`save_bundle` with ``weights_only`` (tensors and plain data; a file that would
    run code is refused: :func:`au_transfer.persist.torch_load`); raises naming the file when it is not one."""
    from ..persist import ModelFileError, torch_load

    try:
        bundle = torch_load(path, mmap=mmap, what="fine-tuned network")
    except ModelFileError as err:
        raise FinetuneError(str(err)) from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise FinetuneError(f"{path}: not a fine-tuned network bundle ({BUNDLE_FORMAT})")
    return bundle


def load_finetuned(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                   create: Callable[..., nn.Module] = _create_backbone) -> tuple[FinetuneNet, dict[str, Any]]:
    """Rebuild a fine-tuned network from its bundle (the backbone architecture comes from the registry)."""
    bundle = load_bundle(path)
    backbone = create(bundle["backbone"], weights="random")
    net = FinetuneNet(backbone, int(bundle["n_aus"]), bundle.get("classifier_norm", "none"))
    try:
        net.load_state_dict(bundle["state_dict"])
    except RuntimeError as err:
        raise FinetuneError(f"{path}: weights do not fit backbone {bundle['backbone']!r}: {err}") from err
    net.backbone.weights = str(path)
    net.backbone.weights_sha256 = bundle.get("weights_sha256") or state_sha256(bundle["state_dict"])
    net.to(device).eval()
    return net, bundle


class FinetunedClassifier:
    """A fine-tuned network for one AU with the scikit-learn style API on uint8 RGB crops (B, S, S, 3).

    ``decision_function`` gives the softmax probability of "present" (NaN for an AU that was skipped because its
    training set had no positive or no negative frame), ``predict`` thresholds it at 0.5 (skipped: 0).
    """

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu", batch_size: int = 64,
                 preprocess: Callable = _default_preprocess, create: Callable[..., nn.Module] = _create_backbone) -> None:
        self.device = resolve_device(device)
        self.net, self.bundle = load_finetuned(path, self.device, create)
        self.batch_size, self.preprocess = batch_size, preprocess
        self.au, self.au_index = int(self.bundle["au"]), int(self.bundle["au_index"])
        self.crop_region, self.input_size = self.bundle["crop_region"], int(self.bundle["input_size"])
        self.classes_ = np.array([0, 1])

    @torch.no_grad()
    def decision_function(self, images: np.ndarray) -> np.ndarray:
        if self.bundle.get("status") == "skipped":  # no training positives (or negatives): no opinion
            return np.full(len(images), np.nan)
        out = []
        for i in range(0, len(images), self.batch_size):
            x = self.preprocess(self.net.backbone.spec, images[i:i + self.batch_size], self.device)
            out.append(torch.softmax(self.net(x).float(), -1)[:, self.au_index, 1].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return (np.nan_to_num(self.decision_function(images), nan=0.0) >= 0.5).astype(int)
