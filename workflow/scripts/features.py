"""Snakemake adapter: one backbone's features of one crop region for every frame of one subject's face store."""

from au_transfer.features import extract_features
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
p = sm.params
extract_features(
    sm.input.faces, sm.output[0], p.backbone, sm.wildcards.crop_region,
    weights=p.weights, key_map=p.key_map, seed=p.seed, batch_size=p.batch_size, num_workers=p.num_workers,
    device=p.device, amp=p.amp, compression=p.compression, threads=sm.threads,
    mean_image=sm.input.get("mean_image"), progress=True,
)
