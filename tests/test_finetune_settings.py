"""One set of fine-tuning defaults: the schema's, read by the library; the paper configs write every training setting
out with its source; docs/finetune.md's settings table says what the schema and the configs say."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from au_transfer.config import schema_defaults
from au_transfer.finetune import FinetuneConfig

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = [ROOT / "config" / "disfa_paper.yaml", ROOT / "config" / "disfa_3fold.yaml"]
TRAINING_KEYS = [f.name for f in fields(FinetuneConfig)]


def test_library_defaults_are_the_schema_defaults():
    schema = schema_defaults("finetune")
    lib = FinetuneConfig().to_dict()
    assert set(lib) <= set(schema)
    for key, value in lib.items():
        assert value == schema[key], f"finetune.{key}: library default {value!r}, schema default {schema[key]!r}"


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.name)
def test_paper_configs_state_every_training_setting_with_its_source(path):
    section = yaml.safe_load(path.read_text())["finetune"]
    missing = [k for k in TRAINING_KEYS if k not in section]
    assert not missing, f"{path.name}: finetune keys left to the defaults: {missing}"
    block = path.read_text().split("\nfinetune:", 1)[1].split("\n\n", 1)[0]
    for line in block.splitlines()[1:]:
        key = line.strip().split(":", 1)[0]
        if key in TRAINING_KEYS:
            assert re.search(r"#\s*\((ours|[IVX]+(-[A-E])?)", line), f"{path.name}: finetune.{key} has no source"


def _docs_table() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "finetune.md").read_text()
    table = text.split("## Settings: defaults, the demo, the paper", 1)[1]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("key", "---"):
            rows[cells[0]] = cells[1:4]
    return rows


def _value(cell: str):
    m = re.match(r"`([^`]*)`", cell)
    assert m, f"docs/finetune.md: cell {cell!r} has no `value`"
    return yaml.safe_load(m.group(1))


def test_docs_settings_table_matches_schema_and_configs():
    rows = _docs_table()
    assert {"head", "classifier_norm", "epochs", "batch_size"} <= set(rows)
    schema = schema_defaults("finetune")
    demo = yaml.safe_load((ROOT / "config.yaml").read_text())["finetune"]
    paper = yaml.safe_load(PAPER_CONFIGS[0].read_text())["finetune"]
    for key, (default, demo_cell, paper_cell) in rows.items():
        assert _value(default) == schema[key], f"docs default of {key}"
        assert _value(demo_cell) == demo.get(key, schema[key]), f"docs demo value of {key}"
        assert _value(paper_cell) == paper.get(key, schema[key]), f"docs paper value of {key}"
