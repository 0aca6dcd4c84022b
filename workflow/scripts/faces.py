"""Snakemake adapter: aligned faces, aligned landmarks and region boxes of one subject (compute_faces)."""

import cv2

from au_transfer.faces import compute_faces
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821  (injected by Snakemake)

setup_logging(sm.log[0])
cv2.setNumThreads(int(sm.threads))
p = sm.params
compute_faces(sm.input.video, sm.input.landmarks, sm.output[0], size=int(p.size), margin=float(p.margin),
              min_image_std=float(p.min_image_std), region_pad=float(p.region_pad),
              region_forehead=float(p.region_forehead), crop_aspect=p.crop_aspect, encoding=p.encoding,
              compression=p.compression, compression_level=int(p.compression_level),
              jpeg_quality=int(p.jpeg_quality), progress=False)
