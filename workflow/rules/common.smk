# Shared set-up: config validation (schemas with defaults), splits, subjects, and the target registry.
# Each stage file registers its final outputs with register_targets(); `rule all` asks for all of them.

import sys
from pathlib import Path

# The package lives in src/; make it importable even when it is not pip-installed (e.g. --use-conda envs).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from au_transfer import AU_REGION, CROP_REGIONS, DISFA_AUS  # noqa: E402
from au_transfer.config import (  # noqa: E402
    ConfigError,
    check_aus,
    check_splits,
    validate_config,
    model_id,
    parse_model_id,
    region_for,
    split_subjects,
)

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"

# Validate the top level and every section against its schema (workflow/schemas/<section>.schema.yaml), filling
# defaults; a wrong key or value stops the run before any job, with a message that names the key.
validate_config(config, str(SCHEMAS))
SPLITS = check_splits(config["splits"])
AUS = list(check_aus(config["data"]["aus"]))
SUBJECTS = split_subjects(SPLITS)
DATA_ROOT = config["data_root"]


wildcard_constraints:
    subject=r"SN\d{3}",
    split="|".join(SPLITS),
    region=r"face|upper|middle|lower|au_region",
    crop_region=r"face|upper|middle|lower",
    au=r"\d+",
    backbone=r"[A-Za-z0-9_.]+",
    classifier=r"[a-z0-9_]+",


# ---------------------------------------------------------------------------------------------------- targets
_TARGETS = {}


def register_targets(stage, func):
    """Register a function returning the final outputs of a stage; `rule all` requests them all."""
    _TARGETS[stage] = func


def all_targets(wildcards):
    out = []
    for stage, func in _TARGETS.items():
        out.extend(func())
    return out


def au_region_of(au):
    """Crop region of one AU for `au_region` models (paper Table VI, overridable in config regions.au_region)."""
    return region_for("au_region", int(au), config["regions"].get("au_region"))


# --- cluster: SLURM profile, conda envs, local rules (owner: cluster/infrastructure; docs/cluster.md)
# envs/au_transfer.yaml installs this project with `pip install -e ${AU_TRANSFER_ROOT}` (Snakemake copies env files
# into .snakemake/conda/, so a relative path cannot name the project): point it at this checkout.
import os  # noqa: E402

os.environ["AU_TRANSFER_ROOT"] = str(Path(workflow.basedir).resolve())
