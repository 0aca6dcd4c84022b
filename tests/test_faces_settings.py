"""FaceSettings: the `faces` config section as one object, with the schema's keys and defaults (no second table)."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import yaml

from au_transfer.config import ConfigError, schema_defaults
from au_transfer.faces import FaceSettings, Plausibility
from au_transfer.faces.settings import SCHEMA_FILE


def test_fields_are_the_schema_keys_and_defaults_the_schema_defaults():
    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    assert [f.name for f in fields(FaceSettings)] == list(schema["properties"])
    defaults = FaceSettings.from_config()
    assert defaults.to_dict() == schema_defaults("faces")
    assert isinstance(defaults.plausibility, Plausibility)


def test_from_config_fills_defaults_applies_overrides_and_round_trips_through_json():
    s = FaceSettings.from_config({"size": 112, "plausibility": {"jump": 0.7}}, encoding="raw", margin=0.2)
    assert (s.size, s.encoding, s.margin) == (112, "raw", 0.2)
    assert s.plausibility.jump == 0.7
    assert s.plausibility.max_face == schema_defaults("faces")["plausibility"]["max_face"]
    assert s.crop_aspect == schema_defaults("faces")["crop_aspect"]
    assert FaceSettings.from_config(json.loads(json.dumps(s.to_dict()))) == s
    assert FaceSettings.from_config(s) == s
    assert s.replace(size=64).size == 64 and s.replace(size=64).encoding == "raw"
    assert isinstance(FaceSettings.from_config(margin=0).margin, float)


def test_wrong_keys_and_values_name_the_key():
    with pytest.raises(ConfigError, match="faces"):
        FaceSettings.from_config({"sizes": 112})
    with pytest.raises(ConfigError, match="faces.encoding"):
        FaceSettings.from_config(encoding="webp")
    with pytest.raises(ConfigError, match="faces.plausibility"):
        FaceSettings.from_config(plausibility={"jumps": 1})


@pytest.mark.parametrize("landmarks,fallback,detector", [
    ("disfa", "dlib", "hog"), ("disfa", "dlib_cnn", "cnn"), ("disfa", "none", "hog"), ("dlib", "none", "hog"),
    ("dlib_cnn", "dlib", "cnn"),
])
def test_dlib_detector(landmarks, fallback, detector):
    assert FaceSettings.from_config(landmarks=landmarks, fallback=fallback).dlib_detector == detector
