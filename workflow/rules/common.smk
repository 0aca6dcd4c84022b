# Shared set-up: config validation (schemas with defaults), splits, subjects, and the target registry.
# Each stage file registers its final outputs with register_targets(); `rule all` asks for all of them.

import sys
from pathlib import Path

# The package lives in src/; make it importable even when it is not pip-installed (e.g. --use-conda envs).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from au_transfer import plan as _plan  # noqa: E402
from au_transfer.config import check_aus, check_splits, region_for, split_subjects, validate_config  # noqa: E402
from au_transfer.datasets.catalog import Catalog  # noqa: E402
from au_transfer.layout import SEEDPART_RE, Layout  # noqa: E402

LAYOUT = Layout()  # every results path (au_transfer.layout)
# The stochastic models' rules write every run of config `seeds` with one pattern: SEEDED paths are
# results{seedpart}/..., {seedpart} empty for seed offset 0 (the usual paths) and /seeds/seed{n} for offset n.
SEEDED = LAYOUT.seed_pattern("seedpart")

# The torch stages' rules (features, LSTMs, fine-tuning) claim `resources: gpu=gpu_claim(<section>.device)`: 1 where
# the job will run on a GPU of this machine (GPUs seen from device nodes, au_transfer.plan.local_gpus), so that
# `--resources gpu=1` keeps GPU jobs from sharing one GPU; 0 on a machine without GPU, where they are CPU jobs and
# run side by side. The SLURM profile sets gpu: 1 for these rules itself.
LOCAL_GPUS = _plan.local_gpus()


def gpu_claim(device):
    return _plan.gpu_claim(device, LOCAL_GPUS)

# Validate the top level and every section against its schema (src/au_transfer/schemas/<section>.schema.yaml), filling
# defaults; a wrong key or value stops the run before any job, with a message that names the key.
validate_config(config)
_plan.check_workflow(config)  # the checks that span sections (ensemble members, demo subjects, report), once
SPLITS = check_splits(config["splits"])
AUS = list(check_aus(config["data"]["aus"], coded=None))  # each corpus's codes: checked by check_workflow
SUBJECTS = split_subjects(SPLITS)
DATA_ROOT = config["data_root"]
# The corpora (au_transfer.datasets.catalog): data.corpus in data_root plus data.corpora. A subject has one or more
# recordings (DISFA: one, id = subject id; BP4D: one per task, F001.T1): the unit of every per-frame stage and file.
CATALOG = Catalog(config)
RECORDINGS = CATALOG.recording_ids(SUBJECTS)


def split_recordings(split, which=None):
    """Recordings of a split's subjects (of one set, or train + val + test), subject by subject."""
    sp = SPLITS[split]
    return CATALOG.recording_ids(sp.all if which is None else sp.subjects(which))


wildcard_constraints:
    subject=r"[A-Za-z0-9_-]+",
    recording=r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)?",
    split="|".join(SPLITS),
    region=r"face|upper|middle|lower|au_region",
    crop_region=r"face|upper|middle|lower",
    au=r"\d+",
    backbone=r"[A-Za-z0-9_.]+",
    classifier=r"[a-z0-9_]+",
    seedpart=SEEDPART_RE,


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


def seed_of(wildcards):
    """The seed offset of a seeded rule's job (its {seedpart} wildcard; 0 for the usual paths)."""
    return Layout.seed_of_part(wildcards.seedpart)


def seed_layout(wildcards):
    """The results layout of a seeded rule's job's run."""
    return LAYOUT.seed_run(seed_of(wildcards))


def au_region_of(au):
    """Crop region of one AU for `au_region` models (paper Table VI, overridable in config regions.au_region)."""
    return region_for("au_region", int(au), config["regions"].get("au_region"))


# --- model ids (au_transfer.plan): the classifiers', the fine-tuned networks' and the ensembles'
def model_ids(split=None):
    """Every model with predictions on a split (the same on every split): members first, then ensembles."""
    return _plan.model_ids(config)


def crop_region_of(region, au):
    """The crop region a model region reads for one AU (au_region -> Table VI)."""
    return au_region_of(au) if region == "au_region" else region


def ft_unit(region, au):
    """The fine-tuned network that serves an AU in a model region: AU{au} (per_au head) or multilabel-{crop}."""
    return LAYOUT.ft_unit(config["finetune"]["head"], au, crop_region_of(region, au))


def feature_file(backbone, region, subject, split, au):
    """Feature file that model {backbone}-{region}-... reads for one subject and AU: frozen features by crop region
    (the split's mean-image features for a mean-image backbone), or a fine-tuned network's (`*_ft`, per split and
    network). The one path function of every feature consumer (au_transfer.layout.Layout.model_features)."""
    return LAYOUT.model_features(backbone, region, subject, split=split, au=au, crop_region=crop_region_of,
                                 mean_image=uses_mean_image, ft_unit=ft_unit)


def model_feature_paths(wildcards):
    """Feature files of one (split, model, AU) fit, one per recording of the split (train, val, test order)."""
    return [feature_file(wildcards.backbone, wildcards.region, r, wildcards.split, wildcards.au)
            for r in split_recordings(wildcards.split)]


def classifier_inputs(wildcards):
    """Inputs of one (split, model, AU) fit: the feature files (for a fine-tuned backbone: its network's feature
    folder) and the label files of every recording of the split."""
    subjects = split_recordings(wildcards.split)
    if wildcards.backbone.endswith("_ft"):
        base = wildcards.backbone[: -len("_ft")]
        unit = ft_unit(wildcards.region, wildcards.au)
        features = [LAYOUT.ft_feature_dir(wildcards.split, base, wildcards.region, unit)]
    else:
        features = model_feature_paths(wildcards)
    return {"features": features, "labels": [LAYOUT.labels(s) for s in subjects]}


def split_sets(split):
    """The recordings of each set of a split (the jobs' units; they check subject-exclusiveness on subject_of)."""
    return {which: split_recordings(split, which) for which in ("train", "val", "test")}


def split_threshold(split):
    """The threshold of "present" of a split's recordings: data.threshold, or {recording: threshold} when its
    corpora define present differently (data.corpora[].threshold; au_transfer.labels.threshold_for)."""
    return CATALOG.threshold_param(split_recordings(split))


def classifier_fit_params():
    """Params of the frame-classifier rule: those shared by the fits plus the options of the job's own classifier
    only (so that changing an SVM key reruns SVM fits only)."""
    clf = config["classifiers"]
    return dict(
        sets=lambda wc: split_sets(wc.split),
        features=model_feature_paths,
        crop_region=lambda wc: crop_region_of(wc.region, wc.au),
        threshold=lambda wc: split_threshold(wc.split),
        seed=clf["seed"],
        balance=clf["balance"],
        classifier=lambda wc: wc.classifier,
        options=lambda wc: clf[wc.classifier.removesuffix("_med")],  # svm_med: the SVM's options
    )


def split_corpora():
    """Split -> the corpora its training (train + val) and test subjects come from, and their definitions of
    present (summary and report columns; au_transfer.datasets.catalog.Catalog.split_corpora)."""
    return {name: CATALOG.split_corpora((*sp.train, *sp.val), sp.test) for name, sp in SPLITS.items()}


def regressor_fit_params():
    """Params of the regressor rule: those shared by the fits plus the options of the job's own regressor only
    (so that changing an SVR key reruns SVR fits only, and no regressor key reaches a classifier)."""
    reg = config["regressors"]
    return dict(
        sets=lambda wc: split_sets(wc.split),
        features=model_feature_paths,
        crop_region=lambda wc: crop_region_of(wc.region, wc.au),
        threshold=config["data"]["threshold"],
        seed=reg["seed"],
        regressor=lambda wc: wc.regressor,
        options=lambda wc: {**reg[wc.regressor.removesuffix("_med")], "sampling": reg["sampling"]},
    )


def intensity_metrics_files():
    """Intensity metrics of every split and intensity model (none when regressors are off), then those of the LSTM
    regressors' other runs (config seeds)."""
    out = [LAYOUT.intensity_metrics(split, m) for split in SPLITS for m in _plan.intensity_model_ids(config)]
    return out + [LAYOUT.seed_run(s).intensity_metrics(split, m) for s in _plan.seed_offsets(config)[1:]
                  for split in SPLITS for m in _plan.seeded_intensity_ids(config)]


def metrics_files():
    """Per-model metrics of every split, the always-present baseline first, then those of the stochastic models'
    other runs (config seeds: results/seeds/seed{n}/metrics/...)."""
    out = []
    for split in SPLITS:
        ids = model_ids(split)
        if ids:
            out.append(LAYOUT.metrics(split, "always_present"))
        out += [LAYOUT.metrics(split, m) for m in ids]
    return out + [LAYOUT.seed_run(s).metrics(split, m) for s in _plan.seed_offsets(config)[1:] for split in SPLITS
                  for m in _plan.seeded_model_ids(config)]


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
    merge_intensity,
    intensity_ensemble,
    intensity_metrics,
    intensity_summary,
    ensemble,
    paper_report,


if config["data"]["demo"]["enabled"]:

    localrules:
        demo_subject,


if config["finetune"]["head"] != "per_au":

    localrules:
        finetune_unpack,


# --- ensembles and report (owner: ensembles/report; helpers of ensemble.smk and report.smk)
def report_corpus():
    """The label of our corpus in the report: report.corpus, or "synthetic demo corpus" / "DISFA"."""
    if config["report"].get("corpus"):
        return config["report"]["corpus"]
    return "synthetic demo corpus" if config["data"]["demo"]["enabled"] else "DISFA"


def report_outputs(report_dir=LAYOUT.report_dir()):
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
    if config["regressors"]["enabled"]:  # the intensity table and figure (au_transfer.report.intensity)
        from au_transfer.report.intensity import INTENSITY_FIGURE, INTENSITY_TABLE

        for fmt in FORMATS:
            path = f"{report_dir}/{INTENSITY_FIGURE}.{fmt}"
            out[f"intensity_fig_{fmt}"] = (report(path, caption="../report/intensity.rst", category="Figures")
                                           if fmt == "png" else path)
        out["intensity_csv"] = report(f"{report_dir}/{INTENSITY_TABLE}.csv", caption="../report/intensity.rst",
                                      category="Tables")
        out["intensity_md"] = f"{report_dir}/{INTENSITY_TABLE}.md"
    out["html"] = f"{report_dir}/report.html"
    out["index"] = f"{report_dir}/index.md"
    return out


# --- corpus (corpus adapters, demo corpus, labels): where each recording's files are; used by corpus.smk, faces.smk
from au_transfer.datasets import disfa as _disfa  # noqa: E402


def demo_video_file(subject):
    """Canonical video path of a subject under data_root (where the demo corpus writes it)."""
    return str(_disfa.canonical_video_path(DATA_ROOT, subject, config["data"]["camera"]))


def source_file(recording):
    """The frames of a recording: a video file or a folder of images (its corpus adapter says where); the demo
    corpus's video path when the demo is on."""
    if config["data"]["demo"]["enabled"] and CATALOG.corpus_of(recording) is CATALOG.primary:
        return demo_video_file(recording)
    return str(CATALOG.recording(recording).source)


def _is_disfa(recording):
    return CATALOG.corpus_of(recording).name == "disfa"


def label_dir(subject):
    """Folder of a DISFA subject's AU label files: data_root/ActionUnit_Labels/{subject}."""
    return f"{DATA_ROOT}/ActionUnit_Labels/{subject}"


def landmark_dir(subject):
    """Folder of a DISFA subject's landmark files: data_root/Landmark_Points/{subject} (read with
    au_transfer.datasets.disfa.landmark_files(data_root, subject))."""
    return f"{DATA_ROOT}/Landmark_Points/{subject}"


def labels_inputs(wildcards):
    """Inputs of the labels job of a recording: its frames (video or image folder) and what its corpus reads the
    labels (and, for DISFA, the landmark file list of the frame report) from."""
    rec = wildcards.recording
    if _is_disfa(rec) and not CATALOG.corpus_of(rec).prefix:
        return {"video": source_file(rec), "labels": label_dir(rec), "landmarks": landmark_dir(rec)}
    corpus = CATALOG.corpus_of(rec)
    r = CATALOG.recording(rec)
    return {"video": source_file(rec), "labels": [str(x) for x in corpus.label_inputs(r)]}


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
    out = {"faces": LAYOUT.faces(wildcards.recording)}
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
                out += [frozen_feature_file(b, r, s, sp) for sp in SPLITS for s in split_recordings(sp)]
            else:
                out += [frozen_feature_file(b, r, s) for s in RECORDINGS]
    return out


# --- faces (landmarks, aligned faces, QC): inputs of the landmarks rule; used by faces.smk
def faces_landmark_inputs(wildcards):
    """Frames (video or image folder) of a recording; for a DISFA recording also its label folder and (with
    faces.landmarks = disfa) its landmark folder. A corpus that ships no landmarks gives the frames only (with
    faces.landmarks = disfa its frames all take the fallback detector)."""
    rec = wildcards.recording
    inp = {"video": source_file(rec)}
    if _is_disfa(rec) and not CATALOG.corpus_of(rec).prefix:
        inp["labels"] = label_dir(rec)
        if config["faces"]["landmarks"] == "disfa":
            inp["landmarks"] = landmark_dir(rec)
    return inp


# --- finetune (fine-tuned CNNs, their features, regions): helpers of finetune.smk
FT = config["finetune"]
FT_OPTIONS = {
    k: v
    for k, v in FT.items()
    if k not in ("enabled", "backbones", "regions", "device", "threads", "extract_features",
                 "feature_batch_size")
}


def ft_options(wildcards):
    """The fine-tuning options of a training job: finetune.seed plus its run's seed offset (config seeds)."""
    return {**FT_OPTIONS, "seed": FT_OPTIONS["seed"] + seed_of(wildcards)}


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
    """Face stores and label tables of every recording of the split, plus a local weights file (replacing it
    reruns)."""
    subjects = split_recordings(wildcards.split)
    out = {
        "faces": [LAYOUT.faces(s) for s in subjects],
        "labels": [LAYOUT.labels(s) for s in subjects],
    }
    weights = backbone_options(wildcards.backbone)["weights"]
    if weights not in ("pretrained", "random"):
        out["weights"] = os.path.expanduser(weights)
    return out


def ft_units(region):
    """The fine-tuned networks of one model region: AU{au} per AU, or multilabel-{crop} per crop region."""
    return list(dict.fromkeys(ft_unit(region, au) for au in AUS))


def ft_feature_targets():
    """The fine-tuned feature folders of every split, backbone, region and network."""
    if not (FT["enabled"] and FT["extract_features"]):
        return []
    return [
        LAYOUT.ft_feature_dir(split, b, r, unit)
        for split in SPLITS
        for b in FT["backbones"]
        for r in FT["regions"]
        for unit in ft_units(r)
    ]


# --- snakemake predict (owner: predictor; predict.smk): the study's inputs, one job each
import re  # noqa: E402

from au_transfer.predict.batch import input_names  # noqa: E402
from au_transfer.predict.pictures import OVERLAY_SUFFIX, PLOT_SUFFIX  # noqa: E402

PREDICT = config["predict"]
PREDICT_INPUT = config.get("predict_input") or PREDICT["input"]
PREDICT_SPLIT = PREDICT["split"] or (config["report"]["split"] if config["report"]["split"] in SPLITS else
                                     list(SPLITS)[0])
PREDICT_INPUTS = input_names([PREDICT_INPUT]) if PREDICT_INPUT else {}


def predict_outputs():
    """Every output of `snakemake predict`: per input its CSV (and the pictures the config asks for)."""
    if not PREDICT_INPUT:
        raise ValueError("snakemake predict: set the study's videos with --config predict_input=PATH (a video, a "
                         "folder or a glob), or predict.input in the config")
    if not PREDICT_INPUTS:
        raise ValueError(f"snakemake predict: no video or image input in {PREDICT_INPUT}")
    out = []
    for name in PREDICT_INPUTS:
        out.append(LAYOUT.predicted(PREDICT_SPLIT, name))
        if PREDICT["plot"]:
            out.append(LAYOUT.predicted(PREDICT_SPLIT, name, PLOT_SUFFIX))
        if PREDICT["overlay"]:
            out.append(LAYOUT.predicted(PREDICT_SPLIT, name, OVERLAY_SUFFIX))
    return out


def predict_models(wildcards):
    """The trained split the jobs predict with: its manifest and the predictions of its models (every model's, to
    choose the best on validation when predict.model is null; the intensity ones for regressor auto)."""
    split = wildcards.split
    models = [PREDICT["model"]] if PREDICT["model"] else model_ids(split)
    out = [LAYOUT.manifest(split), *[LAYOUT.predictions(split, m) for m in models]]
    if PREDICT["regressor"] == "auto":
        out += [LAYOUT.intensity_predictions(split, m) for m in _plan.regressor_model_ids(config)]
    elif PREDICT["regressor"] != "none":
        out.append(LAYOUT.intensity_predictions(split, PREDICT["regressor"]))
    return out
