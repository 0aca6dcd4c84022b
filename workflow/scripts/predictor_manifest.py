"""Snakemake adapter: results/models/{split}/predictor.json, the settings `au-transfer predict` reuses."""

from au_transfer.io import setup_logging
from au_transfer.predict import write_manifest

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
p = sm.params
write_manifest(sm.output[0], split=sm.wildcards.split, aus=p.aus, faces=p.faces, backbones=p.backbones,
               au_region=p.au_region, threshold=p.threshold, corpus=p.corpus,
               val_in_sample=p.val_in_sample)
