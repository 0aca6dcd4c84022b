"""Snakemake adapter: fit one intensity regressor for one (split, model, AU) and predict val + test intensities."""

from au_transfer.intensity.jobs import run_regress_job
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
p = sm.params
sets = p.sets
subjects = sets["train"] + sets["val"] + sets["test"]
run_regress_job(
    feature_paths=dict(zip(subjects, p.features, strict=True)),
    label_paths=dict(zip(subjects, sm.input.labels, strict=True)),
    train=sets["train"], val=sets["val"], test=sets["test"], au=int(sm.wildcards.au),
    backbone=sm.wildcards.backbone, region=sm.wildcards.region, crop_region=p.crop_region,
    regressor=p.regressor, params=dict(p.options), seed=int(p.seed), threshold=int(p.threshold),
    split=sm.wildcards.split, model_out=sm.output.model, pred_out=sm.output.pred,
)
