"""Fine-tuned CNNs (paper V) as AU models: they read region crops."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .base import AUModel, AUModelError, Needs, _two_classes, register_kind


class _ArrayCrops:
    """In-memory crops and labels, with the dataset interface fine-tuning's loops use."""

    def __init__(self, crops: np.ndarray, labels: np.ndarray) -> None:
        self.crops, self.labels = crops, labels.astype(np.int64).reshape(len(labels), -1)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.crops[i], self.labels[i]

    def close(self) -> None:
        pass


@register_kind("softmax")
class FinetunedModel(AUModel):
    """A fine-tuned CNN for one AU (paper V): reads region crops, outputs the probability of "present"."""

    kind = "finetuned"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, au: int = 0, model_id: str = "",
                 backbone: str = "", weights: str = "random", crop_region: str = "face",
                 cfg: Mapping[str, Any] | None = None, device: str = "cpu", batch_size: int = 64,
                 create: Callable[..., Any] | None = None, **_ignored: Any) -> None:
        super().__init__(au=au, model_id=model_id)
        self.path = None if path is None else str(path)
        self.backbone, self.weights, self.crop_region = backbone, weights, crop_region
        self.cfg, self.device, self.batch_size, self.create = dict(cfg or {}), device, batch_size, create
        self.clf: Any = None
        if path is not None:
            from ..finetune import FinetunedClassifier

            kw = {"create": create} if create is not None else {}
            self.clf = FinetunedClassifier(path, device=device, batch_size=batch_size, **kw)
            self.au, self.crop_region = self.clf.au, self.clf.crop_region

    @property
    def needs(self) -> Needs:
        size = int(self.clf.input_size) if self.clf is not None else 0
        return Needs("crops", self.backbone or (self.clf.bundle["backbone"] if self.clf else ""), self.crop_region,
                     size=size, network=self.path or "")

    def fit(self, X, y, X_val=None, y_val=None) -> FinetunedModel:
        import tempfile

        import torch

        from .. import finetune as ft
        from ..backbones import create_backbone, preprocess

        cfg = ft.FinetuneConfig.from_mapping(self.cfg)
        create = self.create or create_backbone
        torch.manual_seed(cfg.seed)
        net = ft.FinetuneNet(create(self.backbone, weights=self.weights), 1, cfg.classifier_norm)
        ft.reinit_layers(net, cfg.reinit, cfg.seed)
        frozen = ft.freeze_layers(net, cfg.freeze)
        dev = torch.device(self.device)
        prep = lambda spec, images, device: preprocess(spec, images, device)  # noqa: E731
        train_ds = _ArrayCrops(np.concatenate(list(X)), np.concatenate(list(y)))
        val_ds = _ArrayCrops(np.concatenate(list(X_val)), np.concatenate(list(y_val))) if X_val else None
        n_pos, n_neg = _two_classes(y)
        status = "ok" if n_pos and n_neg else "skipped"
        if status == "ok":
            ft.fit_standardize(net, train_ds, batch_size=cfg.batch_size, device=dev, preprocess=prep, seed=cfg.seed)
            result = ft.train(net, train_ds, val_ds, cfg, device=dev, preprocess=prep, frozen=frozen)
            history, best = result.history, result.best_epoch
        else:
            history, best = [], -1
        size = int(net.backbone.spec.input_size)
        fd, tmp = tempfile.mkstemp(suffix=".pt")
        os.close(fd)
        try:  # the bundle format of the workflow's networks, read back into the predictor-side wrapper
            ft.save_bundle(tmp, net.cpu(), backbone=self.backbone, weights=self.weights, region=self.crop_region,
                           crop_region=self.crop_region, aus=[self.au], au=self.au, au_index=0, input_size=size,
                           config=cfg.to_dict(), seed=cfg.seed, history=history, best_epoch=best, status=status,
                           model=self.model_id)
            kw = {"create": self.create} if self.create is not None else {}
            self.clf = ft.FinetunedClassifier(tmp, device=self.device, batch_size=self.batch_size, **kw)
        finally:
            Path(tmp).unlink(missing_ok=True)
        self.path = None
        return self

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.clf is None:
            raise AUModelError(f"{self._where()}: not fitted")
        X = np.asarray(X)
        size = self.needs.size
        if X.ndim != 4 or X.shape[1:] != (size, size, 3) or X.dtype != np.uint8:
            raise AUModelError(f"{self._where()}: got crops of shape {X.shape} {X.dtype}, expected "
                               f"(frames, {size}, {size}, 3) uint8 {self.crop_region} crops")
        s = np.asarray(self.clf.decision_function(X), dtype=np.float64)
        return s, (np.nan_to_num(s, nan=0.0) >= 0.5).astype(np.int8)

    def save(self, path: str | os.PathLike[str]) -> None:
        import torch

        from ..io import atomic_path

        if self.clf is None:
            raise AUModelError(f"{self._where()}: not fitted")
        with atomic_path(path) as tmp:
            torch.save(self.clf.bundle, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> FinetunedModel:
        return cls(path, **kwargs)

