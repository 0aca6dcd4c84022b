"""Snakemake adapter: mean image of one crop region over a split's training subjects (paper IV-A, VGG-Face)."""

import numpy as np

from au_transfer.backbones import get_spec
from au_transfer.features import compute_mean_image
from au_transfer.io import atomic_path, setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
size = get_spec(sm.params.backbone).input_size
mean = compute_mean_image(list(sm.input.faces), sm.wildcards.crop_region, size)
with atomic_path(sm.output[0]) as tmp, open(tmp, "wb") as fh:
    np.save(fh, mean)
