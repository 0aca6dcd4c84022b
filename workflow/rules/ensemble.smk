# Stage ensembles (paper VI): majority vote (and F1-weighted / stacked beside it) over configured member models.
# One job per (split, ensemble): results/predictions/{split}/ens-{name}.csv has the columns of any model's
# predictions, so the classifiers' `metrics` rule scores it exactly like a model (ensemble ids are registered with
# au_transfer.plan.model_ids, so they also get rows in results/metrics/summary.csv). The fitted combination (calibration,
# weights, stacking coefficients; fitted on validation rows only) is results/models/{split}/ens-{name}/ensemble.json,
# which `au-transfer predict` uses on new videos.

ENSEMBLES = config["ensembles"]  # members checked before any job (au_transfer.plan.check_workflow)


rule ensemble:
    input:
        lambda wc: [LAYOUT.predictions(wc.split, m) for m in ENSEMBLES[wc.name]["members"]],
    output:
        pred=LAYOUT.predictions("{split}", "ens-{name}"),
        params=LAYOUT.ensemble_params("{split}", "ens-{name}"),
    wildcard_constraints:
        name=r"[A-Za-z0-9_]+",
    params:
        members=lambda wc: list(ENSEMBLES[wc.name]["members"]),
        method=lambda wc: ENSEMBLES[wc.name]["method"],
        tie=lambda wc: ENSEMBLES[wc.name]["tie"],
        C=lambda wc: ENSEMBLES[wc.name]["C"],
        class_weight=lambda wc: ENSEMBLES[wc.name]["class_weight"],
    log:
        "logs/ensembles/{split}/ens-{name}.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/ensemble.py"


register_targets(
    "ensembles",
    lambda: [LAYOUT.ensemble_params(split, f"ens-{name}") for split in SPLITS for name in ENSEMBLES],
)


# What `au-transfer predict` needs besides the trained files: the run's face settings (detector, crop size,
# margin, region boxes, storage encoding), backbone weights and the AU -> region map of Table VI.
rule predictor_manifest:
    output:
        LAYOUT.manifest("{split}"),
    params:
        aus=AUS,
        faces=config["faces"],
        backbones=config["backbones"],
        au_region=config["regions"]["au_region"],
        threshold=config["data"]["threshold"],
        corpus=report_corpus(),
        val_in_sample=_plan.validation_in_sample(config),  # never the predictor's default model
    log:
        "logs/ensembles/{split}/predictor_manifest.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/predictor_manifest.py"


register_targets("predictor", lambda: [LAYOUT.manifest(split) for split in SPLITS])
