"""Snakemake adapter: fc6 features of one fine-tuned network for every subject of its split, into its folder."""

import torch

from au_transfer.finetune import extract_ft_features_many
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
torch.set_num_threads(max(1, int(sm.threads)))
p = sm.params
extract_ft_features_many(
    sm.input.model, dict(zip(p.subjects, sm.input.faces, strict=True)), list(p.paths), subjects=list(p.subjects),
    split=sm.wildcards.split, batch_size=int(p.batch_size), num_workers=int(p.num_workers), device=p.device,
    amp=p.amp,
)
