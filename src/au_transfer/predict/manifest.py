"""``predictor.json``: the face and backbone settings of a run that ``au-transfer predict`` reuses, written by the
workflow's ``predictor_manifest`` rule beside a split's models (:meth:`au_transfer.layout.Layout.manifest`)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..faces.settings import FaceSettings
from ..io import atomic_path

log = logging.getLogger(__name__)

MANIFEST = "predictor.json"
#: Face keys of manifests written before the manifest stored the ``faces`` section itself, and the section keys
#: they stand for (``detector`` hog | cnn is ``landmarks`` dlib | dlib_cnn). Read by :func:`face_settings` only.
LEGACY_FACE_KEYS: dict[str, str] = {"detector": "landmarks", "upsample": "dlib_upsample",
                                    "detect_width": "dlib_detect_width", "aspect": "crop_aspect"}


class PredictError(ValueError):
    """The predictor cannot run: a model file is missing or does not fit; the message names it."""


# --------------------------------------------------------------------------------------------- the manifest
def write_manifest(path: str | os.PathLike[str], *, split: str, aus: Sequence[int], faces: Mapping[str, Any],
                   backbones: Mapping[str, Any], au_region: Mapping[Any, str] | None = None,
                   threshold: int | None = None, corpus: str = "",
                   val_in_sample: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write ``predictor.json``: the face and backbone settings a predictor needs to reproduce the run's inputs.

    ``faces`` is the run's ``faces`` section; the manifest stores it whole, as
    :meth:`~au_transfer.faces.settings.FaceSettings.to_dict` (schema defaults filled in). ``corpus`` names the
    data the models were trained on (the report's label, e.g. ``synthetic demo corpus``). ``val_in_sample``: the
    models whose validation predictions are in sample, with the reason (:func:`au_transfer.plan.validation_in_sample`),
    which the default model never is.
    """
    manifest = {"split": split, "aus": [int(a) for a in aus], "faces": FaceSettings.from_config(faces).to_dict(),
                "corpus": corpus, "val_in_sample": dict(val_in_sample or {}),
                "backbones": {k: dict(v or {}) for k, v in backbones.items()},
                "au_region": {str(k): v for k, v in (au_region or {}).items()}, "threshold": threshold}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def read_manifest(models_dir: Path) -> dict[str, Any]:
    """``predictor.json`` of a models folder, or defaults (with a warning) when the folder has none."""
    path = models_dir / MANIFEST
    if not path.is_file():
        log.warning("%s not found: using the default face settings (faces schema) and pretrained backbone weights",
                    path)
        return {"faces": {}, "backbones": {}, "au_region": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PredictError(f"{path}: not valid JSON ({exc}: empty or cut off?); delete it and rerun the workflow job "
                           f"that writes it (snakemake {path})") from exc


def face_settings(manifest: Mapping[str, Any], path: str | os.PathLike[str] = MANIFEST) -> FaceSettings:
    """The run's :class:`~au_transfer.faces.settings.FaceSettings` from a manifest (``path`` for messages).

    A manifest of an older version (face keys :data:`LEGACY_FACE_KEYS`) is read with those keys mapped, with a
    warning to rerun the ``predictor_manifest`` rule; anything else the ``faces`` schema rejects is an error.
    """
    face = dict(manifest.get("faces") or {})
    legacy = sorted(set(face) & set(LEGACY_FACE_KEYS))
    if legacy:
        log.warning("%s has the face keys of an older version (%s); read with their current names. Rerun the "
                    "predictor_manifest rule (snakemake --forcerun predictor_manifest) to update it", path,
                    ", ".join(legacy))
        for key in legacy:
            value = face.pop(key)
            face[LEGACY_FACE_KEYS[key]] = ("dlib_cnn" if value == "cnn" else "dlib") if key == "detector" else value
    try:
        return FaceSettings.from_config(face)
    except ConfigError as exc:
        raise PredictError(f"{path}: the face settings do not fit this version ({exc}); rerun the "
                           "predictor_manifest rule (snakemake --forcerun predictor_manifest)") from exc
