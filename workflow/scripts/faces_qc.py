"""Snakemake adapter: QC contact sheet and per-frame status table of one subject (au_transfer.faces.write_qc)."""

import cv2

from au_transfer.faces import write_qc
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821  (injected by Snakemake)

setup_logging(sm.log[0])
cv2.setNumThreads(int(sm.threads))
p = sm.params
write_qc(sm.input.landmarks, sm.input.faces, sm.output.png, sm.output.csv, n_samples=int(p.samples),
         columns=int(p.columns), tile=int(p.tile), video=sm.input.video)
