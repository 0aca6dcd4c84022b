"""Snakemake adapter: results/models/{split}/predictor.json, the settings `au-transfer predict` reuses."""

from au_transfer.io import setup_logging
from au_transfer.predict import write_manifest

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
write_manifest(sm.output[0], split=sm.wildcards.split, aus=sm.params.aus, faces=sm.params.faces,
               backbones=sm.params.backbones, au_region=sm.params.au_region, threshold=sm.params.threshold)
