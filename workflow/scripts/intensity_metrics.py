"""Snakemake adapter: ICC(3,1), PCC, MAE, MSE per AU and mean of one model's test intensities."""

from au_transfer.intensity.tables import write_metrics
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
write_metrics(sm.input[0], sm.output[0], model=sm.wildcards.model, split=sm.wildcards.split, aus=sm.params.aus,
              invalid_frames=sm.params.invalid_frames)
