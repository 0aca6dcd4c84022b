"""Snakemake adapter: merge one regressor's per-AU intensity predictions."""

from au_transfer.intensity.tables import merge_intensity
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
merge_intensity(list(sm.input), sm.output[0])
