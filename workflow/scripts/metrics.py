"""Snakemake adapter: per-AU F1 and classification rate of one model on one split's test frames (and coverage)."""

import pandas as pd

from au_transfer.evaluation import au_metrics
from au_transfer.io import setup_logging, write_csv_atomic

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
pred = pd.read_csv(sm.input[0])
write_csv_atomic(au_metrics(pred, model=sm.wildcards.model, split=sm.wildcards.split, aus=sm.params.aus,
                            name=str(sm.input[0]), invalid_frames=sm.params.invalid_frames), sm.output[0])
