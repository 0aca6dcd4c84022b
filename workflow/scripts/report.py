"""Snakemake adapter: the paper-style report (tables, figures, paper and state-of-the-art numbers beside ours) from the metrics."""

from pathlib import Path

from au_transfer.io import setup_logging
from au_transfer.report import build_report

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
build_report([sm.input.summary], Path(sm.output.html).parent, corpus=sm.params.corpus, split=sm.params.split,
             paper_models=sm.params.paper_models, ensembles=sm.params.ensembles,
             paper_ensembles=sm.params.paper_ensembles, corpora=sm.params.corpora,
             intensity_summary=sm.input.get("intensity"), splits=sm.params.splits, aus=sm.params.aus,
             threshold=sm.params.threshold)
