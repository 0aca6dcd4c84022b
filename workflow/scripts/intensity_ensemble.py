"""Snakemake adapter: combine regressors' intensity predictions (mean, or weights fitted on validation)."""

from au_transfer.intensity.tables import ensemble_intensity
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
ensemble_intensity(list(sm.input), sm.params.members, sm.params.method, sm.output.pred, sm.output.params,
                   name=sm.wildcards.name, threshold=int(sm.params.threshold))
