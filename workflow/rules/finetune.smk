# Stage finetune: fine-tuned CNNs (paper V), their fc6 features (VII-B) and the region-based approach (VII-C).
# Model ids {backbone}_ft-{region}-softmax; see docs/finetune.md.
#   per_au head:     one training job per (split, backbone, region, AU)            -> AU{au}.pt + predictions
#   multilabel head: one training job per (split, backbone, region, crop region)   -> multilabel-{crop}.pt,
#                    then one cheap unpack job per (split, backbone, region)       -> AU{au}.pt + predictions
# Fine-tuned features: one job per network ({unit} = AU{au} or multilabel-{crop}), writing the folder
# results/ft_features/{split}/{backbone}_ft/{region}/{unit}/ with one file per recording of the split.
# A running job keeps an untracked checkpoint beside its output ({unit}.ckpt, not a declared output, so Snakemake
# leaves it when the job fails); a rerun resumes from its last finished epoch. Helpers: common.smk, "# --- finetune".
# The training jobs (and their fine-tuned features) have priority 1: they are the workflow's longest chain
# (training -> unpack -> ensembles -> report), so they start as soon as their inputs exist instead of being left for
# last behind the hundreds of short fits, where they would run alone at the end.
# Seeds (config seeds): the training and unpack rules write every run with one pattern (SEEDED, common.smk): run 0
# at the paths above, run n under results/seeds/seed{n}/ with finetune.seed + n; only run 0's networks get features.

_FT_PARAMS = dict(
    sets=lambda wc: split_sets(wc.split),
    backbone_options=lambda wc: ft_backbone_options(wc.backbone),
    au_region=config["regions"].get("au_region"),
    threshold=lambda wc: split_threshold(wc.split),
    options=ft_options,
    device=FT["device"],
)


if FT["head"] == "per_au":

    rule finetune:
        input:
            unpack(ft_train_inputs),
        output:
            model=SEEDED.finetune_net("{split}", "{backbone}", "{region}", "{au}"),
            pred=SEEDED.au_predictions("{split}", "{backbone}_ft-{region}-softmax", "{au}"),
        params:
            aus=lambda wc: [int(wc.au)],
            ckpt=lambda wc: seed_layout(wc).finetune_ckpt(wc.split, wc.backbone, wc.region, f"AU{wc.au}"),
            **_FT_PARAMS,
        log:
            "logs{seedpart}/finetune/{split}/{backbone}-{region}/AU{au}.log",
        threads: FT["threads"]
        priority: 1
        resources:
            gpu=gpu_claim(FT["device"]),
        conda:
            "../../envs/au_transfer.yaml"
        script:
            "../scripts/finetune.py"

else:

    rule finetune_multilabel:
        input:
            unpack(ft_train_inputs),
        output:
            model=SEEDED.ft_network("{split}", "{backbone}", "{region}", "multilabel-{crop_region}"),
            pred=SEEDED.finetune_group_predictions("{split}", "{backbone}", "{region}", "{crop_region}"),
        params:
            aus=lambda wc: ft_groups(wc.region)[wc.crop_region],
            ckpt=lambda wc: seed_layout(wc).finetune_ckpt(wc.split, wc.backbone, wc.region,
                                                          f"multilabel-{wc.crop_region}"),
            **_FT_PARAMS,
        log:
            "logs{seedpart}/finetune/{split}/{backbone}-{region}/multilabel-{crop_region}.log",
        threads: FT["threads"]
        priority: 1
        resources:
            gpu=gpu_claim(FT["device"]),
        conda:
            "../../envs/au_transfer.yaml"
        script:
            "../scripts/finetune.py"

    rule finetune_unpack:
        input:
            models=lambda wc: [seed_layout(wc).ft_network(wc.split, wc.backbone, wc.region, f"multilabel-{c}")
                               for c in ft_groups(wc.region)],
            preds=lambda wc: [seed_layout(wc).finetune_group_predictions(wc.split, wc.backbone, wc.region, c)
                              for c in ft_groups(wc.region)],
        output:
            models=[SEEDED.finetune_net("{split}", "{backbone}", "{region}", au) for au in AUS],
            preds=[SEEDED.au_predictions("{split}", "{backbone}_ft-{region}-softmax", au) for au in AUS],
        params:
            groups=lambda wc: list(ft_groups(wc.region).values()),
            aus=AUS,
        log:
            "logs{seedpart}/finetune/{split}/{backbone}-{region}/unpack.log",
        conda:
            "../../envs/au_transfer.yaml"
        script:
            "../scripts/finetune.py"


rule ft_features:
    input:
        model=lambda wc: LAYOUT.ft_network(wc.split, wc.backbone, wc.region, wc.unit),
        faces=lambda wc: [LAYOUT.faces(r) for r in split_recordings(wc.split)],
    output:
        directory(LAYOUT.ft_feature_dir("{split}", "{backbone}", "{region}", "{unit}")),
    wildcard_constraints:
        unit=r"AU\d+|multilabel-(face|upper|middle|lower)",
    params:
        subjects=lambda wc: split_recordings(wc.split),
        paths=lambda wc: [LAYOUT.ft_features(wc.split, wc.backbone, wc.region, wc.unit, s)
                          for s in split_recordings(wc.split)],
        batch_size=FT["feature_batch_size"],
        num_workers=FT["num_workers"],
        device=FT["device"],
        amp=FT["amp"],
    log:
        "logs/finetune/{split}/ft_features_{backbone}-{region}-{unit}.log",
    threads: FT["threads"]
    priority: 1
    resources:
        gpu=gpu_claim(FT["device"]),
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/ft_features.py"


register_targets(
    "finetune",
    lambda: (
        [
            LAYOUT.finetune_net(split, b, r, au)
            for split in SPLITS
            for b in FT["backbones"]
            for r in FT["regions"]
            for au in AUS
        ]
        if FT["enabled"]
        else []
    )
    + ft_feature_targets(),
)
