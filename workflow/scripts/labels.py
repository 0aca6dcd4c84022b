"""Snakemake adapter: validated label table of one recording plus its frame report (its corpus adapter)."""

from au_transfer.datasets.export import export_recording_labels
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821  (injected by Snakemake)

setup_logging(sm.log[0])
p = sm.params
export_recording_labels(dict(p.corpus), sm.wildcards.recording, [int(a) for a in p.aus], sm.output.csv,
                        sm.output.report)
