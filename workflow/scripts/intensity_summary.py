"""Snakemake adapter: every model's intensity metrics in one table."""

from au_transfer.intensity.tables import write_summary
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
write_summary(list(sm.input), sm.output[0])
