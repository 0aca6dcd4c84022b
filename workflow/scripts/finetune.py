"""Snakemake adapter: one fine-tuning job (rule finetune / finetune_multilabel) or one per-AU unpack of a
multilabel network (rule finetune_unpack)."""

import torch

from au_transfer.finetune import run_finetune, unpack_au
from au_transfer.io import setup_logging
from au_transfer.labels import as_threshold

sm = snakemake  # type: ignore[name-defined]  # noqa: F821
setup_logging(sm.log[0])
if sm.rule == "finetune_unpack":
    group_of = {au: g for g, aus in enumerate(sm.params.groups) for au in aus}
    for au, model, pred in zip(sm.params.aus, sm.output.models, sm.output.preds, strict=True):
        g = group_of[au]
        unpack_au(sm.input.models[g], sm.input.preds[g], int(au), model, pred)
else:
    torch.set_num_threads(max(1, int(sm.threads)))
    p = sm.params
    sets = p.sets
    subjects = sets["train"] + sets["val"] + sets["test"]
    run_finetune(
        face_paths=dict(zip(subjects, sm.input.faces, strict=True)),
        label_paths=dict(zip(subjects, sm.input.labels, strict=True)),
        train_subjects=sets["train"], val_subjects=sets["val"], test_subjects=sets["test"],
        backbone=sm.wildcards.backbone, weights=p.backbone_options["weights"],
        backbone_kwargs={k: p.backbone_options[k] for k in ("key_map", "seed")}, region=sm.wildcards.region,
        aus=list(p.aus),
        au_region=p.au_region, threshold=as_threshold(p.threshold), cfg=dict(p.options), out_model=sm.output.model,
        out_predictions=sm.output.pred, ckpt_path=p.ckpt, device=p.device, split=sm.wildcards.split,
    )
