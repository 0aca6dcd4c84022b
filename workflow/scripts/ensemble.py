"""Snakemake adapter: combine the members' predictions of one split into an ensemble's predictions."""

from au_transfer.ensemble import run_ensemble
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
run_ensemble(dict(zip(sm.params.members, sm.input, strict=True)), sm.output.pred, sm.output.params,
             name=sm.wildcards.name, method=sm.params.method, tie=sm.params.tie, C=sm.params.C,
             class_weight=sm.params.class_weight)
