"""Snakemake adapter: every model's intensity metrics in one table (a seeded model's runs as mean and sd)."""

from au_transfer.intensity.tables import write_summary
from au_transfer.io import setup_logging
from au_transfer.layout import Layout

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
write_summary(list(sm.input), sm.output[0], seeds=[Layout.seed_of(f) for f in sm.input])
