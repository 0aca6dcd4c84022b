"""Snakemake adapter: fit one frame classifier (LDA or SVM) for one (split, model, AU) and predict val + test."""

from au_transfer.classifiers.jobs import fit_job_args, run_frame_job
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
run_frame_job(**fit_job_args(sm), classifier=sm.params.classifier, balance=bool(sm.params.balance),
              refit=sm.params.options.get("refit", "train"))
