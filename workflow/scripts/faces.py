"""Snakemake adapter: aligned faces, aligned landmarks and region boxes of one subject (compute_faces)."""

import cv2

from au_transfer.faces import FaceSettings, compute_faces
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821  (injected by Snakemake)

setup_logging(sm.log[0])
cv2.setNumThreads(int(sm.threads))
# the rule's params are the faces job's keys of the `faces` section, under their own names
settings = FaceSettings.from_config(dict(sm.params.items()))
compute_faces(sm.input.video, sm.input.landmarks, sm.output[0], settings, progress=False)
