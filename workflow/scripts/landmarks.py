"""Snakemake adapter: 68 landmarks for every frame of one recording (au_transfer.faces.compute_landmarks).

The corpus's shipped landmarks are DISFA's (input `landmarks`, with faces.landmarks = disfa); a recording of a corpus
that ships none has no such input, and every frame takes the fallback detector."""

import logging
from pathlib import Path

import cv2

from au_transfer.datasets import disfa
from au_transfer.faces import FaceSettings, compute_landmarks
from au_transfer.io import setup_logging

sm = snakemake  # type: ignore[name-defined]  # noqa: F821  (injected by Snakemake)

setup_logging(sm.log[0])
cv2.setNumThreads(int(sm.threads))
p = sm.params
subject = sm.wildcards.recording
log = logging.getLogger("landmarks")
# the rule's params besides `root` are the landmarks job's keys of the `faces` section, under their own names
settings = FaceSettings.from_config({k: v for k, v in p.items() if k != "root"})

files = None
if settings.landmarks == "disfa" and "landmarks" not in sm.input.keys():
    log.warning("recording %s: its corpus ships no landmarks; every frame uses the fallback %s", subject,
                settings.fallback)
    files = {}
elif settings.landmarks == "disfa":
    try:
        files = disfa.landmark_files(p.root, subject)
    except disfa.DisfaError as exc:
        if settings.fallback == "none":
            raise
        log.warning("%s; every frame falls back to %s", exc, settings.fallback)
        files = {}

# label frames (DISFA): every AU file of the subject covers the same frames (checked by the labels stage)
label_files = sorted(Path(sm.input.labels).glob(f"{subject}_au*.txt")) if "labels" in sm.input.keys() else []
label_frames = disfa.read_label_file(label_files[0]).index.tolist() if label_files else []
if not label_files and "labels" in sm.input.keys():
    log.warning("subject %s: no label files in %s", subject, sm.input.labels)

counts = compute_landmarks(
    sm.input.video, sm.output[0], subject, settings, landmark_files=files, read_landmark_file=disfa.read_landmark_file,
    n_frames_labels=len(label_frames) if label_files else None, progress=False,
)
if label_files:
    disfa.reconcile_counts(subject, label_frames, counts["n_frames_video"], list(files or []))
