"""The DISFA adapter of the corpus interface (:mod:`.base`): DISFA's files are read by :mod:`.disfa`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import DISFA_AUS
from ..config import DISFA_SUBJECTS
from .base import Corpus, CorpusError, Recording, label_frame, register
from .disfa import (
    DisfaError,
    canonical_video_path,
    label_dir,
    landmark_files,
    read_labels,
    read_landmark_file,
    video_path,
)


@register
class DisfaCorpus(Corpus):
    """DISFA through the corpus interface: 27 subjects, one recording each (the video of ``options.camera``, default
    ``left``), intensity labels 0-5 for 12 AUs (no unknown), shipped 66-point landmarks. Recording id = subject id,
    so DISFA's results keep their file names."""

    name = "disfa"
    aus = tuple(DISFA_AUS)
    intensity_aus = tuple(DISFA_AUS)
    one_recording_per_subject = True
    ships_landmarks = True
    people = "DISFA"  # DISFA+ records some of these people again (its people are DISFA's)

    @property
    def camera(self) -> str:
        return str(self.options.get("camera", "left"))

    def subjects(self) -> list[str]:
        return [self.workflow_id(s) for s in DISFA_SUBJECTS]

    def recordings(self, subject: str) -> list[Recording]:
        own = self.own_id(subject)
        try:
            source = video_path(self.root, own, self.camera)
        except DisfaError:
            source = canonical_video_path(self.root, own, self.camera)
        return [Recording(id=subject, subject=subject, sequence=self.camera, source=source, corpus=self.name)]

    def labels(self, recording: Recording, aus) -> pd.DataFrame:
        try:
            df = read_labels(self.root, self.own_id(recording.subject), aus)
        except DisfaError as exc:
            raise CorpusError(str(exc)) from exc
        return label_frame(df["frame"], {c: df[c] for c in df.columns if c != "frame"})

    def label_inputs(self, recording: Recording) -> list[Path]:
        return [label_dir(self.root, self.own_id(recording.subject))]

    def landmark_files(self, recording: Recording) -> dict[int, Path] | None:
        return landmark_files(self.root, self.own_id(recording.subject))

    def read_landmark_file(self, path: Path) -> np.ndarray:
        return read_landmark_file(path)

    def landmark_inputs(self, recording: Recording) -> list[Path]:
        return [Path(self.root) / "Landmark_Points" / self.own_id(recording.subject)]
