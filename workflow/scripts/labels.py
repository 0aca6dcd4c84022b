"""Snakemake adapter: validated label table of one subject plus its label/video/landmark frame report."""

from au_transfer.datasets.disfa import export_labels
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821  (injected by Snakemake)

setup_logging(sm.log[0])
p = sm.params
export_labels(p.root, sm.wildcards.subject, [int(a) for a in p.aus], sm.output.csv,
              sm.output.report, camera=p.camera)
