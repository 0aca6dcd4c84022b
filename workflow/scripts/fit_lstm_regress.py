"""Snakemake adapter: train one AU's LSTM regressor for one (split, model) and predict val + test intensities."""

import torch

from au_transfer.intensity.jobs import run_lstm_regress_job
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
torch.set_num_threads(max(1, int(sm.threads)))
p = sm.params
sets = p.sets
subjects = sets["train"] + sets["val"] + sets["test"]
run_lstm_regress_job(
    feature_paths=dict(zip(subjects, p.features, strict=True)),
    label_paths=dict(zip(subjects, sm.input.labels, strict=True)),
    train=sets["train"], val=sets["val"], test=sets["test"], au=int(sm.wildcards.au),
    backbone=sm.wildcards.backbone, region=sm.wildcards.region, crop_region=p.crop_region,
    params=dict(p.options), seed=int(p.seed), threshold=int(p.threshold), split=sm.wildcards.split,
    model_out=sm.output.model, pred_out=sm.output.pred,
)
