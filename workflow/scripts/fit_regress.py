"""Snakemake adapter: fit one intensity regressor for one (split, model, AU) and predict val + test intensities."""

from au_transfer.classifiers.jobs import fit_job_args
from au_transfer.intensity.jobs import run_regress_job
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
run_regress_job(**fit_job_args(sm), regressor=sm.params.regressor)
