"""Snakemake adapter: write one synthetic subject in the DISFA layout (au_transfer.datasets.demo)."""

import cv2

from au_transfer.datasets.demo import generate_subject
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821  (injected by Snakemake)

setup_logging(sm.log[0])
cv2.setNumThreads(int(sm.threads))
p = sm.params
generate_subject(p.root, sm.wildcards.subject, n_frames=int(p.n_frames), width=int(p.width),
                 height=int(p.height), fps=float(p.fps), seed=int(p.seed), camera=p.camera,
                 quality=int(p.quality))
