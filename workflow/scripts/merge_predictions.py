"""Snakemake adapter: merge one model's per-AU predictions (or derive the always-present baseline)."""

import pandas as pd

from au_transfer.evaluation import always_present, merge_predictions
from au_transfer.io import setup_logging, write_csv_atomic

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
if sm.params.get("baseline", False):
    out = always_present(pd.read_csv(sm.input[0]))
else:
    out = merge_predictions((pd.read_csv(f) for f in sm.input), aus=sm.params.aus, name=str(sm.output[0]))
write_csv_atomic(out, sm.output[0])
