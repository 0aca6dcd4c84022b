"""Fine-tuning CNNs for AU occurrence (paper V), fine-tuned features (VII-B) and the region-based approach (VII-C).

A registry backbone keeps its convolutional weights; its fully connected layers are re-initialised (``reinit``:
``all``, ``fc6_fc7`` or ``none``) and its classifier is replaced by two outputs per AU (present / absent). With
``head: per_au`` (the paper) one network is trained per AU; with ``head: multilabel`` one network is trained for
all AUs that see the same crop region, with one softmax pair per AU.

Training uses balanced training and validation sets (paper IV-A: as many randomly kept negatives as positives,
seeded), validation-based early stopping, optional mixed precision on CUDA, and a checkpoint written atomically
after every epoch, so that a killed job resumes from its last finished epoch. The saved network
(:func:`save_bundle`) holds everything a predictor needs; :class:`FinetunedClassifier` wraps it with the
scikit-learn style ``decision_function`` / ``predict`` on images.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from . import labels as labels_mod
from .config import check_subject_exclusive, schema_defaults
from .device import amp_dtype, resolve_device
from .io import atomic_path, write_csv_atomic
from .labels import balance_indices
from .predictions import PRED_COLUMNS, empty_predictions, prediction_rows  # noqa: F401  (PRED_COLUMNS re-exported)

log = logging.getLogger(__name__)

HEADS = ("per_au", "multilabel")
REINIT = ("all", "fc6_fc7", "none")
OPTIMIZERS = ("sgd", "adam", "adamw")
AMP = ("none", "fp16", "bf16")
NORMS = ("none", "standardize")
BUNDLE_FORMAT = "au_transfer.finetune/1"


class FinetuneError(ValueError):
    """Bad input to fine-tuning: the message names the file, subject, frame or config key."""


# ----------------------------------------------------------------------------------------------------- config
#: The defaults of the ``finetune`` config section, read from its schema (au_transfer/schemas/finetune.schema.yaml):
#: the workflow and this library use the same values.
DEFAULTS: dict[str, Any] = schema_defaults("finetune")


@dataclass
class AugmentConfig:
    """Small random shifts (a crop of the reflect-padded image) and horizontal flips, training set only."""

    enabled: bool = DEFAULTS["augment"]["enabled"]
    shift: float = DEFAULTS["augment"]["shift"]
    flip: bool = DEFAULTS["augment"]["flip"]


@dataclass
class FinetuneConfig:
    """Training settings: the ``finetune`` config section; every default is the schema's (:data:`DEFAULTS`)."""

    head: str = DEFAULTS["head"]
    reinit: str = DEFAULTS["reinit"]
    classifier_norm: str = DEFAULTS["classifier_norm"]
    freeze: str | int = DEFAULTS["freeze"]
    lr: float = DEFAULTS["lr"]
    body_lr_mult: float = DEFAULTS["body_lr_mult"]
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    patience: int = DEFAULTS["patience"]
    select: str = DEFAULTS["select"]
    optimizer: str = DEFAULTS["optimizer"]
    momentum: float = DEFAULTS["momentum"]
    weight_decay: float = DEFAULTS["weight_decay"]
    seed: int = DEFAULTS["seed"]
    amp: str = DEFAULTS["amp"]
    num_workers: int = DEFAULTS["num_workers"]
    balance_val: bool = DEFAULTS["balance_val"]
    max_train_frames: int | None = DEFAULTS["max_train_frames"]
    max_val_frames: int | None = DEFAULTS["max_val_frames"]
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.augment, Mapping):
            self.augment = AugmentConfig(**self.augment)
        checks = [("head", self.head, HEADS), ("reinit", self.reinit, REINIT),
                  ("optimizer", self.optimizer, OPTIMIZERS), ("amp", self.amp, AMP), ("select", self.select, ("f1", "loss")),
                  ("classifier_norm", self.classifier_norm, NORMS)]
        for key, value, allowed in checks:
            if value not in allowed:
                raise FinetuneError(f"config key 'finetune.{key}': {value!r} is not one of {list(allowed)}")
        if not (self.freeze in ("none", "body") or (isinstance(self.freeze, int) and self.freeze >= 0)):
            raise FinetuneError(f"config key 'finetune.freeze': {self.freeze!r}; expected none, body or a number of stages")
        for key in ("epochs", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise FinetuneError(f"config key 'finetune.{key}' must be >= 1, got {getattr(self, key)}")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> FinetuneConfig:
        """Build from a config mapping, ignoring the workflow-only keys (enabled, backbones, regions, ...)."""
        names = {f.name for f in cls.__dataclass_fields__.values()}
        return cls(**{k: copy.deepcopy(v) for k, v in cfg.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------------ model
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


# ------------------------------------------------------------------------------------------------------- data
def read_label_table(path: str | os.PathLike[str], aus: Sequence[int], threshold: int,
                     subject: str | None = None) -> pd.DataFrame:
    """Read ``results/labels/{subject}.csv`` as ``frame`` + 0/1 occurrence columns ``AU{n}`` (intensity >= threshold):
    :func:`au_transfer.labels.read_label_table`, raising :class:`FinetuneError`."""
    return labels_mod.read_label_table(path, aus, threshold, subject=subject, error=FinetuneError)


def _open_store(path: str | os.PathLike[str]):
    from .faces.store import FaceStore

    return FaceStore(path)


def frame_table(face_paths: Mapping[str, str | os.PathLike[str]], label_paths: Mapping[str, str | os.PathLike[str]],
                subjects: Iterable[str], aus: Sequence[int], threshold: int,
                open_store: Callable[[Any], Any] = _open_store) -> pd.DataFrame:
    """Valid, labelled frames of ``subjects``: columns ``subject``, ``row`` (face-store index), ``frame``, ``AU{n}``."""
    parts = []
    for subject in subjects:
        if subject not in face_paths or subject not in label_paths:
            raise FinetuneError(f"subject {subject}: no face store or label table given")
        labels = read_label_table(label_paths[subject], aus, threshold, subject)
        with open_store(face_paths[subject]) as store:
            frames = np.asarray(store.frames).astype(int)
            valid = np.asarray(store.valid).astype(bool)
        rows = pd.DataFrame({"row": np.arange(len(frames)), "frame": frames})[valid]
        merged = rows.merge(labels, on="frame", how="inner")
        if merged.empty:
            log.warning("subject %s: no frame is both valid in %s and labelled in %s", subject,
                        face_paths[subject], label_paths[subject])
        merged.insert(0, "subject", subject)
        parts.append(merged)
    if not parts:
        return pd.DataFrame(columns=["subject", "row", "frame", *[f"AU{a}" for a in aus]])
    return pd.concat(parts, ignore_index=True)


def balance(table: pd.DataFrame, aus: Sequence[int], seed: int) -> pd.DataFrame:
    """Paper IV-A: keep every positive frame of an AU and as many randomly chosen negatives (seeded).

    If negatives are the minority, as many positives are kept as there are negatives. For several AUs
    (multilabel head) the result is the union of each AU's balanced subset, so that no AU loses positives (the
    loss then weights each AU's classes by their frequency in this union); an AU with one class only adds nothing.
    The rule is :func:`au_transfer.labels.balance_indices`, one seeded generator for all AUs in order.
    """
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for a in aus:  # no draw when both classes are equal (draw_when_equal=False): fine-tuning's seeded subsets
        keep.update(balance_indices(table[f"AU{a}"].to_numpy(), rng, draw_when_equal=False).tolist())
    return table.iloc[sorted(keep)].reset_index(drop=True)


class FaceCropDataset(torch.utils.data.Dataset):
    """Region crops of face-store frames with their AU labels; stores are opened lazily in each process.

    ``__getitems__`` reads a whole batch per subject at once (sorted HDF5 reads). Items are (uint8 HWC crop,
    int64 label vector).
    """

    def __init__(self, table: pd.DataFrame, face_paths: Mapping[str, str | os.PathLike[str]], crop_region: str,
                 out_size: int, aus: Sequence[int], open_store: Callable[[Any], Any] = _open_store) -> None:
        self.subjects = table["subject"].to_numpy()
        self.rows = table["row"].to_numpy().astype(np.int64)
        self.frames = table["frame"].to_numpy().astype(np.int64)
        self.labels = table[[f"AU{a}" for a in aus]].to_numpy().astype(np.int64)
        self.face_paths = {s: str(p) for s, p in face_paths.items()}
        self.crop_region, self.out_size = crop_region, int(out_size)
        self.open_store = open_store
        self._stores: dict[str, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.rows)

    def _store(self, subject: str):
        if self._pid != os.getpid():
            self._stores, self._pid = {}, os.getpid()
        if subject not in self._stores:
            store = self.open_store(self.face_paths[subject])
            if hasattr(store, "__enter__"):
                store = store.__enter__()
            self._stores[subject] = store
        return self._stores[subject]

    def _crops(self, subject: str, rows: np.ndarray) -> np.ndarray:
        try:
            crops = np.asarray(self._store(subject).crops(rows, self.crop_region, self.out_size))
        except Exception as err:
            raise FinetuneError(f"{self.face_paths[subject]}: subject {subject}: cannot read {self.crop_region} crops "
                                f"of rows {rows[:5].tolist()}...: {err}") from err
        if crops.shape != (len(rows), self.out_size, self.out_size, 3) or crops.dtype != np.uint8:
            raise FinetuneError(f"{self.face_paths[subject]}: subject {subject}: crops have shape {crops.shape} "
                                f"{crops.dtype}, expected ({len(rows)}, {self.out_size}, {self.out_size}, 3) uint8")
        return crops

    def __getitems__(self, idx: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        idx = np.asarray(idx, dtype=np.int64)
        out: list[Any] = [None] * len(idx)
        subjects = self.subjects[idx]
        for subject in dict.fromkeys(subjects.tolist()):
            where = np.flatnonzero(subjects == subject)
            rows = self.rows[idx[where]]
            order = np.argsort(rows, kind="stable")
            uniq, inverse = np.unique(rows[order], return_inverse=True)
            crops = self._crops(subject, uniq)
            for k, w in enumerate(where[order]):
                out[w] = (crops[inverse[k]], self.labels[idx[w]])
        return out

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.__getitems__([i])[0]

    def close(self) -> None:
        for store in self._stores.values():
            if hasattr(store, "close"):
                store.close()
        self._stores = {}


def _collate(batch: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([b[0] for b in batch]))
    labels = torch.from_numpy(np.stack([b[1] for b in batch]))
    return images, labels


def _loader(ds: FaceCropDataset, batch_size: int, indices: Sequence[int], num_workers: int) -> torch.utils.data.DataLoader:
    sampler = torch.utils.data.BatchSampler(list(indices), batch_size, drop_last=False)
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=_collate, num_workers=num_workers,
                                       persistent_workers=False)


# ----------------------------------------------------------------------------------------------- preprocessing
def _default_preprocess(spec: Any, images: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    from .backbones import preprocess

    return preprocess(spec, images, device)


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


# ------------------------------------------------------------------------------------------------ train / eval
def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Fine-tuning's AMP: :func:`au_transfer.device.amp_dtype` on CUDA only (``finetune.amp`` is ignored on CPU)."""
    return amp_dtype(amp, device, on_cpu=False, what="config key 'finetune.amp'")


def f1_binary(y: np.ndarray, pred: np.ndarray) -> float:
    """F1 of the positive class (0 when there is no positive prediction nor label)."""
    tp = int(((y == 1) & (pred == 1)).sum())
    fp = int(((y == 0) & (pred == 1)).sum())
    fn = int(((y == 1) & (pred == 0)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _make_optimizer(net: FinetuneNet, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    body_params = [p for p in net.backbone.body.parameters() if p.requires_grad]
    body_ids = {id(p) for p in net.backbone.body.parameters()}
    head_params = [p for p in net.parameters() if p.requires_grad and id(p) not in body_ids]
    groups = [{"params": head_params, "lr": cfg.lr}]
    if body_params:
        groups.append({"params": body_params, "lr": cfg.lr * cfg.body_lr_mult})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


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
    loss = float(loss_fn(logits.reshape(-1, 2), torch.from_numpy(y).reshape(-1)))
    cols = list(range(y.shape[1])) if active is None else list(active)
    f1 = float(np.mean([f1_binary(y[:, j], (probs[:, j] >= 0.5).astype(int)) for j in cols])) if cols else 0.0
    return loss, f1


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.random.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.random.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
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


def _state_dict_cpu(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


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
    loss_fn = nn.CrossEntropyLoss(weight=None)
    weight = class_weight.to(device) if class_weight is not None else None
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"score": (-math.inf,), "epoch": -1, "state": None}
    bad_epochs, start = 0, 0
    ckpt = Path(ckpt_path) if ckpt_path else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
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
            if weight is None:
                loss = loss_fn(logits.reshape(-1, 2), y.reshape(-1))
            else:  # per-AU class weights (multilabel head): mean over AUs of weighted cross-entropy
                losses = [nn.functional.cross_entropy(logits[:, j], y[:, j], weight=weight[j])
                          for j in range(logits.shape[1])]
                loss = torch.stack(losses).mean()
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


# ---------------------------------------------------------------------------------------------------- bundles
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
              "spec": _spec_dict(getattr(net.backbone, "spec", None)), "torch": torch.__version__, **meta}
    with atomic_path(path) as tmp:
        torch.save(bundle, tmp)


def load_bundle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a bundle written by :func:`save_bundle` (raises naming the file when it is not one)."""
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise FinetuneError(f"{path}: cannot read the fine-tuned network: {err}") from err
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise FinetuneError(f"{path}: not a fine-tuned network bundle ({BUNDLE_FORMAT})")
    return bundle


def _create_backbone(name: str, weights: str = "pretrained", **kwargs: Any):
    from .backbones import create_backbone

    return create_backbone(name, weights=weights, **kwargs)


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


# -------------------------------------------------------------------------------------------------- the job
def fingerprint_of(payload: Mapping[str, Any], files: Iterable[str | os.PathLike[str]] = ()) -> str:
    """A hash of the settings and of the input files' size and mtime, so a checkpoint is reused only for the
    same job on the same inputs."""
    items = dict(payload)
    items["_files"] = sorted((str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in files)
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def crop_groups(region: str, aus: Iterable[int], au_region: Mapping[int | str, str] | None = None) -> dict[str, list[int]]:
    """Group AUs by the crop they see in a model region: ``face`` -> one group; ``au_region`` -> Table VI's
    upper / middle / lower groups (one multilabel network per group)."""
    from .config import region_for

    groups: dict[str, list[int]] = {}
    for au in aus:
        groups.setdefault(region_for(region, int(au), au_region), []).append(int(au))
    return groups


def predictions_frame(table: pd.DataFrame, probs: np.ndarray, aus: Sequence[int], which: str) -> pd.DataFrame:
    """Rows ``subject, frame, au, set, score, pred, label`` (one per frame and AU; :mod:`au_transfer.predictions`):
    the score is the probability of "present", pred = score >= 0.5 (an empty score, for a skipped AU: 0)."""
    parts = [prediction_rows(table["subject"].to_numpy(), table["frame"].to_numpy(), au, which,
                             probs[:, j].astype(float), (np.nan_to_num(probs[:, j], nan=0.0) >= 0.5).astype(int),
                             table[f"AU{au}"].to_numpy()) for j, au in enumerate(aus)]
    return pd.concat(parts, ignore_index=True) if parts else empty_predictions()


def run_finetune(*, face_paths: Mapping[str, str | os.PathLike[str]], label_paths: Mapping[str, str | os.PathLike[str]],
                 train_subjects: Sequence[str], val_subjects: Sequence[str], test_subjects: Sequence[str],
                 backbone: str, weights: str, region: str, aus: Sequence[int], threshold: int,
                 backbone_kwargs: Mapping[str, Any] | None = None,
                 cfg: FinetuneConfig | Mapping[str, Any], out_model: str | os.PathLike[str],
                 out_predictions: str | os.PathLike[str], ckpt_path: str | os.PathLike[str] | None = None,
                 au_region: Mapping[int | str, str] | None = None, device: str = "auto", split: str = "",
                 keep_checkpoint: bool = False,
                 create: Callable[..., nn.Module] = _create_backbone, preprocess: Callable = _default_preprocess,
                 open_store: Callable[[Any], Any] = _open_store,
                 on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """One fine-tuning job: train on ``train_subjects`` (balanced), stop early on ``val_subjects`` (balanced),
    write val and test predictions (all valid, labelled frames) and the final network bundle.

    ``region`` is the model's region (``face``, ``upper``, ..., or ``au_region``: the crop of paper Table VI,
    ``au_region`` overriding the map). ``aus`` is one AU (per_au head) or AUs that share one crop (multilabel head).
    """
    cfg = cfg if isinstance(cfg, FinetuneConfig) else FinetuneConfig.from_mapping(cfg)
    aus = [int(a) for a in aus]
    crops = crop_groups(region, aus, au_region)
    if len(crops) != 1:
        raise FinetuneError(f"AUs {aus} see different crops in region {region!r} ({crops}); train one network per crop")
    crop_region = next(iter(crops))
    check_subject_exclusive(train_subjects, val_subjects, test_subjects, split=split, error=FinetuneError)
    dev = resolve_device(device, what="config key 'finetune.device'")
    torch.manual_seed(cfg.seed)
    kwargs = {k: v for k, v in (backbone_kwargs or {}).items() if v is not None}
    net_backbone = create(backbone, weights=weights, **kwargs)
    base_sha = getattr(net_backbone, "weights_sha256", None)
    net = FinetuneNet(net_backbone, len(aus), cfg.classifier_norm)
    reinit_names = reinit_layers(net, cfg.reinit, cfg.seed)
    frozen = freeze_layers(net, cfg.freeze)
    size = int(net.backbone.spec.input_size)

    tables = {w: frame_table(face_paths, label_paths, s, aus, threshold, open_store)
              for w, s in (("train", train_subjects), ("val", val_subjects), ("test", test_subjects))}
    n_pos = {a: int(tables["train"][f"AU{a}"].sum()) for a in aus}
    n_all = len(tables["train"])
    skipped = {a: f"training set has {n_pos[a]} positive and {n_all - n_pos[a]} negative frames"
               for a in aus if n_pos[a] == 0 or n_pos[a] == n_all}
    for a, why in skipped.items():
        log.warning("AU%d skipped for %s_ft-%s-softmax on split %s: %s; its predictions have empty scores and "
                    "pred = 0", a, backbone, region, split, why)
    active = [j for j, a in enumerate(aus) if a not in skipped]
    train_tab = balance(tables["train"], [a for a in aus if a not in skipped], cfg.seed)
    val_tab = balance(tables["val"], [a for a in aus if a not in skipped], cfg.seed + 1) if cfg.balance_val \
        else tables["val"]
    rng = np.random.default_rng(cfg.seed + 2)
    if cfg.max_val_frames and len(val_tab) > cfg.max_val_frames:
        val_tab = val_tab.iloc[np.sort(rng.choice(len(val_tab), cfg.max_val_frames, replace=False))].reset_index(drop=True)
    counts = {w: {f"AU{a}": int(t[f"AU{a}"].sum()) for a in aus} | {"frames": len(t)}
              for w, t in (("train_balanced", train_tab), ("val_selection", val_tab))}
    log.info("split %s, %s-%s (%s crops) AU%s: %s", split, backbone, region, crop_region, aus, counts)
    class_weight = None
    if len(aus) > 1 and len(train_tab):
        pos = train_tab[[f"AU{a}" for a in aus]].to_numpy().mean(axis=0).clip(1e-3, 1 - 1e-3)
        class_weight = torch.tensor(np.stack([0.5 / (1 - pos), 0.5 / pos], axis=1), dtype=torch.float32)

    def dataset(t: pd.DataFrame) -> FaceCropDataset:
        return FaceCropDataset(t, face_paths, crop_region, size, aus, open_store)

    train_ds, val_ds = dataset(train_tab), dataset(val_tab) if len(val_tab) else None
    if val_ds is None:
        log.warning("split %s has no validation frames: no early stopping, the last epoch is kept", split)
    files = [face_paths[s] for s in (*train_subjects, *val_subjects)] + [label_paths[s] for s in (*train_subjects, *val_subjects)]
    fingerprint = fingerprint_of({"cfg": cfg.to_dict(), "backbone": backbone, "weights": weights, "base": base_sha,
                                  "backbone_kwargs": kwargs,
                                  "region": region, "crop": crop_region, "aus": aus, "threshold": threshold,
                                  "train": list(train_subjects), "val": list(val_subjects),
                                  "device": dev.type, "amp": str(_amp_dtype(cfg.amp, dev))}, files)
    if active:
        fit_standardize(net, train_ds, batch_size=cfg.batch_size, device=dev, preprocess=preprocess, seed=cfg.seed,
                        num_workers=cfg.num_workers)
        result = train(net, train_ds, val_ds, cfg, device=dev, ckpt_path=ckpt_path, fingerprint=fingerprint,
                       preprocess=preprocess, frozen=frozen, class_weight=class_weight, active=active,
                       on_epoch_end=on_epoch_end)
    else:  # nothing to learn: keep the re-initialised network (its features stay extractable)
        result = TrainResult([], 0, -1, math.nan, False)

    preds = []
    for which in ("val", "test"):
        t = tables[which]
        if len(t):
            ds = dataset(t)
            probs = predict_proba(net, ds, batch_size=cfg.batch_size, device=dev, preprocess=preprocess,
                                  amp=cfg.amp, num_workers=cfg.num_workers, desc=f"predict {which}")
            ds.close()
            probs[:, [j for j, a in enumerate(aus) if a in skipped]] = np.nan
            preds.append(predictions_frame(t, probs, aus, which))
    pred = pd.concat(preds, ignore_index=True) if preds else empty_predictions()
    train_ds.close()
    if val_ds is not None:
        val_ds.close()
    net.cpu()
    save_bundle(out_model, net, backbone=backbone, weights=weights, backbone_options=kwargs,
                base_weights_sha256=base_sha, region=region,
                crop_region=crop_region, aus=aus, au=aus[0], au_index=0, input_size=size, head=cfg.head,
                config=cfg.to_dict(), seed=cfg.seed, split=split, threshold=threshold,
                subjects={"train": list(train_subjects), "val": list(val_subjects), "test": list(test_subjects)},
                reinitialised=reinit_names, counts=counts, history=result.history, best_epoch=result.best_epoch,
                model=f"{backbone}_ft-{region}-softmax", skipped=skipped,
                status="skipped" if aus[0] in skipped else "ok", reason=skipped.get(aus[0], ""))
    write_csv_atomic(pred, out_predictions)
    if ckpt_path and not keep_checkpoint:
        Path(ckpt_path).unlink(missing_ok=True)
    return result


def unpack_au(group_model: str | os.PathLike[str], group_predictions: str | os.PathLike[str], au: int,
              out_model: str | os.PathLike[str], out_predictions: str | os.PathLike[str]) -> None:
    """From a multilabel network (one crop region's AUs), write the per-AU network bundle and predictions."""
    bundle = load_bundle(group_model)
    au = int(au)
    if au not in bundle["aus"]:
        raise FinetuneError(f"{group_model}: AU{au} is not among the network's AUs {bundle['aus']}")
    skipped = bundle.get("skipped", {})
    bundle = dict(bundle, au=au, au_index=bundle["aus"].index(au), status="skipped" if au in skipped else "ok",
                  reason=skipped.get(au, ""))
    with atomic_path(out_model) as tmp:
        torch.save(bundle, tmp)
    pred = pd.read_csv(group_predictions)
    write_csv_atomic(pred[pred["au"] == au], out_predictions)


def _ft_backbone(model_path: str | os.PathLike[str], create: Callable[..., nn.Module]) -> tuple[nn.Module, dict]:
    """The fine-tuned network's backbone (body + fc = the feature layer), named and fingerprinted as ``{name}_ft``."""
    from dataclasses import is_dataclass, replace

    net, bundle = load_finetuned(model_path, "cpu", create)
    backbone = net.backbone
    name = f"{bundle['backbone']}_ft"
    spec = getattr(backbone, "spec", None)
    if spec is not None and is_dataclass(spec):
        backbone.spec = replace(spec, name=name)
    return backbone, bundle


def ft_features_split(out_paths: Sequence[str | os.PathLike[str]]) -> str | None:
    """The split that fine-tuned feature files belong to, from their path
    ``.../ft_features/{split}/{backbone}_ft/{region}/AU{au}/{subject}.h5``; None for paths outside that layout.
    Raises when the files name different splits."""
    found = {Path(p).parts[-5] for p in out_paths if len(Path(p).parts) >= 6 and Path(p).parts[-6] == "ft_features"}
    if len(found) > 1:
        raise FinetuneError(f"fine-tuned feature files of different splits {sorted(found)} requested from one network")
    return next(iter(found), None)


def check_network_split(model_path: str | os.PathLike[str], bundle: Mapping[str, Any], split: str | None,
                        subjects: Sequence[str]) -> None:
    """A fine-tuned network has seen its split's training (and validation) subjects: its features belong to that
    split only. Raise unless the bundle's recorded ``split`` is ``split`` (when given) and every one of
    ``subjects`` is among the bundle's split subjects."""
    net_split = bundle.get("split")
    sets = bundle.get("subjects") or {}
    known = [s for w in ("train", "val", "test") for s in sets.get(w, [])]
    if split is not None and net_split != split:
        raise FinetuneError(f"{model_path}: the network was fine-tuned on split {net_split!r} (train {sets.get('train')}), "
                            f"but features of split {split!r} were requested from it; a fine-tuned network's "
                            "features belong to its own split only")
    missing = [s for s in subjects if s not in known]
    if missing:
        raise FinetuneError(f"{model_path}: subject(s) {missing} are not in the network's split {net_split!r} "
                            f"(subjects {sets}); requested split {split!r}")


def extract_ft_features_many(model_path: str | os.PathLike[str], face_paths: Mapping[str, str | os.PathLike[str]],
                             out_paths: Sequence[str | os.PathLike[str]], *, subjects: Sequence[str],
                             aus: Sequence[int] | None = None, batch_size: int = 64, num_workers: int = 0,
                             device: str = "auto", create: Callable[..., nn.Module] = _create_backbone,
                             amp: str = "auto", extract: Callable[..., Any] | None = None,
                             split: str | None = None) -> None:
    """Extract the feature layer (fc6) of one fine-tuned network for ``subjects`` into the feature-store layout
    with the feature stage's :func:`au_transfer.features.extract_features`.

    ``out_paths`` lists one file per subject (in order), or, with ``aus`` (a multilabel network serving several
    AUs), one per (AU, subject) AU-major: the features are computed once and copied for the other AUs. The
    backbone is named ``{backbone}_ft`` and ``weights_sha256`` is the sha256 of the fine-tuned weights.

    The network must come from the split of the features (:func:`check_network_split`): ``split``, or the split
    named by ``out_paths`` in the ``results/ft_features/{split}/...`` layout; every subject must be one of the
    network's split.
    """
    import shutil

    n_units = len(aus) if aus else 1
    if len(out_paths) != n_units * len(subjects):
        raise FinetuneError(f"{model_path}: {len(out_paths)} output files for {n_units} AU(s) x {len(subjects)} subjects")
    from_paths = ft_features_split(out_paths)
    if split is not None and from_paths is not None and split != from_paths:
        raise FinetuneError(f"{model_path}: features of split {split!r} requested, but the output files are in the "
                            f"folder of split {from_paths!r}")
    backbone, bundle = _ft_backbone(model_path, create)
    check_network_split(model_path, bundle, split if split is not None else from_paths, subjects)
    if extract is None:
        from .features import extract_features as extract
    for i, subject in enumerate(subjects):
        extract(face_paths[subject], out_paths[i], backbone, bundle["crop_region"], batch_size=batch_size,
                num_workers=num_workers, device=device, amp=amp)
        for k in range(1, n_units):
            target = Path(out_paths[k * len(subjects) + i])
            with atomic_path(target) as tmp:
                shutil.copyfile(out_paths[i], tmp)
