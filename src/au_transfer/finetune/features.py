"""Fine-tuned features (paper VII-B): the feature layer (fc6) of a fine-tuned network, extracted by the feature
stage (:func:`au_transfer.features.extract_features`) into the feature-store layout. A fine-tuned network has seen
its split's training subjects, so its features are refused for any other split (:func:`check_network_split`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..io import atomic_path
from .bundle import load_finetuned
from .config import FinetuneError
from .net import _create_backbone


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
    from ..layout import Layout

    found = {s for s in map(Layout.split_of_ft_features, out_paths) if s is not None}
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
        from ..features import extract_features as extract
    for i, subject in enumerate(subjects):
        extract(face_paths[subject], out_paths[i], backbone, bundle["crop_region"], batch_size=batch_size,
                num_workers=num_workers, device=device, amp=amp)
        for k in range(1, n_units):
            target = Path(out_paths[k * len(subjects) + i])
            with atomic_path(target) as tmp:
                shutil.copyfile(out_paths[i], tmp)
