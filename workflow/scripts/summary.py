"""Snakemake adapter: one tidy table of every model's metrics on every split (+ k-fold mean rows), a seeded model's
runs (results/seeds/seed{n}/metrics/..., config seeds) as their mean and standard deviation."""

import logging

import pandas as pd

from au_transfer.evaluation import add_corpus_columns, headline, summarize
from au_transfer.io import setup_logging, write_csv_atomic
from au_transfer.layout import Layout

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
summary = add_corpus_columns(summarize([pd.read_csv(f, dtype={"au": str}) for f in sm.input],
                                         seeds=[Layout.seed_of(f) for f in sm.input]), sm.params.corpora)
write_csv_atomic(summary, sm.output[0])
logging.getLogger("summary").info("mean F1 over the AUs:\n%s", headline(summary).to_string(index=False))
