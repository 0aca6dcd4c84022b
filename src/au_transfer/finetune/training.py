"""The training loop of fine-tuning.

:func:`train`: seeded per-epoch shuffling and augmentation (:func:`augment_batch`), mixed precision on CUDA,
validation-based early stopping, and an atomic checkpoint after every epoch (model, optimizer, scaler, RNG states)
so that a killed job resumes exactly where it stopped (:func:`fingerprint_of` ties a checkpoint to its job and
inputs). Also :func:`masked_loss` (unknown labels masked per AU), :func:`predict_proba`, the validation score and
:func:`fit_standardize`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..device import amp_dtype
from ..io import atomic_path
from .config import FinetuneConfig, FinetuneError
from .data import FaceCropDataset, _loader
from .net import FinetuneNet, Standardize, _default_preprocess, _set_train_mode, _state_dict_cpu

log = logging.getLogger(__name__)

def augment_batch(x: torch.Tensor, gen: torch.Generator, shift: float, flip: bool) -> torch.Tensor:
    """Random shift (crop of the reflect-padded image, up to ``shift`` of its size) and horizontal flip per image."""
    b, _, h, w = x.shape
    pad = int(round(shift * max(h, w)))
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
        offs = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen).tolist()
        x = torch.stack([padded[i, :, oy:oy + h, ox:ox + w] for i, (oy, ox) in enumerate(offs)])
    if flip:
        mask = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Fine-tuning's AMP: :func:`au_transfer.device.amp_dtype` on CUDA only (``finetune.amp`` is ignored on CPU)."""
    return amp_dtype(amp, device, on_cpu=False, what="config key 'finetune.amp'")


def f1_binary(y: np.ndarray, pred: np.ndarray) -> float:
    """F1 of the positive class (0 when there is no positive prediction nor label)."""
    tp = int(((y == 1) & (pred == 1)).sum())
    fp = int(((y == 0) & (pred == 1)).sum())
    fn = int(((y == 1) & (pred == 0)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


#: The label of an unknown AU (:func:`au_transfer.labels.read_label_table`): masked out of every loss and score.
UNKNOWN_LABEL: int = -1


def masked_loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of ``logits`` (batch, n_aus, 2) against labels ``y`` (batch, n_aus), each unknown label
    (:data:`UNKNOWN_LABEL`) masked out, so that each AU learns from its own known frames only.

    Without ``weight``: the mean over every known (frame, AU) label. With per-AU class weights ``weight``
    (n_aus, 2; the multilabel head): the mean over the AUs with a known label in the batch of each AU's weighted
    cross-entropy over its known frames. Without unknown labels both equal the unmasked losses."""
    if weight is None:
        return nn.functional.cross_entropy(logits.reshape(-1, 2), y.reshape(-1), ignore_index=UNKNOWN_LABEL)
    known = (y != UNKNOWN_LABEL).any(dim=0)
    losses = [nn.functional.cross_entropy(logits[:, j], y[:, j], weight=weight[j], ignore_index=UNKNOWN_LABEL)
              for j in range(logits.shape[1]) if bool(known[j])]
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


def _param_groups(net: FinetuneNet, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """Three learning rates: the new classifier (and anything outside body / fc / tail) at ``lr``, the fully
    connected layers below it (``fc`` and the rest of ``tail``: re-initialised or kept) at ``lr * hidden_lr_mult``,
    the convolutional body at ``lr * body_lr_mult``. Frozen parameters and empty groups are left out."""
    body_ids = {id(p) for p in net.backbone.body.parameters()}
    classifier_ids = {id(p) for p in net.classifier.parameters()}
    hidden_ids = {id(p) for p in getattr(net.backbone, "fc", nn.Sequential()).parameters()}
    hidden_ids |= {id(p) for p in net.backbone.tail.parameters()} - classifier_ids
    hidden_ids -= body_ids
    params = [p for p in net.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in body_ids | hidden_ids], "lr": cfg.lr},
              {"params": [p for p in params if id(p) in hidden_ids], "lr": cfg.lr * cfg.hidden_lr_mult},
              {"params": [p for p in params if id(p) in body_ids], "lr": cfg.lr * cfg.body_lr_mult}]
    return [g for g in groups if g["params"]]


def _make_optimizer(net: FinetuneNet, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    groups = _param_groups(net, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def fit_standardize(net: FinetuneNet, ds: FaceCropDataset, *, batch_size: int, device: torch.device,
                    preprocess: Callable, max_frames: int = 1024, seed: int = 0, num_workers: int = 0) -> None:
    """Set the :class:`Standardize` statistics to the mean and std of the classifier's input over (a seeded
    subset of at most ``max_frames``) training frames, with the starting network in eval mode."""
    norm = next((m for m in net.backbone.tail if isinstance(m, Standardize)), None)
    if norm is None or len(ds) == 0:
        return
    before = nn.Sequential(*list(net.backbone.tail)[:-2])
    idx = np.random.default_rng(seed).permutation(len(ds))[:max_frames]
    net.to(device).eval()
    feats = []
    for images, _ in _loader(ds, batch_size, sorted(idx.tolist()), num_workers):
        feats.append(before(net.backbone.features(preprocess(net.backbone.spec, images, device))).float().cpu())
    f = torch.cat(feats)
    norm.mean.copy_(f.mean(0))
    norm.std.copy_(f.std(0, unbiased=False).clamp_min(1e-6))
    log.info("classifier input standardised on %d training frames (mean |x| %.4f, mean std %.4f)", len(f),
             float(f.abs().mean()), float(norm.std.mean()))


@torch.no_grad()
def predict_proba(net: FinetuneNet, ds: FaceCropDataset, *, batch_size: int, device: torch.device,
                  preprocess: Callable = _default_preprocess, amp: str = "none", num_workers: int = 0,
                  desc: str = "predict") -> np.ndarray:
    """Softmax probability of "present", shape (len(ds), n_aus), in dataset order."""
    net.eval()
    dtype = _amp_dtype(amp, device)
    out = []
    for images, _ in tqdm(_loader(ds, batch_size, range(len(ds)), num_workers), desc=desc, leave=False,
                          disable=None):
        x = preprocess(net.backbone.spec, images, device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = net(x)
        out.append(torch.softmax(logits.float(), dim=-1)[..., 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.n_aus), np.float32)


def _evaluate(net, ds, cfg, device, preprocess, loss_fn, active: Sequence[int] | None = None) -> tuple[float, float]:
    """Validation loss and mean F1 over the ``active`` AU columns (threshold 0.5 on the probability of present)."""
    probs = predict_proba(net, ds, batch_size=cfg.batch_size, device=device, preprocess=preprocess, amp=cfg.amp,
                          num_workers=cfg.num_workers, desc="validate")
    y = ds.labels
    p = torch.from_numpy(np.clip(probs, 1e-7, 1 - 1e-7))
    logits = torch.stack([torch.log1p(-p), torch.log(p)], dim=-1)  # log-probabilities are valid logits
    loss = float(loss_fn(logits, torch.from_numpy(y)))
    cols = list(range(y.shape[1])) if active is None else list(active)
    # f1_binary counts labels 1 and 0 only: an unknown label (-1) is left out of each AU's F1
    f1 = float(np.mean([f1_binary(y[:, j], (probs[:, j] >= 0.5).astype(int)) for j in cols])) if cols else 0.0
    return loss, f1


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()  # as tensors and numbers: loadable with weights_only
    state = {"torch": torch.random.get_rng_state(),
             "numpy": [str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.random.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Reseed every RNG at the start of an epoch: an epoch's shuffle, dropout and augmentation depend only on
    (seed, epoch), so that a resumed run repeats exactly what an uninterrupted one does."""
    s = (int(seed) * 1_000_003 + int(epoch)) % (2**31)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)
    gen = torch.Generator()
    gen.manual_seed(s)
    return gen


def fingerprint_of(payload: Mapping[str, Any], files: Iterable[str | os.PathLike[str]] = ()) -> str:
    """A hash of the settings and of the input files' size and mtime, so a checkpoint is reused only for the
    same job on the same inputs."""
    items = dict(payload)
    items["_files"] = sorted((str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in files)
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def _read_checkpoint(ckpt: Path) -> dict[str, Any] | None:
    """A resumable checkpoint read with ``weights_only`` (tensors and plain data only, never code); None, with a
    warning, for one that cannot be read so (damaged, or written before checkpoints held only such data)."""
    from ..persist import ModelFileError, torch_load

    try:
        state = torch_load(ckpt, what="fine-tuning checkpoint")
    except ModelFileError as exc:
        log.warning("ignoring checkpoint: %s; training from the first epoch", exc)
        return None
    if not isinstance(state, dict):
        log.warning("ignoring checkpoint %s: not a fine-tuning checkpoint; training from the first epoch", ckpt)
        return None
    return state


@dataclass
class TrainResult:
    """What :func:`train` did: per-epoch history, the epoch it started from and the chosen (best) epoch."""

    history: list[dict[str, float]]
    start_epoch: int
    best_epoch: int
    best_score: float
    stopped_early: bool


def train(net: FinetuneNet, train_ds: FaceCropDataset, val_ds: FaceCropDataset | None, cfg: FinetuneConfig, *,
          device: torch.device, ckpt_path: str | os.PathLike[str] | None = None, fingerprint: str = "",
          preprocess: Callable = _default_preprocess, frozen: Sequence[nn.Module] = (),
          class_weight: torch.Tensor | None = None, active: Sequence[int] | None = None,
          on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Fine-tune ``net`` in place; on return it holds the weights of the best validation epoch.

    After every epoch a checkpoint (model, optimizer, scaler, epoch, best-so-far, history, RNG states) is written
    atomically to ``ckpt_path``; a later call with the same ``fingerprint`` resumes after its last epoch (a
    checkpoint with another fingerprint, i.e. other data or settings, is ignored). ``on_epoch_end(epoch, stats)``
    runs after the checkpoint is written. Early stopping: ``cfg.select`` (val F1 or loss), ``cfg.patience``;
    ``active`` are the AU columns that count in the validation F1 (AUs with training positives and negatives).
    """
    if len(train_ds) == 0:
        raise FinetuneError("the balanced training set is empty: no positive or no negative training frame")
    net.to(device)
    dtype = _amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    opt = _make_optimizer(net, cfg)
    loss_fn = masked_loss  # validation loss: unweighted, unknown labels masked
    weight = class_weight.to(device) if class_weight is not None else None
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"score": (-math.inf,), "epoch": -1, "state": None}
    bad_epochs, start = 0, 0
    ckpt = Path(ckpt_path) if ckpt_path else None
    state = _read_checkpoint(ckpt) if ckpt is not None and ckpt.exists() else None
    if state is not None:
        if state.get("fingerprint") == fingerprint:
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            history, best, bad_epochs = state["history"], state["best"], state["bad_epochs"]
            start = int(state["epoch"]) + 1
            _set_rng_state(state["rng"])
            log.info("resuming from checkpoint %s after epoch %d", ckpt, start)
        else:
            log.warning("ignoring checkpoint %s: it was written for other data or settings", ckpt)
    stopped = bool(history) and bad_epochs >= cfg.patience and val_ds is not None
    n_train = len(train_ds)
    per_epoch = min(n_train, cfg.max_train_frames or n_train)
    for epoch in range(start, cfg.epochs):
        if stopped:
            break
        gen = _seed_epoch(cfg.seed, epoch)
        order = torch.randperm(n_train, generator=gen)[:per_epoch].tolist()
        _set_train_mode(net, frozen)
        total, seen = 0.0, 0
        bar = tqdm(_loader(train_ds, cfg.batch_size, order, cfg.num_workers), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, disable=None)
        for images, labels in bar:
            x = preprocess(net.backbone.spec, images, device)
            if cfg.augment.enabled:
                x = augment_batch(x, gen, cfg.augment.shift, cfg.augment.flip)
            y = labels.to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = net(x)
            logits = logits.float()
            # per-AU class weights (multilabel head): mean over AUs of weighted cross-entropy; unknown labels masked
            loss = masked_loss(logits, y, weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        stats = {"epoch": epoch, "train_loss": total / max(seen, 1)}
        if val_ds is not None and len(val_ds) > 0:
            stats["val_loss"], stats["val_f1"] = _evaluate(net, val_ds, cfg, device, preprocess, loss_fn, active)
            # F1 ties (frequent on small validation sets) go to the lower loss
            score = (stats["val_f1"], -stats["val_loss"]) if cfg.select == "f1" else (-stats["val_loss"],)
        else:
            score = (float(epoch),)  # no validation subjects: keep the last epoch
        if score > best["score"]:
            best = {"score": score, "epoch": epoch, "state": _state_dict_cpu(net)}
            bad_epochs = 0
        else:
            bad_epochs += 1
        history.append(stats)
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                 ", ".join(f"{k}={v:.4f}" for k, v in stats.items() if k != "epoch"))
        stopped = val_ds is not None and len(val_ds) > 0 and bad_epochs >= cfg.patience
        if ckpt is not None:
            state = {"fingerprint": fingerprint, "epoch": epoch, "model": _state_dict_cpu(net),
                     "optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "best": best,
                     "history": history, "bad_epochs": bad_epochs, "rng": _rng_state()}
            with atomic_path(ckpt) as tmp:
                torch.save(state, tmp)
        if on_epoch_end is not None:
            on_epoch_end(epoch, stats)
        if stopped:
            log.info("early stopping after epoch %d (no improvement for %d epochs)", epoch + 1, cfg.patience)
    if best["state"] is not None:
        net.load_state_dict(best["state"])
    return TrainResult(history, start, int(best["epoch"]), float(best["score"][0]), stopped)
