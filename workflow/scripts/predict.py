"""Snakemake adapter: one input of `snakemake predict` -> results/predict/{split}/{name}.csv (and its pictures)."""

from pathlib import Path

from au_transfer.io import setup_logging
from au_transfer.predict.batch import predict_inputs

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
p = sm.params
predict_inputs({Path(sm.input.video): Path(sm.output.csv)}, results=p.results, split=sm.wildcards.split,
               model=p.model, regressor=p.regressor, device=p.device, batch_size=p.batch_size, options=p.options,
               plot=p.plot, overlay=p.overlay)
