"""One fine-tuning job of the workflow (:func:`run_finetune`: frames, network, training, val/test predictions,
network bundle) and the per-AU unpacking of a multilabel network (:func:`unpack_au`)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import check_subject_exclusive
from ..device import resolve_device
from ..io import atomic_path, write_csv_atomic
from ..labels import Threshold
from ..predictions import empty_predictions, faceless_rows, prediction_rows
from .bundle import load_bundle, save_bundle
from .config import FinetuneConfig, FinetuneError
from .data import FaceCropDataset, _open_store, balance, crop_groups, faceless_table, frame_table
from .net import FinetuneNet, _create_backbone, _default_preprocess, freeze_layers, reinit_layers
from .training import TrainResult, _amp_dtype, fingerprint_of, fit_standardize, predict_proba, train

log = logging.getLogger(__name__)

def predictions_frame(table: pd.DataFrame, probs: np.ndarray, aus: Sequence[int], which: str) -> pd.DataFrame:
    """Rows ``subject, frame, au, set, score, pred, label`` (one per frame and AU; :mod:`au_transfer.predictions`):
    the score is the probability of "present", pred = score >= 0.5 (an empty score, for a skipped AU: 0). Each AU
    has the rows of its known labels only (a multilabel network's frame with an unknown label of this AU is scored
    for its other AUs), so that its frames are those of its per-AU network."""
    parts = []
    for j, au in enumerate(aus):
        label = table[f"AU{au}"].to_numpy()
        k = label >= 0
        parts.append(prediction_rows(table["subject"].to_numpy()[k], table["frame"].to_numpy()[k], au, which,
                                     probs[k, j].astype(float),
                                     (np.nan_to_num(probs[k, j], nan=0.0) >= 0.5).astype(int), label[k]))
    return pd.concat(parts, ignore_index=True) if parts else empty_predictions()


def run_finetune(*, face_paths: Mapping[str, str | os.PathLike[str]], label_paths: Mapping[str, str | os.PathLike[str]],
                 train_subjects: Sequence[str], val_subjects: Sequence[str], test_subjects: Sequence[str],
                 backbone: str, weights: str, region: str, aus: Sequence[int], threshold: Threshold,
                 backbone_kwargs: Mapping[str, Any] | None = None,
                 cfg: FinetuneConfig | Mapping[str, Any], out_model: str | os.PathLike[str],
                 out_predictions: str | os.PathLike[str], ckpt_path: str | os.PathLike[str] | None = None,
                 au_region: Mapping[int | str, str] | None = None, device: str = "auto", split: str = "",
                 keep_checkpoint: bool = False,
                 create: Callable[..., nn.Module] = _create_backbone, preprocess: Callable = _default_preprocess,
                 open_store: Callable[[Any], Any] = _open_store,
                 on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """One fine-tuning job: train on ``train_subjects`` (balanced), stop early on ``val_subjects`` (balanced),
    write val and test predictions (all valid, labelled frames; the labelled test frames without a usable face as
    predicted absent, ``face = 0``) and the final network bundle.

    ``region`` is the model's region (``face``, ``upper``, ..., or ``au_region``: the crop of paper Table VI,
    ``au_region`` overriding the map). ``aus`` is one AU (per_au head) or AUs that share one crop (multilabel head).
    """
    started = time.perf_counter()
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
    n_pos = {a: int((tables["train"][f"AU{a}"] == 1).sum()) for a in aus}
    n_neg = {a: int((tables["train"][f"AU{a}"] == 0).sum()) for a in aus}  # unknown labels (-1) are neither
    skipped = {a: f"training set has {n_pos[a]} positive and {n_neg[a]} negative frames"
               for a in aus if n_pos[a] == 0 or n_neg[a] == 0}
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
    counts = {w: {f"AU{a}": int((t[f"AU{a}"] == 1).sum()) for a in aus} | {"frames": len(t)}
              for w, t in (("train_balanced", train_tab), ("val_selection", val_tab))}
    log.info("split %s, %s-%s (%s crops) AU%s: %s", split, backbone, region, crop_region, aus, counts)
    class_weight = None
    if len(aus) > 1 and len(train_tab):
        y = train_tab[[f"AU{a}" for a in aus]].to_numpy()
        known = (y >= 0).sum(axis=0)  # each AU's share of positives among its known labels
        pos = ((y == 1).sum(axis=0) / np.maximum(known, 1)).clip(1e-3, 1 - 1e-3)
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
    faceless = faceless_table(face_paths, label_paths, test_subjects, aus, threshold, open_store)
    if len(faceless):  # labelled test frames without a usable face: predicted absent (face = 0)
        preds.append(faceless_rows(faceless["subject"].to_numpy(), faceless["frame"].to_numpy(),
                                   faceless["au"].to_numpy(), "test", faceless["label"].to_numpy().astype(int)))
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
    log.info("wrote %s and %s in %.0f s", out_model, out_predictions, time.perf_counter() - started)
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
