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


# --- classifiers (LDA, SVM, LSTM, metrics): model ids and feature inputs; used by classifiers.smk and others
_EXTRA_MODEL_IDS = []


def register_model_ids(func):
    """Register func(split) -> model ids whose per-AU predictions another stage writes (e.g. fine-tuned softmax
    models, ensembles); they get merged predictions, metrics and rows in results/metrics/summary.csv."""
    _EXTRA_MODEL_IDS.append(func)


def classifier_backbones():
    """Backbones of the frozen-feature frame models (classifiers.backbones, or every features backbone)."""
    b = config["classifiers"].get("backbones")
    return list(config["features"].get("backbones", []) if b is None else b)


def lstm_backbones():
    """Backbones of the LSTM models (classifiers.lstm.backbones, or the first frame-model backbone)."""
    lstm = config["classifiers"]["lstm"]
    if not lstm["enabled"]:
        return []
    b = lstm.get("backbones")
    return list(b) if b is not None else classifier_backbones()[:1]


def ft_regions():
    r = config["classifiers"].get("ft_regions")
    return list(r if r is not None else config["finetune"].get("regions", config["classifiers"]["regions"]))


def classifier_model_ids():
    """Model ids fitted by the classifiers stage (LDA/SVM on frozen and fine-tuned features, LSTM)."""
    clf = config["classifiers"]
    ids = [model_id(b, r, c) for b in classifier_backbones() for r in clf["regions"] for c in clf["frame"]]
    ids += [model_id(f"{b}_ft", r, c) for b in clf["ft_backbones"] for r in ft_regions() for c in clf["frame"]]
    ids += [model_id(b, r, "lstm") for b in lstm_backbones() for r in clf["lstm"]["regions"]]
    return list(dict.fromkeys(ids))


def model_ids(split):
    """Every model with predictions on a split: the classifiers' own and those registered by other stages."""
    ids = classifier_model_ids()
    for func in _EXTRA_MODEL_IDS:
        ids += [m for m in func(split) if m not in ids]
    return ids


def crop_region_of(region, au):
    """The crop region a model region reads for one AU (au_region -> Table VI)."""
    return au_region_of(au) if region == "au_region" else region


def feature_file(backbone, region, subject, split=None, au=None):
    """Feature file of one subject: frozen features by crop region, or fine-tuned (`*_ft`) ones per split and AU
    (results/ft_features/{split}/{backbone}_ft/{region}/AU{au}/, region as in the model id)."""
    if backbone.endswith("_ft"):
        if split is None or au is None:
            raise ConfigError(f"fine-tuned backbone {backbone}: features are per split and AU")
        return f"results/ft_features/{split}/{backbone}/{region}/AU{au}/{subject}.h5"
    crop = crop_region_of(region, int(au)) if region == "au_region" else region
    return f"results/features/{backbone}/{crop}/{subject}.h5"


def classifier_inputs(wildcards):
    """Inputs of one (split, model, AU) fit: feature and label files of every subject of the split, in order."""
    subjects = SPLITS[wildcards.split].all
    return {
        "features": [feature_file(wildcards.backbone, wildcards.region, s, wildcards.split, wildcards.au)
                     for s in subjects],
        "labels": [f"results/labels/{s}.csv" for s in subjects],
    }


def split_sets(split):
    sp = SPLITS[split]
    return {"train": list(sp.train), "val": list(sp.val), "test": list(sp.test)}

