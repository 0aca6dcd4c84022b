"""Snakemake adapter: train one AU's LSTM for one (split, model) and predict the full val + test sequences."""

import torch

from au_transfer.classifiers.jobs import fit_job_args, run_lstm_job
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
torch.set_num_threads(max(1, int(sm.threads)))
run_lstm_job(**fit_job_args(sm))
