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

from au_transfer.layout import Layout  # noqa: E402

LAYOUT = Layout()  # every results path (au_transfer.layout)

# Validate the top level and every section against its schema (src/au_transfer/schemas/<section>.schema.yaml), filling
# defaults; a wrong key or value stops the run before any job, with a message that names the key.
validate_config(config)
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


def feature_file(backbone, region, subject, split, au):
    """Feature file that model {backbone}-{region}-... reads for one subject and AU: frozen features by crop region
    (the split's mean-image features for a mean-image backbone), or a fine-tuned network's (`*_ft`, per split and
    AU). The one path function of every feature consumer (au_transfer.layout.Layout.model_features)."""
    return LAYOUT.model_features(backbone, region, subject, split=split, au=au, crop_region=crop_region_of,
                                 mean_image=uses_mean_image)


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


def classifier_fit_params(classifier):
    """Params of a frame-classifier rule: those shared by the fits plus the options of that classifier only
    (so that changing an SVM key reruns SVM fits only)."""
    clf = config["classifiers"]
    return dict(
        sets=lambda wc: split_sets(wc.split),
        crop_region=lambda wc: crop_region_of(wc.region, wc.au),
        threshold=config["data"]["threshold"],
        seed=clf["seed"],
        balance=clf["balance"],
        classifier=classifier,
        options=clf[classifier],
    )


def metrics_files():
    """Per-model metrics of every split, the always-present baseline first."""
    out = []
    for split in SPLITS:
        ids = model_ids(split)
        if ids:
            out.append(f"results/metrics/{split}/always_present.csv")
        out += [f"results/metrics/{split}/{m}.csv" for m in ids]
    return out


# --- cluster: SLURM profile, conda envs, local rules (owner: cluster/infrastructure; docs/cluster.md)
# envs/au_transfer.yaml installs this project with `pip install -e ${AU_TRANSFER_ROOT}` (Snakemake copies env files
# into .snakemake/conda/, so a relative path cannot name the project): point it at this checkout.
import os  # noqa: E402

os.environ.update(AU_TRANSFER_ROOT=str(Path(workflow.basedir).resolve()))  # set (not read): no envvars:

# Cheap rules (seconds of work) run on the submit host instead of waiting in a SLURM queue; rules that exist only
# under a config condition are named under the same condition (Snakemake rejects unknown names here).
localrules:
    labels,
    faces_qc,
    merge_predictions,
    always_present,
    metrics,
    summary,
    ensemble,
    paper_report,


if config["data"]["demo"]["enabled"]:

    localrules:
        demo_subject,


if config["finetune"]["head"] != "per_au":

    localrules:
        finetune_unpack,


# --- ensembles and report (owner: ensembles/report; helpers of ensemble.smk and report.smk)
def ensemble_ids(split=None):
    """Model ids (ens-{name}) of every configured ensemble (the same on every split)."""
    from au_transfer.ensemble import ensemble_id

    return [ensemble_id(name) for name in config["ensembles"]]


def report_corpus():
    """The label of our corpus in the report: report.corpus, or "synthetic demo corpus" / "DISFA"."""
    if config["report"].get("corpus"):
        return config["report"]["corpus"]
    return "synthetic demo corpus" if config["data"]["demo"]["enabled"] else "DISFA"


def report_paper_ensembles():
    """Ensembles shown as the paper's ensembles 1-3: report.paper_ensembles, or the first three majority ones."""
    names = config["report"].get("paper_ensembles")
    if names is None:
        names = [n for n, e in config["ensembles"].items() if e["method"] == "majority"][:3]
    unknown = [n for n in names if n not in config["ensembles"]]
    if unknown:
        raise ConfigError(f"report.paper_ensembles: {unknown} are not in the ensembles section")
    return list(names)


def report_outputs(report_dir="results/report"):
    """Every file the report rule writes; PNG figures and CSV tables are marked for `snakemake --report`."""
    from au_transfer.report import FIGURES, FORMATS, TABLES

    out = {}
    for name in FIGURES:
        for fmt in FORMATS:
            path = f"{report_dir}/{name}.{fmt}"
            png = fmt == "png"
            out[f"{name}_{fmt}"] = report(path, caption=f"../report/{name}.rst", category="Figures") if png else path
    for name in TABLES:
        out[f"{name}_csv"] = report(f"{report_dir}/{name}.csv", caption=f"../report/{name}.rst", category="Tables")
        out[f"{name}_md"] = f"{report_dir}/{name}.md"
    out["html"] = f"{report_dir}/report.html"
    out["index"] = f"{report_dir}/index.md"
    return out


# --- corpus (DISFA reader, demo corpus, labels): where each subject's files are; used by corpus.smk and faces.smk
from au_transfer.datasets import disfa as _disfa  # noqa: E402


def demo_video_file(subject):
    """Canonical video path of a subject under data_root (where the demo corpus writes it)."""
    return str(_disfa.canonical_video_path(DATA_ROOT, subject, config["data"]["camera"]))


def video_file(subject):
    """Video of a subject: the demo corpus's path, or the real one found in data_root (Videos_/Video_ prefix,
    any case of comp); when it is not there, the canonical path, so that Snakemake reports it as missing."""
    if config["data"]["demo"]["enabled"]:
        return demo_video_file(subject)
    try:
        return str(_disfa.video_path(DATA_ROOT, subject, config["data"]["camera"]))
    except _disfa.DisfaError:
        return demo_video_file(subject)


def label_dir(subject):
    """Folder of a subject's AU label files: data_root/ActionUnit_Labels/{subject}."""
    return f"{DATA_ROOT}/ActionUnit_Labels/{subject}"


def landmark_dir(subject):
    """Folder of a subject's landmark files: data_root/Landmark_Points/{subject} (read with
    au_transfer.datasets.disfa.landmark_files(data_root, subject))."""
    return f"{DATA_ROOT}/Landmark_Points/{subject}"


# --- features (backbones, feature store): options per backbone, inputs and targets; used by features.smk
import os  # noqa: E402,F811
def backbone_options(backbone):
    """The backbones.<name> entry with its defaults (weights pretrained, no key map, seed 0, no mean image)."""
    opts = {"weights": "pretrained", "key_map": None, "seed": 0, "mean_image": False}
    opts.update(config["backbones"].get(backbone) or {})
    return opts


def uses_mean_image(backbone):
    """Whether a backbone subtracts each split's training mean image (its features are then per split)."""
    return bool(backbone_options(backbone)["mean_image"])


def features_inputs(wildcards):
    """Face store of the subject, plus a local weights file so that replacing it reruns the extraction."""
    out = {"faces": f"results/faces/{wildcards.subject}.h5"}
    weights = backbone_options(wildcards.backbone)["weights"]
    if weights not in ("pretrained", "random"):
        out["weights"] = os.path.expanduser(weights)
    return out


def frozen_feature_file(backbone, crop_region, subject, split=None):
    """Frozen-feature file of one subject and crop region (split-specific for mean-image backbones)."""
    return LAYOUT.frozen_features(backbone, crop_region, subject, split=split, mean_image=uses_mean_image(backbone))


def feature_targets():
    """Every feature file of features.backbones x features.regions x subjects (per split where needed)."""
    feat = config["features"]
    out = []
    for b in feat["backbones"]:
        for r in feat["regions"]:
            if uses_mean_image(b):
                out += [frozen_feature_file(b, r, s, sp) for sp, split in SPLITS.items() for s in split.all]
            else:
                out += [frozen_feature_file(b, r, s) for s in SUBJECTS]
    return out


# --- faces (landmarks, aligned faces, QC): inputs of the landmarks rule; used by faces.smk
def faces_landmark_inputs(wildcards):
    """Video, label folder and (with faces.landmarks = disfa) the subject's DISFA landmark folder."""
    inp = {"video": video_file(wildcards.subject), "labels": label_dir(wildcards.subject)}
    if config["faces"]["landmarks"] == "disfa":
        inp["landmarks"] = landmark_dir(wildcards.subject)
    return inp


# --- finetune (fine-tuned CNNs, their features, regions): helpers of finetune.smk
FT = config["finetune"]
FT_OPTIONS = {
    k: v
    for k, v in FT.items()
    if k not in ("enabled", "backbones", "regions", "device", "threads", "extract_features",
                 "feature_batch_size")
}


def ft_backbone_options(backbone):
    """Weights, key map and seed a fine-tuning starts from: the backbones.<name> entry (mean_image is not used:
    fine-tuning normalises with the network's per-channel mean)."""
    opts = backbone_options(backbone)
    return {"weights": opts["weights"], "key_map": opts["key_map"], "seed": opts["seed"]}


def ft_groups(region):
    """Crop region -> AUs that see it, for one model region (multilabel head: one network per crop region)."""
    groups = {}
    for au in AUS:
        groups.setdefault(crop_region_of(region, au), []).append(au)
    return groups


def ft_train_inputs(wildcards):
    """Face stores and label tables of every subject of the split, plus a local weights file (replacing it reruns)."""
    subjects = SPLITS[wildcards.split].all
    out = {
        "faces": [f"results/faces/{s}.h5" for s in subjects],
        "labels": [f"results/labels/{s}.csv" for s in subjects],
    }
    weights = backbone_options(wildcards.backbone)["weights"]
    if weights not in ("pretrained", "random"):
        out["weights"] = os.path.expanduser(weights)
    return out


def ft_model_ids(split):
    """The fine-tuned softmax models of a split (registered with the classifiers' model list)."""
    if not FT["enabled"]:
        return []
    return [model_id(f"{b}_ft", r, "softmax") for b in FT["backbones"] for r in FT["regions"]]


def ft_feature_targets():
    """Fine-tuned feature files of every split, backbone, region, AU and subject of the split."""
    if not (FT["enabled"] and FT["extract_features"]):
        return []
    return [
        f"results/ft_features/{split}/{b}_ft/{r}/AU{au}/{s}.h5"
        for split, sp in SPLITS.items()
        for b in FT["backbones"]
        for r in FT["regions"]
        for au in AUS
        for s in sp.all
    ]
