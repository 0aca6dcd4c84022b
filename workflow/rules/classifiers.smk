# Stage classifiers: per-AU LDA / linear SVM on frame features (paper IV-C: one rule, fit_frame, with a
# {classifier} wildcard, lda|svm and their person-specific *_med variants (classifiers.normalise_median); each
# classifier's options reach only its own jobs and its _med variant's), LSTM on sequences (IV-D), merged
# predictions, per-model metrics and the summary table (VII). One fit job per (split, model, AU).
# Helpers (model_ids, feature_file, classifier_inputs, ...) are in common.smk, block "# --- classifiers".

MODEL_ID_RE = r"[A-Za-z0-9_.]+-(face|upper|middle|lower|au_region)-[a-z0-9_]+"
CLF = config["classifiers"]
FRAME_CLASSIFIERS = ("lda", "svm")  # the frame classifiers of au_transfer.classifiers.frame
REG = config["regressors"]
REGRESSOR_RE = r"(svr|ridge)(_med)?"  # au_transfer.intensity.linear.parse_regressor


rule fit_frame:
    input:
        unpack(classifier_inputs),
    output:
        model=LAYOUT.model_file("{split}", "{backbone}-{region}-{classifier}", "{au}"),
        pred=LAYOUT.au_predictions("{split}", "{backbone}-{region}-{classifier}", "{au}"),
    wildcard_constraints:
        classifier=r"(%s)(_med)?" % "|".join(FRAME_CLASSIFIERS),  # *_med: classifiers.normalise_median
    params:
        **classifier_fit_params(),
    log:
        "logs/classifiers/{split}/{backbone}-{region}-{classifier}/AU{au}.log",
    threads: 1
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/fit_frame.py"


# The stochastic models' rules (LSTM here, LSTM regressor below, fine-tuning) write every run of config seeds with
# one pattern (SEEDED, common.smk): run 0 at the usual paths, run n under results/seeds/seed{n}/, seed = section
# seed + n; merge_predictions / metrics (and their intensity twins) serve every run the same way.
rule fit_lstm:
    input:
        unpack(classifier_inputs),
    output:
        model=SEEDED.model_file("{split}", "{backbone}-{region}-lstm", "{au}"),
        pred=SEEDED.au_predictions("{split}", "{backbone}-{region}-lstm", "{au}"),
    params:
        sets=lambda wc: split_sets(wc.split),
        features=model_feature_paths,
        crop_region=lambda wc: crop_region_of(wc.region, wc.au),
        threshold=lambda wc: split_threshold(wc.split),
        seed=lambda wc: CLF["seed"] + seed_of(wc),
        options={k: v for k, v in CLF["lstm"].items() if k not in ("enabled", "backbones", "regions")},
    log:
        "logs{seedpart}/classifiers/{split}/{backbone}-{region}-lstm/AU{au}.log",
    threads: 1
    resources:
        gpu=gpu_claim(CLF["lstm"]["device"]),
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/fit_lstm.py"


rule merge_predictions:
    input:
        lambda wc: [seed_layout(wc).au_predictions(wc.split, wc.model, au) for au in AUS],
    output:
        SEEDED.predictions("{split}", "{model}"),
    wildcard_constraints:
        model=MODEL_ID_RE,
    params:
        aus=AUS,
    log:
        "logs{seedpart}/classifiers/{split}/merge_{model}.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/merge_predictions.py"


rule always_present:
    input:
        lambda wc: LAYOUT.predictions(wc.split, model_ids(wc.split)[0]),
    output:
        LAYOUT.predictions("{split}", "always_present"),
    params:
        baseline=True,
    log:
        "logs/classifiers/{split}/always_present.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/merge_predictions.py"


rule metrics:
    input:
        SEEDED.predictions("{split}", "{model}"),
    output:
        SEEDED.metrics("{split}", "{model}"),
    wildcard_constraints:
        model=r"[A-Za-z0-9_.\-]+",
    params:
        aus=AUS,
        invalid_frames=config["evaluation"]["invalid_frames"],
    log:
        "logs{seedpart}/classifiers/{split}/metrics_{model}.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/metrics.py"


rule summary:
    input:
        lambda wc: metrics_files(),
    output:
        LAYOUT.summary(),
    params:
        corpora=split_corpora(),
    log:
        "logs/classifiers/summary.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/summary.py"


# --- intensity (docs/intensity.md): per-AU regressors beside the classifiers, on the same features; one fit job per
# (split, model, AU), {regressor} = svr | ridge (| *_med, person-specific median normalisation); only that
# regressor's options reach its jobs. Then merged intensity predictions, regressor ensembles, metrics, summary.
rule fit_regress:
    input:
        unpack(classifier_inputs),
    output:
        model=LAYOUT.model_file("{split}", "{backbone}-{region}-{regressor}", "{au}"),
        pred=LAYOUT.intensity_au_predictions("{split}", "{backbone}-{region}-{regressor}", "{au}"),
    wildcard_constraints:
        regressor=REGRESSOR_RE,
    params:
        **regressor_fit_params(),
    log:
        "logs/intensity/{split}/{backbone}-{region}-{regressor}/AU{au}.log",
    threads: 1
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/fit_regress.py"


rule fit_lstm_regress:
    input:
        unpack(classifier_inputs),
    output:
        model=SEEDED.model_file("{split}", "{backbone}-{region}-lstmr", "{au}"),
        pred=SEEDED.intensity_au_predictions("{split}", "{backbone}-{region}-lstmr", "{au}"),
    params:
        sets=lambda wc: split_sets(wc.split),
        features=model_feature_paths,
        crop_region=lambda wc: crop_region_of(wc.region, wc.au),
        threshold=config["data"]["threshold"],
        seed=lambda wc: REG["seed"] + seed_of(wc),
        options={k: v for k, v in CLF["lstm"].items() if k not in ("enabled", "backbones", "regions")},
    log:
        "logs{seedpart}/intensity/{split}/{backbone}-{region}-lstmr/AU{au}.log",
    threads: 1
    resources:
        gpu=gpu_claim(CLF["lstm"]["device"]),
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/fit_lstm_regress.py"


rule merge_intensity:
    input:
        lambda wc: [seed_layout(wc).intensity_au_predictions(wc.split, wc.model, au) for au in AUS],
    output:
        SEEDED.intensity_predictions("{split}", "{model}"),
    wildcard_constraints:
        model=MODEL_ID_RE,
    log:
        "logs{seedpart}/intensity/{split}/merge_{model}.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/merge_intensity.py"


rule intensity_ensemble:
    input:
        lambda wc: [LAYOUT.intensity_predictions(wc.split, m) for m in REG["ensembles"][wc.name]["members"]],
    output:
        pred=LAYOUT.intensity_predictions("{split}", "ens-{name}"),
        params=LAYOUT.intensity_ensemble_params("{split}", "ens-{name}"),
    wildcard_constraints:
        name=r"[A-Za-z0-9_.]+",
    params:
        members=lambda wc: list(REG["ensembles"][wc.name]["members"]),
        method=lambda wc: REG["ensembles"][wc.name]["method"],
        threshold=config["data"]["threshold"],
    log:
        "logs/intensity/{split}/ens-{name}.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/intensity_ensemble.py"


rule intensity_metrics:
    input:
        SEEDED.intensity_predictions("{split}", "{model}"),
    output:
        SEEDED.intensity_metrics("{split}", "{model}"),
    wildcard_constraints:
        model=r"[A-Za-z0-9_.\-]+",
    params:
        aus=AUS,
        invalid_frames=config["evaluation"]["invalid_frames"],
    log:
        "logs{seedpart}/intensity/{split}/metrics_{model}.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/intensity_metrics.py"


rule intensity_summary:
    input:
        lambda wc: intensity_metrics_files(),
    output:
        LAYOUT.intensity_summary(),
    log:
        "logs/intensity/summary.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/intensity_summary.py"


register_targets("classifiers", lambda: metrics_files() + [LAYOUT.summary()])
register_targets("intensity", lambda: intensity_metrics_files() + ([LAYOUT.intensity_summary()] if REG["enabled"] else []))
