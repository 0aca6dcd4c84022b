# Stage finetune: fine-tuned CNNs (paper V), their fc6 features (VII-B) and the region-based approach (VII-C).
# Model ids {backbone}_ft-{region}-softmax; see docs/finetune.md.
#   per_au head:     one training job per (split, backbone, region, AU)            -> AU{au}.pt + predictions
#   multilabel head: one training job per (split, backbone, region, crop region),
#                    then one cheap unpack job per (split, backbone, region)       -> AU{au}.pt + predictions
# (the unpack job writes the per-AU networks and predictions of one (split, backbone, region) at once).
# A running job keeps an untracked checkpoint beside its output (results/finetune/.../*.ckpt, not a declared
# output, so Snakemake leaves it when the job fails); a rerun resumes from its last finished epoch.

_FT_PARAMS = dict(
    sets=lambda wc: split_sets(wc.split),
    backbone_options=lambda wc: ft_backbone_options(wc.backbone),
    au_region=config["regions"].get("au_region"),
    threshold=config["data"]["threshold"],
    options=FT_OPTIONS,
    device=FT["device"],
)


if FT["head"] == "per_au":

    rule finetune:
        input:
            unpack(ft_train_inputs),
        output:
            model="results/finetune/{split}/{backbone}-{region}/AU{au}.pt",
            pred="results/predictions/{split}/{backbone}_ft-{region}-softmax/AU{au}.csv",
        params:
            aus=lambda wc: [int(wc.au)],
            ckpt=lambda wc: f"results/finetune/{wc.split}/{wc.backbone}-{wc.region}/AU{wc.au}.ckpt",
            **_FT_PARAMS,
        log:
            "logs/finetune/{split}/{backbone}-{region}/AU{au}.log",
        threads: FT["threads"]
        resources:
            gpu=1,
        conda:
            "../../envs/au_transfer.yaml"
        script:
            "../scripts/finetune.py"

else:

    rule finetune_multilabel:
        input:
            unpack(ft_train_inputs),
        output:
            model="results/finetune/{split}/{backbone}-{region}/multilabel-{crop_region}.pt",
            pred="results/finetune/{split}/{backbone}-{region}/multilabel-{crop_region}.csv",
        params:
            aus=lambda wc: ft_groups(wc.region)[wc.crop_region],
            ckpt=lambda wc: f"results/finetune/{wc.split}/{wc.backbone}-{wc.region}/multilabel-{wc.crop_region}.ckpt",
            **_FT_PARAMS,
        log:
            "logs/finetune/{split}/{backbone}-{region}/multilabel-{crop_region}.log",
        threads: FT["threads"]
        resources:
            gpu=1,
        conda:
            "../../envs/au_transfer.yaml"
        script:
            "../scripts/finetune.py"

    rule finetune_unpack:
        input:
            models=lambda wc: [f"results/finetune/{wc.split}/{wc.backbone}-{wc.region}/multilabel-{c}.pt"
                               for c in ft_groups(wc.region)],
            preds=lambda wc: [f"results/finetune/{wc.split}/{wc.backbone}-{wc.region}/multilabel-{c}.csv"
                              for c in ft_groups(wc.region)],
        output:
            models=expand("results/finetune/{{split}}/{{backbone}}-{{region}}/AU{au}.pt", au=AUS),
            preds=expand("results/predictions/{{split}}/{{backbone}}_ft-{{region}}-softmax/AU{au}.csv", au=AUS),
        params:
            groups=lambda wc: list(ft_groups(wc.region).values()),
            aus=AUS,
        log:
            "logs/finetune/{split}/{backbone}-{region}/unpack.log",
        conda:
            "../../envs/au_transfer.yaml"
        script:
            "../scripts/finetune.py"


# Fine-tuned features: one job per network, writing every subject of its split (the network is loaded once).
# A multilabel network serves several AUs: its features are extracted once and copied to each AU's folder.
for _split, _sp in SPLITS.items():
    if FT["head"] == "per_au":
        _units = {"": None}
    else:
        _units = {f"_{r}_{c}": (r, aus) for r in FT["regions"] for c, aus in ft_groups(r).items()}
    for _suffix, _unit in _units.items():
        if _unit is None:
            _out = [f"results/ft_features/{_split}/{{backbone}}_ft/{{region}}/AU{{au}}/{s}.h5" for s in _sp.all]
            _model = f"results/finetune/{_split}/{{backbone}}-{{region}}/AU{{au}}.pt"
            _logname = f"logs/finetune/{_split}/ft_features_{{backbone}}-{{region}}-AU{{au}}.log"
        else:
            _r, _aus = _unit
            _out = [f"results/ft_features/{_split}/{{backbone}}_ft/{_r}/AU{au}/{s}.h5" for au in _aus for s in _sp.all]
            _model = f"results/finetune/{_split}/{{backbone}}-{_r}/AU{_aus[0]}.pt"
            _logname = f"logs/finetune/{_split}/ft_features_{{backbone}}-{_r}-{crop_region_of(_r, _aus[0])}.log"

        rule:
            name:
                f"ft_features_{_split}{_suffix}"
            input:
                model=_model,
                faces=[f"results/faces/{s}.h5" for s in _sp.all],
            output:
                _out,
            params:
                subjects=list(_sp.all),
                aus=None if _unit is None else list(_unit[1]),
                batch_size=FT["feature_batch_size"],
                num_workers=FT["num_workers"],
                device=FT["device"],
                amp=FT["amp"],
            log:
                _logname,
            threads: FT["threads"]
            resources:
                gpu=1,
            conda:
                "../../envs/au_transfer.yaml"
            script:
                "../scripts/ft_features.py"


if FT["enabled"]:
    register_model_ids(ft_model_ids)
register_targets(
    "finetune",
    lambda: (
        [
            f"results/finetune/{split}/{b}-{r}/AU{au}.pt"
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
