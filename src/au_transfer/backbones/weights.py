"""Weights for backbones: local files (.pth / .safetensors), key mappings, hub downloads and their sha256.

Every feature file records where its network's weights came from (``weights``) and a fingerprint of them
(``weights_sha256``): the sha256 of the weights file, of the torch-hub checkpoint file, or ``random:seed=<n>`` for
an explicitly requested random initialisation. Nothing here ever falls back to random weights silently.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

#: A key mapping: either ``{regex: replacement}`` applied in order (``re.sub`` on each key, first match wins), or a
#: callable ``state_dict -> state_dict`` for anything more involved (transposes, channel flips).
KeyMap = Mapping[str, str] | Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]

DOCS = "docs/backbones.md"


class WeightsError(RuntimeError):
    """Weights are missing, unreadable or do not fit the network; the message says how to provide them."""


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def random_tag(seed: int) -> str:
    """What a randomly initialised backbone records as ``weights_sha256``."""
    return f"random:seed={int(seed)}"


def is_weights_file(weights: str | os.PathLike[str]) -> bool:
    """Whether a ``weights`` value names a file rather than ``pretrained`` / ``random``."""
    return str(weights) not in ("pretrained", "random")


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside a loaded checkpoint (plain, ``{'state_dict': ...}``, ``{'model': ...}``)."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise WeightsError(f"{path}: no state dict (name -> tensor mapping) found in this file")


#: Key of the conversion record in a weights file written by ``au-transfer convert-weights`` (a torch file's
#: top-level dict entry, a safetensors file's metadata key) and the prefix of its extra tensors in a safetensors file.
META_KEY = "au_transfer"
#: The release's full mean image (H, W, 3, RGB, 0-255) in a converted file: a torch file's top-level entry, or the
#: tensor ``au_transfer.average_image`` of a safetensors file.
AVERAGE_IMAGE_KEY = "average_image"


def load_weights_file(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A weights file's state dict and its conversion record (``{}`` for a file not written by
    ``au-transfer convert-weights``); the record's ``average_image`` is then a float32 (H, W, 3) array when the
    release has a full mean image. ``module.`` prefixes (DataParallel checkpoints) are stripped."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist (see {DOCS} for how to provide weights)")
    meta: dict[str, Any] = {}
    try:
        if p.suffix == ".safetensors":
            import json

            from safetensors import safe_open
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
            with safe_open(str(p), framework="pt") as fh:
                text = (fh.metadata() or {}).get(META_KEY)
            if text:
                meta = dict(json.loads(text))
                image = sd.pop(f"{META_KEY}.{AVERAGE_IMAGE_KEY}", None)
                if image is not None:
                    meta[AVERAGE_IMAGE_KEY] = image.float().numpy()
        else:
            # MAE-style training checkpoints (FMAE's) also hold the run's argparse.Namespace: plain attributes,
            # allowed to the weights-only reader, which still refuses any other object
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(p, map_location="cpu", weights_only=True)
            if isinstance(obj, Mapping) and isinstance(obj.get(META_KEY), Mapping):
                meta = dict(obj[META_KEY])
                image = obj.get(AVERAGE_IMAGE_KEY)
                if isinstance(image, torch.Tensor):
                    meta[AVERAGE_IMAGE_KEY] = image.float().numpy()
            sd = _unwrap(obj, p)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader error becomes one clear message
        raise WeightsError(f"cannot read weights file {p}: {exc}") from exc
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd, meta


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``.pth``/``.pt``/``.bin``), on CPU.

    ``module.`` prefixes (DataParallel checkpoints) are stripped; a conversion record is left out
    (:func:`load_weights_file` returns it). Torch files are read with ``weights_only=True`` (tensors and plain
    containers, plus ``argparse.Namespace``, which MAE-style training checkpoints store).
    """
    return load_weights_file(path)[0]


def release_spec(spec: Any, meta: Mapping[str, Any], source: str) -> Any:
    """The spec a network loaded from a converted file uses: its release's normalisation instead of the
    hand-typed default. ``meta['normalization']``: ``mean_pixel`` (RGB, 0-255) becomes ``mean`` (and ``std``
    1/255: 0-255 input minus the mean); a full ``average_image`` (the record's array) goes to
    ``spec.extra['average_image']``, which :func:`~au_transfer.backbones.preprocess` subtracts when no other mean
    image is given; ``image_size`` must equal the network's input size."""
    import dataclasses

    norm = meta.get("normalization") if meta else None
    if not norm:
        return spec
    size = norm.get("image_size")
    if size and int(size[0]) != spec.input_size:
        raise WeightsError(f"weights {source}: the release expects {int(size[0])} x {int(size[1])} inputs, backbone "
                           f"{spec.name!r} takes {spec.input_size} x {spec.input_size}")
    extra = dict(spec.extra)
    pixel = norm.get("mean_pixel")
    changes: dict[str, Any] = {}
    if pixel is not None:
        changes["mean"] = tuple(float(v) / 255.0 for v in pixel)
        changes["std"] = (1 / 255, 1 / 255, 1 / 255)
    image = meta.get(AVERAGE_IMAGE_KEY)
    if image is not None:
        image = np.ascontiguousarray(image, dtype=np.float32)
        if image.shape != (spec.input_size, spec.input_size, 3):
            raise WeightsError(f"weights {source}: average image of shape {image.shape} does not fit backbone "
                               f"{spec.name!r} ({spec.input_size}, {spec.input_size}, 3)")
        extra["average_image"] = image
        extra["average_image_sha256"] = hashlib.sha256(image.tobytes()).hexdigest()
    extra["release"] = {k: v for k, v in meta.items() if k != AVERAGE_IMAGE_KEY}
    return dataclasses.replace(spec, extra=extra, **changes)


def apply_key_map(sd: dict[str, torch.Tensor], key_map: KeyMap | None) -> dict[str, torch.Tensor]:
    """Rename the keys of a state dict (see :data:`KeyMap`); keys that no pattern matches are kept as they are."""
    if key_map is None:
        return sd
    if callable(key_map):
        return dict(key_map(sd))
    rules = [(re.compile(pat), rep) for pat, rep in key_map.items()]
    out: dict[str, torch.Tensor] = {}
    for key, val in sd.items():
        new = key
        for pat, rep in rules:
            if pat.search(key):
                new = pat.sub(rep, key)
                break
        if new in out:
            raise WeightsError(f"key map sends two keys to {new!r} (second one: {key!r})")
        out[new] = val
    return out


def fit_shapes(sd: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reshape tensors whose element count matches the target's (conv-as-fc layers of caffe/MatConvNet ports).

    A fully connected layer stored as a convolution ``(4096, 256, 6, 6)`` becomes ``(4096, 9216)``; the (C, H, W)
    order of the flattening equals ``torch.flatten`` of an NCHW tensor, so no permutation is needed.
    """
    out = dict(sd)
    for key, val in sd.items():
        tgt = target.get(key)
        if tgt is not None and tuple(val.shape) != tuple(tgt.shape) and val.numel() == tgt.numel():
            out[key] = val.reshape(tgt.shape)
    return out


def load_into(module: torch.nn.Module, sd: dict[str, torch.Tensor], *, name: str, source: str) -> None:
    """Load a state dict strictly, with an error that lists missing / unexpected keys and shape mismatches."""
    target = module.state_dict()
    sd = fit_shapes(sd, target)
    missing = sorted(set(target) - set(sd))
    unexpected = sorted(set(sd) - set(target))
    bad_shape = [f"{k}: file {tuple(sd[k].shape)} vs network {tuple(target[k].shape)}"
                 for k in sorted(set(sd) & set(target)) if tuple(sd[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or bad_shape:
        def few(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {few(unexpected)}")
        if bad_shape:
            parts.append(f"shape mismatches: {few(bad_shape)}")
        raise WeightsError(
            f"weights {source} do not fit backbone {name!r}: " + "; ".join(parts)
            + f". Expected key names are listed in {DOCS}; give a key_map to rename keys of a converted checkpoint."
        )
    module.load_state_dict(sd, strict=True)


def hub_checkpoint_path(url: str) -> Path:
    """Where ``torch.hub`` caches the file of ``url`` (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def hub_error(name: str, url: str | None, exc: BaseException) -> WeightsError:
    """The error for a failed hub download: where to put the file, or how to point the config at one."""
    where = ""
    if url:
        where = (f" Download {url} on a machine with network access and put it at {hub_checkpoint_path(url)} "
                 f"(the torch hub cache; set TORCH_HOME to move it), or")
    else:
        where = " Put the checkpoint in the hub cache on a machine with network access, or"
    return WeightsError(
        f"could not fetch pretrained weights for backbone {name!r} ({type(exc).__name__}: {exc}); no network?"
        f"{where} set backbones.{name}.weights: /path/to/{name}.pth (a state dict; see {DOCS})."
    )


def state_dict_sha256(sd: Mapping[str, torch.Tensor]) -> str:
    """A fingerprint of weights that did not come from one known file (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for key in sorted(sd):
        t = sd[key].detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "tensors:" + h.hexdigest()
