"""Fine-tuning data: the valid, labelled frames of a set of subjects (:func:`frame_table`; labels read through
:mod:`au_transfer.labels`), their balancing (:func:`balance`, paper IV-A), the crop that AUs share
(:func:`crop_groups`) and the face-crop dataset (:class:`FaceCropDataset`) with its loader."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import labels as labels_mod
from ..labels import balance_indices, faceless_frames
from .config import FinetuneError

log = logging.getLogger(__name__)

def read_label_table(path: str | os.PathLike[str], aus: Sequence[int], threshold: int,
                     subject: str | None = None) -> pd.DataFrame:
    """Read ``results/labels/{subject}.csv`` as ``frame`` + 0/1 occurrence columns ``AU{n}`` (intensity >= threshold):
    :func:`au_transfer.labels.read_label_table`, raising :class:`FinetuneError`."""
    return labels_mod.read_label_table(path, aus, threshold, subject=subject, error=FinetuneError)


def _open_store(path: str | os.PathLike[str]):
    from ..faces.store import FaceStore

    return FaceStore(path)


def frame_table(face_paths: Mapping[str, str | os.PathLike[str]], label_paths: Mapping[str, str | os.PathLike[str]],
                subjects: Iterable[str], aus: Sequence[int], threshold: labels_mod.Threshold,
                open_store: Callable[[Any], Any] = _open_store) -> pd.DataFrame:
    """Valid, labelled frames of ``subjects``: columns ``subject``, ``row`` (face-store index), ``frame``, ``AU{n}``
    (1 present, 0 absent, -1 unknown). A frame is kept when at least one of ``aus`` is known: a multilabel network
    masks each unknown label in its loss (:func:`au_transfer.finetune.training.masked_loss`) and scores each AU on
    its own known frames, so that each AU trains and is tested on the frames its per-AU network would see.
    ``threshold``: one number, or ``{recording: threshold}`` (:func:`au_transfer.labels.threshold_for`)."""
    parts = []
    for subject in subjects:
        if subject not in face_paths or subject not in label_paths:
            raise FinetuneError(f"subject {subject}: no face store or label table given")
        labels = read_label_table(label_paths[subject], aus,
                                  labels_mod.threshold_for(threshold, subject, error=FinetuneError), subject)
        with open_store(face_paths[subject]) as store:
            frames = np.asarray(store.frames).astype(int)
            valid = np.asarray(store.valid).astype(bool)
        rows = pd.DataFrame({"row": np.arange(len(frames)), "frame": frames})[valid]
        merged = rows.merge(labels, on="frame", how="inner")
        known = merged[[f"AU{a}" for a in aus]].to_numpy() >= 0
        if not known.all():  # unknown labels stay -1 (masked per AU); a frame with no known label is left out
            log.info("subject %s: %d valid frames left out (every label of AU(s) %s unknown), %d unknown labels "
                     "of kept frames masked", subject, int((~known.any(axis=1)).sum()), list(aus),
                     int((~known[known.any(axis=1)]).sum()))
            merged = merged[known.any(axis=1)]
        if merged.empty:
            log.warning("subject %s: no frame is both valid in %s and labelled in %s", subject,
                        face_paths[subject], label_paths[subject])
        merged.insert(0, "subject", subject)
        parts.append(merged)
    if not parts:
        return pd.DataFrame(columns=["subject", "row", "frame", *[f"AU{a}" for a in aus]])
    return pd.concat(parts, ignore_index=True)


def faceless_table(face_paths: Mapping[str, str | os.PathLike[str]],
                   label_paths: Mapping[str, str | os.PathLike[str]], subjects: Iterable[str], aus: Sequence[int],
                   threshold: int, open_store: Callable[[Any], Any] = _open_store) -> pd.DataFrame:
    """The labelled frames of ``subjects`` without a usable face (invalid in the face store, or beyond it), per AU
    whose label is known: columns ``subject, frame, au, label``. The test predictions hold them as predicted
    absent (:func:`au_transfer.predictions.faceless_rows`); training and validation never see them."""
    parts = []
    for subject in subjects:
        labels = read_label_table(label_paths[subject], aus, threshold, subject)
        with open_store(face_paths[subject]) as store:
            frames = np.asarray(store.frames).astype(int)
            valid = np.asarray(store.valid).astype(bool)
        for a in aus:
            known = labels[labels[f"AU{a}"] >= 0]
            f = faceless_frames(subject, frames, valid, pd.Series(known[f"AU{a}"].to_numpy(),
                                                                  index=known["frame"].to_numpy()))
            parts.append(f.rename(columns={"y": "label"}).assign(au=int(a))[["subject", "frame", "au", "label"]])
    parts = [p for p in parts if len(p)]
    return (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame(columns=["subject", "frame", "au", "label"]))


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


def crop_groups(region: str, aus: Iterable[int], au_region: Mapping[int | str, str] | None = None) -> dict[str, list[int]]:
    """Group AUs by the crop they see in a model region: ``face`` -> one group; ``au_region`` -> Table VI's
    upper / middle / lower groups (one multilabel network per group)."""
    from ..config import region_for

    groups: dict[str, list[int]] = {}
    for au in aus:
        groups.setdefault(region_for(region, int(au), au_region), []).append(int(au))
    return groups


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
