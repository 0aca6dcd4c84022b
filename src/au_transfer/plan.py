"""What a validated workflow config asks for: its model ids, and the checks that span config sections.

The workflow (``workflow/rules/common.smk``) and ``au-transfer validate-config`` both call :func:`check_workflow`
right after the schema validation, so that every config error stops a run before any job starts, with one message
that names the key. The rules' target and input functions take their model lists from here.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import (
    DISFA_SUBJECTS,
    ConfigError,
    check_splits,
    check_subject_exclusive,
    model_id,
    split_subjects,
)

FT_SUFFIX = "_ft"


def local_gpus(dev: str | os.PathLike[str] = "/dev", environ: Mapping[str, str] | None = None) -> int:
    """How many GPUs this machine shows to torch, from device nodes only (the Snakefile must not import torch):
    NVIDIA's ``/dev/nvidiaN``, or ROCm's ``/dev/kfd`` with its ``/dev/dri/renderD*`` nodes. ``CUDA_VISIBLE_DEVICES``
    set to ``""`` or ``-1`` (torch then sees no GPU) gives 0. ``AU_TRANSFER_GPUS=N`` (environment) overrides the
    detection (a container that hides the device nodes; a test)."""
    env = os.environ if environ is None else environ
    forced = env.get("AU_TRANSFER_GPUS", "").strip()
    if forced:
        if not forced.isdigit():
            raise ConfigError(f"environment variable AU_TRANSFER_GPUS={forced!r}: expected a number of GPUs (0, 1, ...)")
        return int(forced)
    if env.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1"):
        return 0
    root = Path(dev)
    nvidia = [p for p in glob.glob(str(root / "nvidia*")) if Path(p).name[len("nvidia"):].isdigit()]
    if nvidia:
        return len(nvidia)
    return len(glob.glob(str(root / "dri" / "renderD*"))) if (root / "kfd").exists() else 0


def gpu_claim(device: str, gpus: int) -> int:
    """The ``gpu`` resource a job of a torch stage claims on this machine (Snakemake ``resources: gpu=...``): 1 when
    its config section's ``device`` runs it on a GPU here (``cuda``/``cuda:N``, or ``auto`` with ``gpus`` > 0), else
    0, so that on a machine without GPU, CPU jobs of these stages run side by side instead of one at a time under
    ``--resources gpu=1``. The SLURM profile sets ``gpu: 1`` for these rules itself (a submit host often has no GPU)."""
    if device == "cpu":
        return 0
    return 1 if device.startswith("cuda") or gpus > 0 else 0


def frame_backbones(cfg: Mapping[str, Any]) -> list[str]:
    """Backbones of the frozen-feature frame models (classifiers.backbones, or every features backbone)."""
    b = cfg["classifiers"].get("backbones")
    return list(cfg["features"].get("backbones", []) if b is None else b)


def lstm_backbones(cfg: Mapping[str, Any]) -> list[str]:
    """Backbones of the LSTM models (classifiers.lstm.backbones, or the first frame-model backbone)."""
    lstm = cfg["classifiers"]["lstm"]
    if not lstm["enabled"]:
        return []
    b = lstm.get("backbones")
    return list(b) if b is not None else frame_backbones(cfg)[:1]


def ft_regions(cfg: Mapping[str, Any]) -> list[str]:
    """Regions of the LDA/SVM models on fine-tuned features."""
    r = cfg["classifiers"].get("ft_regions")
    return list(r if r is not None else cfg["finetune"].get("regions", cfg["classifiers"]["regions"]))


def classifier_model_ids(cfg: Mapping[str, Any]) -> list[str]:
    """Model ids fitted by the classifiers stage (LDA/SVM on frozen and fine-tuned features, each followed by its
    ``_med`` variant when ``classifiers.normalise_median`` lists it, LSTM)."""
    clf = cfg["classifiers"]
    ids = frame_model_ids(cfg)
    med = set(clf["normalise_median"])
    ids = [v for m in ids for v in ([m, f"{m}_med"] if m in med else [m])]  # each _med variant after its model
    ids += [model_id(b, r, "lstm") for b in lstm_backbones(cfg) for r in clf["lstm"]["regions"]]
    return list(dict.fromkeys(ids))


def frame_model_ids(cfg: Mapping[str, Any]) -> list[str]:
    """LDA/SVM models on frozen and fine-tuned features (without their ``_med`` variants)."""
    clf = cfg["classifiers"]
    ids = [model_id(b, r, c) for b in frame_backbones(cfg) for r in clf["regions"] for c in clf["frame"]]
    ids += [model_id(f"{b}{FT_SUFFIX}", r, c) for b in clf["ft_backbones"] for r in ft_regions(cfg)
            for c in clf["frame"]]
    return ids


def ft_model_ids(cfg: Mapping[str, Any]) -> list[str]:
    """The fine-tuned networks' own (softmax) models."""
    ft = cfg["finetune"]
    if not ft["enabled"]:
        return []
    return [model_id(f"{b}{FT_SUFFIX}", r, "softmax") for b in ft["backbones"] for r in ft["regions"]]


def ensemble_ids(cfg: Mapping[str, Any]) -> list[str]:
    """Model ids (ens-{name}) of every configured ensemble (the same on every split)."""
    from .ensemble import ensemble_id

    return [ensemble_id(name) for name in cfg["ensembles"]]


def member_ids(cfg: Mapping[str, Any]) -> list[str]:
    """Every model that can be an ensemble member: the classifiers' and the fine-tuned networks'."""
    return list(dict.fromkeys(classifier_model_ids(cfg) + ft_model_ids(cfg)))


def model_ids(cfg: Mapping[str, Any]) -> list[str]:
    """Every model with predictions (and metrics) on each split: members first, then the ensembles."""
    return member_ids(cfg) + [e for e in ensemble_ids(cfg) if e not in member_ids(cfg)]


def seed_offsets(cfg: Mapping[str, Any]) -> list[int]:
    """The runs of the stochastic models (config ``seeds``): their seed offsets, 0 (the usual paths) first."""
    seeds = [int(s) for s in cfg.get("seeds", [0])]  # digit strings from --config 'seeds=[0,1]' too
    return list(dict.fromkeys([0] + seeds))


def seeded_model_ids(cfg: Mapping[str, Any]) -> list[str]:
    """The stochastic models with occurrence predictions, repeated over :func:`seed_offsets`: the fine-tuned
    networks' softmax models and the LSTMs (the frame classifiers are deterministic given their features; those
    on fine-tuned features read run 0's networks)."""
    lstm = [m for m in classifier_model_ids(cfg) if m.endswith("-lstm")]
    return list(dict.fromkeys(ft_model_ids(cfg) + lstm))


def seeded_intensity_ids(cfg: Mapping[str, Any]) -> list[str]:
    """The stochastic intensity models, repeated over :func:`seed_offsets`: the LSTM regressors."""
    return [m for m in regressor_model_ids(cfg) if m.endswith("-lstmr")]


def model_seeds(cfg: Mapping[str, Any], model: str, *, intensity: bool = False) -> list[int]:
    """The seed offsets a model is run with: every offset for a stochastic model, else ``[0]``."""
    seeded = seeded_intensity_ids(cfg) if intensity else seeded_model_ids(cfg)
    return seed_offsets(cfg) if model in seeded else [0]


def regressor_names(cfg: Mapping[str, Any]) -> list[str]:
    """The regressor part of the intensity model ids: each model, plain and/or ``_med`` (median-normalised)."""
    reg = cfg["regressors"]
    return [m + ("_med" if n == "median" else "") for m in reg["models"] for n in reg["normalise"]]


def regressor_model_ids(cfg: Mapping[str, Any]) -> list[str]:
    """Intensity regressors ``{backbone}-{region}-{svr|ridge}[_med]`` (frozen and fine-tuned features)."""
    reg = cfg["regressors"]
    if not reg["enabled"]:
        return []
    b = reg.get("backbones")
    backbones = frame_backbones(cfg) if b is None else list(b)
    backbones += [f"{x}{FT_SUFFIX}" for x in reg["ft_backbones"]]
    ids = [model_id(x, r, n) for x in backbones for r in reg["regions"] for n in regressor_names(cfg)]
    if reg["lstm"]["enabled"]:
        lb = reg["lstm"].get("backbones")
        lb = list(lb) if lb is not None else (cfg["classifiers"]["lstm"].get("backbones") or backbones[:1])
        ids += [model_id(x, r, "lstmr") for x in lb for r in reg["lstm"]["regions"]]
    return list(dict.fromkeys(ids))


def intensity_ensemble_ids(cfg: Mapping[str, Any]) -> list[str]:
    """Regressor ensembles (``ens-{name}`` in the intensity tables)."""
    reg = cfg["regressors"]
    return [f"ens-{n}" for n in reg["ensembles"]] if reg["enabled"] else []


def intensity_model_ids(cfg: Mapping[str, Any]) -> list[str]:
    """Every model with intensity predictions and metrics: the regressors, then their ensembles."""
    return regressor_model_ids(cfg) + intensity_ensemble_ids(cfg)


def report_paper_ensembles(cfg: Mapping[str, Any]) -> list[str]:
    """Ensembles shown as the paper's ensembles 1-3: report.paper_ensembles, or the first three majority ones."""
    names = cfg["report"].get("paper_ensembles")
    if names is None:
        names = [n for n, e in cfg["ensembles"].items() if e["method"] == "majority"][:3]
    unknown = [n for n in names if n not in cfg["ensembles"]]
    if unknown:
        raise ConfigError(f"config key 'report.paper_ensembles': {unknown} are not in the ensembles section")
    return list(names)


def refit_on_validation(cfg: Mapping[str, Any]) -> list[str]:
    """Member models that are refitted on train + validation rows (``classifiers.svm.refit: train_val``: the SVMs,
    plain and ``_med``, on frozen and fine-tuned features): their validation predictions are in sample."""
    if cfg["classifiers"]["svm"].get("refit", "train") != "train_val":
        return []
    return [m for m in classifier_model_ids(cfg) if m.rsplit("-", 1)[-1] in ("svm", "svm_med")]


def validation_in_sample(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Models whose validation predictions are **in sample** (fitted on those rows), with the reason: the members
    of :func:`refit_on_validation`, the ensembles that fit calibration, weights or stacking on the validation rows
    (:func:`au_transfer.ensemble.fitted_on_validation`) and the ensembles of such members. Validation F1 ranks only
    the others (the predictor's default model; ``predictor.json`` lists these)."""
    from .ensemble import ensemble_id, fitted_on_validation

    out = {m: "refitted on train + validation (classifiers.svm.refit: train_val)" for m in refit_on_validation(cfg)}
    for name, spec in cfg["ensembles"].items():
        fitted = fitted_on_validation(spec.get("method", "majority"), spec.get("tie", "score"))
        inside = [m for m in spec.get("members", []) if m in out]
        if fitted:
            out[ensemble_id(name)] = f"fits its {' and '.join(fitted)} on the validation rows"
        elif inside:
            out[ensemble_id(name)] = f"member(s) {inside} are in sample on validation"
    return out


def check_workflow(cfg: Mapping[str, Any]) -> None:
    """The checks that span sections, on a schema-validated config (defaults filled); raises :class:`ConfigError`
    naming the key. Called once by the workflow before any job and by ``au-transfer validate-config``."""
    from .ensemble import check_ensembles

    splits = check_splits(cfg["splits"])
    if 0 not in [int(s) for s in cfg.get("seeds", [0])]:
        raise ConfigError(f"config key 'seeds': {list(cfg['seeds'])} lacks 0, the run of the configured seeds that "
                          "the ensembles and the predictor use (written at the usual paths); list it first, e.g. "
                          f"[0, {', '.join(str(s) for s in cfg['seeds'])}]")
    _check_corpora(cfg, splits)
    demo = cfg["data"]["demo"]
    if demo["enabled"]:
        unknown = [s for s in demo["subjects"] if s not in DISFA_SUBJECTS]
        if unknown:
            raise ConfigError(f"config key 'data.demo.subjects': {unknown} are not DISFA subject ids "
                              f"({DISFA_SUBJECTS[0]}...)")
        missing = [s for s in split_subjects(splits) if s not in demo["subjects"]]
        if missing:
            raise ConfigError(f"config key 'splits' uses subject(s) {missing} that 'data.demo.subjects' does not "
                              "generate")
    _check_backbones(cfg)
    _check_members(cfg)
    _check_regressors(cfg)
    _check_median(cfg)
    check_ensembles(cfg["ensembles"], member_ids(cfg))
    _check_refit(cfg)
    report_paper_ensembles(cfg)
    _check_report(cfg, splits)
    _check_weight_files(cfg)


def _check_weight_files(cfg: Mapping[str, Any]) -> None:
    """Every local weights file a job will load exists (relative paths: from the working directory); one line each
    with the backbone and the command that makes it. Whether a file fits its network: ``au-transfer weights
    check`` (it loads them, which this start-up check does not)."""
    from .weights_plan import missing_weights, missing_weights_message

    lines = missing_weights(cfg)
    if lines:
        raise ConfigError(missing_weights_message(lines))


def _check_corpora(cfg: Mapping[str, Any], splits: Mapping[str, Any]) -> None:
    """The corpora: known adapters, every split subject in its corpus, every AU coded by each corpus a split reads,
    no person in two sets of a split under two corpus ids (:meth:`~.datasets.catalog.Catalog.person_of`), the demo (a DISFA-layout corpus) only with ``data.corpus: disfa``, shipped landmarks only where a corpus ships
    them or a fallback detector is set."""
    from .datasets.base import CorpusError
    from .datasets.catalog import Catalog

    data = cfg["data"]
    if data["demo"]["enabled"] and data["corpus"] != "disfa":
        raise ConfigError(f"config key 'data.demo.enabled': the demo corpus is written in the DISFA layout; it needs "
                          f"data.corpus: disfa (not {data['corpus']!r})")
    subjects = split_subjects(splits)
    try:
        catalog = Catalog(cfg)
        if not data["demo"]["enabled"]:
            catalog.check_subjects(subjects)
        catalog.check_aus(data["aus"], subjects)
        for name, sp in splits.items():  # one person under two corpus ids (DISFA's SN001, DISFA+'s dplus-SN001)
            check_subject_exclusive(sp.train, sp.val, sp.test, split=name, person_of=catalog.person_of)
    except CorpusError as exc:
        raise ConfigError(f"config: {exc}") from None
    faces = cfg["faces"]
    if faces.get("landmarks") == "disfa" and faces.get("fallback") == "none":
        without = sorted({catalog.corpus_of(s).name for s in subjects if not catalog.corpus_of(s).ships_landmarks})
        if without:
            raise ConfigError(f"config key 'faces.landmarks': corpus {', '.join(without)} ships no landmarks; set "
                              "faces.landmarks to dlib (or faces.fallback to dlib) for it")


def _check_backbones(cfg: Mapping[str, Any]) -> None:
    """Every backbone a section names is known to the registry (or is a timm model): a typo stops the run before
    any job, not hours later in its first feature job."""
    from .backbones import get_spec

    named = [("features.backbones", b) for b in cfg["features"].get("backbones") or []]
    named += [("classifiers.backbones", b) for b in cfg["classifiers"].get("backbones") or []]
    named += [("classifiers.lstm.backbones", b) for b in cfg["classifiers"]["lstm"].get("backbones") or []]
    named += [("classifiers.ft_backbones", b) for b in cfg["classifiers"].get("ft_backbones") or []]
    named += [("finetune.backbones", b) for b in cfg["finetune"].get("backbones") or []]
    named += [("regressors.backbones", b) for b in cfg["regressors"].get("backbones") or []]
    named += [("regressors.ft_backbones", b) for b in cfg["regressors"].get("ft_backbones") or []]
    named += [("regressors.lstm.backbones", b) for b in cfg["regressors"]["lstm"].get("backbones") or []]
    named += [("backbones", b) for b in cfg.get("backbones") or {}]
    for key, name in named:
        try:
            get_spec(name)
        except (KeyError, ValueError) as exc:  # BackboneError (a KeyError), WeightsError
            raise ConfigError(f"config key '{key}': {exc.args[0] if exc.args else exc}") from None


def _configured_backbones(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Backbone name -> the config key that makes models of it."""
    out = {b: "features.backbones / classifiers.backbones" for b in frame_backbones(cfg)}
    out.update({b: "classifiers.lstm.backbones" for b in lstm_backbones(cfg) if b not in out})
    out.update({f"{b}{FT_SUFFIX}": "classifiers.ft_backbones" for b in cfg["classifiers"]["ft_backbones"]})
    if cfg["finetune"]["enabled"]:
        out.update({f"{b}{FT_SUFFIX}": "finetune.backbones" for b in cfg["finetune"]["backbones"]
                    if f"{b}{FT_SUFFIX}" not in out})
    return out


def _check_members(cfg: Mapping[str, Any]) -> None:
    """An ensemble member whose backbone no section configures: say which backbone, and where to add it."""
    from .config import MODEL_RE

    produced, backbones = set(member_ids(cfg)), _configured_backbones(cfg)
    for name, spec in cfg["ensembles"].items():
        for m in spec.get("members", []):
            match = MODEL_RE.match(m)
            if m in produced or not match:
                continue
            backbone = match["backbone"]
            if backbone not in backbones:
                where = ("finetune.backbones (with finetune.enabled) or classifiers.ft_backbones"
                         if backbone.endswith(FT_SUFFIX) else "features.backbones (or classifiers.backbones)")
                raise ConfigError(f"config key 'ensembles.{name}.members': member {m!r} uses backbone "
                                  f"{backbone!r}, which is not configured; add it to {where}, or remove the member")


def _check_refit(cfg: Mapping[str, Any]) -> None:
    """``classifiers.svm.refit: train_val`` refits the SVMs on the validation rows; an ensemble of such a member that
    fits calibration, weights or stacking on those rows would fit them on rows its members trained on: refused."""
    from .ensemble import fitted_on_validation

    refitted = set(refit_on_validation(cfg))
    for name, spec in cfg["ensembles"].items():
        inside = [m for m in spec.get("members", []) if m in refitted]
        method, tie = spec.get("method", "majority"), spec.get("tie", "score")
        fitted = fitted_on_validation(method, tie)
        if inside and fitted:
            keys = " and ".join(f"'ensembles.{name}.{k}' ({v})" for k, v in (("method", method), ("tie", tie))
                                if (k == "method" and method != "majority") or (k == "tie" and tie == "score"
                                                                                 and method != "stacked"))
            raise ConfigError(
                f"config key 'classifiers.svm.refit' (train_val) with {keys}: member(s) {inside} are refitted on the "
                f"validation rows, on which ensemble {name} fits its {' and '.join(fitted)}; set "
                "classifiers.svm.refit: train, or use method: majority with tie: absent or present")


def _check_regressors(cfg: Mapping[str, Any]) -> None:
    """Every member of a regressor ensemble is a regressor this configuration fits."""
    produced = regressor_model_ids(cfg)
    for name, spec in cfg["regressors"]["ensembles"].items():
        unknown = [m for m in spec["members"] if m not in produced]
        if unknown:
            raise ConfigError(f"config key 'regressors.ensembles.{name}.members': {unknown} are not regressors "
                              f"this configuration fits (regressors.enabled, backbones, regions, models, "
                              f"normalise); it fits {produced}")


def _check_median(cfg: Mapping[str, Any]) -> None:
    """Every model of classifiers.normalise_median is a frame model this configuration fits."""
    fitted = frame_model_ids(cfg)
    unknown = [m for m in cfg["classifiers"]["normalise_median"] if m not in fitted]
    if unknown:
        raise ConfigError(f"config key 'classifiers.normalise_median': {unknown} are not frame models this "
                          f"configuration fits (classifiers.backbones, regions, frame, ft_backbones); it fits {fitted}")


def _check_report(cfg: Mapping[str, Any], splits: Mapping[str, Any]) -> None:
    """Report settings that would fail the report job (and leave no report) are errors before any job."""
    from .evaluation import fold_groups
    from .report import paper_results

    report = cfg["report"]
    names = list(splits) + list(fold_groups(splits))
    if report.get("split") and report["split"] not in names:
        raise ConfigError(f"config key 'report.split': {report['split']!r} is not a split of this configuration "
                          f"(splits and fold means: {names})")
    keys = set(paper_results()["key"])
    produced = set(model_ids(cfg))
    for key, model in (report.get("paper_models") or {}).items():
        if key not in keys:
            raise ConfigError(f"config key 'report.paper_models.{key}': not a result of the paper; choose from "
                              f"{sorted(keys)}")
        if model not in produced:
            raise ConfigError(f"config key 'report.paper_models.{key}': {model!r} is not a model that this "
                              "configuration produces")
