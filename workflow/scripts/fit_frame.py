"""Snakemake adapter: fit one frame classifier (LDA or SVM) for one (split, model, AU) and predict val + test."""

from au_transfer.classifiers.jobs import run_frame_job
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
p = sm.params
sets = p.sets
subjects = sets["train"] + sets["val"] + sets["test"]
run_frame_job(
    feature_paths=dict(zip(subjects, p.features, strict=True)),
    label_paths=dict(zip(subjects, sm.input.labels, strict=True)),
    train=sets["train"], val=sets["val"], test=sets["test"], au=int(sm.wildcards.au),
    backbone=sm.wildcards.backbone, region=sm.wildcards.region, crop_region=p.crop_region,
    classifier=p.classifier, params=dict(p.options), seed=int(p.seed), threshold=int(p.threshold),
    balance=bool(p.balance), refit=p.options.get("refit", "train"), split=sm.wildcards.split,
    model_out=sm.output.model, pred_out=sm.output.pred,
)
