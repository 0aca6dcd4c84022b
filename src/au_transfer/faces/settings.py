"""The settings of the faces stage: the ``faces`` config section as one frozen object, :class:`FaceSettings`.

Its fields are the section's own keys and its defaults are the schema's (``au_transfer/schemas/faces.schema.yaml``,
the one source of defaults): :meth:`FaceSettings.from_config` validates a section (or a part of one) against that
schema, fills in what is missing and returns the object; :meth:`FaceSettings.to_dict` gives the section back. The
landmarks job, the faces job, the per-frame pipeline (:func:`au_transfer.faces.pipeline.process_frame`) and the
predictor all take one; the predictor's manifest (``results/models/{split}/predictor.json``) stores ``to_dict()``
and reads it back with ``from_config``, so a new video is aligned, encoded and cut exactly as the run's faces were.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..config import SCHEMA_DIR, validate_section
from .landmarks import DlibLandmarker, Plausibility

SCHEMA_FILE = SCHEMA_DIR / "faces.schema.yaml"

_CAST = {"int": int, "float": float, "str": str}


@dataclass(frozen=True)
class FaceSettings:
    """The ``faces`` config section (``faces.schema.yaml`` documents every key and its default).

    Build it with :meth:`from_config` (defaults filled from the schema, values checked against it), never by
    listing defaults elsewhere.
    """

    # the landmarks job (results/landmarks)
    landmarks: str
    fallback: str
    dlib_upsample: int
    dlib_detect_width: int
    min_confidence: float
    plausibility: Plausibility
    # the faces job (results/faces) and the predictor
    size: int
    margin: float
    min_image_std: float
    region_pad: float
    region_forehead: float
    crop_aspect: str
    encoding: str
    compression: str
    compression_level: int
    jpeg_quality: int
    # the QC sheet (results/qc)
    qc_samples: int
    qc_columns: int
    qc_tile: int

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | FaceSettings | None = None, **overrides: Any) -> FaceSettings:
        """Settings from a ``faces`` section (missing keys take the schema's defaults), with ``overrides`` on top.

        Unknown keys and wrong values raise :class:`au_transfer.config.ConfigError` naming the key
        (``faces.encoding``), as a wrong config does before a workflow starts.
        """
        data = section.to_dict() if isinstance(section, FaceSettings) else copy.deepcopy(dict(section or {}))
        data.update(copy.deepcopy(overrides))
        if isinstance(data.get("plausibility"), Plausibility):
            data["plausibility"] = asdict(data["plausibility"])
        validate_section(data, str(SCHEMA_FILE), "faces")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "plausibility":
                values[f.name] = Plausibility(**{k: float(v) for k, v in data[f.name].items()})
            else:
                values[f.name] = _CAST[str(f.type)](data[f.name])
        return cls(**values)

    def replace(self, **overrides: Any) -> FaceSettings:
        """A copy with some keys changed (validated like :meth:`from_config`)."""
        return FaceSettings.from_config(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The ``faces`` section these settings stand for (JSON-serialisable; ``from_config`` reads it back)."""
        return asdict(self)

    @property
    def dlib_detector(self) -> str:
        """``hog`` or ``cnn``: the dlib detector of frames that dlib detects (``landmarks`` when it names a dlib
        detector, else the DISFA fallback; ``hog`` when that is ``none``, for inputs without landmark files)."""
        name = self.landmarks if self.landmarks != "disfa" else self.fallback
        return "cnn" if name == "dlib_cnn" else "hog"

    def landmarker(self) -> DlibLandmarker:
        """The dlib landmarker of these settings (:attr:`dlib_detector`, upsampling, detection width, confidence)."""
        return DlibLandmarker(self.dlib_detector, upsample=self.dlib_upsample,
                              detect_width=self.dlib_detect_width or None, min_confidence=self.min_confidence)


__all__ = ["FaceSettings", "SCHEMA_FILE"]
