# `snakemake predict`: the run's trained models on a study's videos, one job per input (au_transfer.predict.batch).
#   snakemake predict --config predict_input=/data/study_videos        # or the config's predict: section
# Each job is cached like the others: a rerun predicts only new or changed videos (and all when the models change).
# The inputs and the helpers (PREDICT_*, predict_outputs, predict_models) are in common.smk.

rule predict_video:
    input:
        video=lambda wc: str(PREDICT_INPUTS[wc.name]),
        models=predict_models,
    output:
        csv=LAYOUT.predicted("{split}", "{name}"),
        pictures=[LAYOUT.predicted("{split}", "{name}", s) for s, on in
                  ((PLOT_SUFFIX, PREDICT["plot"]), (OVERLAY_SUFFIX, PREDICT["overlay"])) if on],
    params:
        results=lambda wc, input: str(Path(input.models[0]).parents[2]),  # the manifest's results folder
        model=PREDICT["model"],
        regressor=PREDICT["regressor"],
        options={k: PREDICT[k] for k in ("every", "fps", "detect_every")} | {"largest_only": PREDICT["largest_face"]},
        plot=PREDICT["plot"],
        overlay=PREDICT["overlay"],
        device=PREDICT["device"],
        batch_size=PREDICT["batch_size"],
    wildcard_constraints:
        name="|".join(re.escape(n) for n in PREDICT_INPUTS) or "(?!)",
    threads: 2
    resources:
        gpu=gpu_claim(PREDICT["device"]),
    log:
        "logs/predict/{split}/{name}.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/predict.py"


rule predict:
    input:
        lambda wc: predict_outputs(),
localrules:
    predict,
