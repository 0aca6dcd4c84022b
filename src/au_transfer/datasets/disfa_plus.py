"""DISFA+ through the corpus interface (registered as ``disfa_plus``).

The layout (``root`` is the DISFA+ folder)::

    Images/SN001/A1_AU1_TrailNo_1/000.jpg     one folder per trial; images numbered from 0 (3 digits in the
                                              release; any padding is read)
    Labels/SN001/A1_AU1_TrailNo_1/AU1.txt     one file per AU (AU1 ... AU26; also ``au1.txt``, ``AU01.txt``):
                                              lines ``000.jpg <intensity>`` (whitespace, comma or semicolon
                                              separated), intensity 0-5

Subjects are the folders of ``Images`` and each trial (a folder of a subject's images) is one recording (id
``SN001.A1_AU1_TrailNo_1``), both listed from disk and sorted. A trial name holding characters other than
letters, digits, ``_`` and ``-`` becomes a sequence name with ``_`` in their place. Lines before the first data line
of a label file (headers, counts) are skipped; after it, a line that is not ``<image> <intensity>`` is an error.
A frame that one AU file lists and another does not is unknown (empty) for the AU that lacks it. The label table
holds the frames of the label files (``frame`` = position of the image, ``source_frame`` = its number).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import DISFA_AUS
from .base import (
    Corpus,
    CorpusError,
    Recording,
    check_name,
    label_frame,
    parse_frame_number,
    recording_id,
    register,
)
from .tables import as_number, note_frame, ranges, rows

MAX_INTENSITY: int = 5
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def read_au_file(path: Path) -> dict[int, float]:
    """``{frame number: intensity}`` of one DISFA+ AU file (module docstring)."""
    out: dict[int, float] = {}
    seen: dict[int, int] = {}
    started = False
    for lineno, cells in rows(path, sep="any"):
        number = parse_frame_number(cells[0]) if len(cells) == 2 else None
        value = as_number(cells[1]) if len(cells) == 2 else None
        if number is None or value is None:
            if not started:
                continue  # a header line
            raise CorpusError(f"{path}, line {lineno}: expected '<image> <intensity>', got {' '.join(cells)!r}")
        started = True
        if not (0 <= value <= MAX_INTENSITY and value == int(value)):
            raise CorpusError(f"{path}, line {lineno}: intensity {cells[1]!r} of {cells[0]} is outside "
                              f"0-{MAX_INTENSITY}")
        note_frame(seen, number, path, lineno)
        out[number] = value
    if not started:
        raise CorpusError(f"{path}: no '<image> <intensity>' line")
    return out


@register
class DisfaPlusCorpus(Corpus):
    """DISFA+ (module docstring)."""

    name = "disfa_plus"
    aus = tuple(DISFA_AUS)
    intensity_aus = tuple(DISFA_AUS)
    people = "DISFA"  # DISFA+ subject SN001 is DISFA's SN001 (the same person, recorded again)

    def _dir(self, kind: str) -> Path:
        return self.root / kind

    def subjects(self) -> list[str]:
        images = self._dir("Images")
        if not images.is_dir():
            raise CorpusError(f"{images}: the DISFA+ image folder is missing (data_root {self.root})")
        names = sorted(p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            raise CorpusError(f"{images}: no subject folders")
        return [self.workflow_id(check_name(n, "subject folder", str(images))) for n in names]

    def _trials(self, own: str) -> dict[str, Path]:
        """``{sequence name: trial image folder}`` of a subject, sorted by folder name."""
        folder = self._dir("Images") / own
        if not folder.is_dir():
            raise CorpusError(f"{folder}: image folder of DISFA+ subject {own} is missing")
        out: dict[str, Path] = {}
        for p in sorted(q for q in folder.iterdir() if q.is_dir() and not q.name.startswith(".")):
            seq = _BAD_CHARS.sub("_", p.name)
            if seq in out:
                raise CorpusError(f"{folder}: trials {out[seq].name!r} and {p.name!r} both become sequence {seq!r}")
            out[seq] = p
        if not out:
            raise CorpusError(f"{folder}: no trial folders for subject {own}")
        return out

    def recordings(self, subject: str) -> list[Recording]:
        own = self.own_id(subject)
        return [Recording(id=recording_id(subject, seq), subject=subject, sequence=seq, source=src, corpus=self.name)
                for seq, src in self._trials(own).items()]

    def label_dir(self, recording: Recording) -> Path:
        return self._dir("Labels") / self.own_id(recording.subject) / recording.source.name

    def au_file(self, recording: Recording, au: int) -> Path:
        folder = self.label_dir(recording)
        names = (f"AU{au}.txt", f"au{au}.txt", f"AU{au:02d}.txt", f"au{au:02d}.txt")
        for name in names:
            if (folder / name).is_file():
                return folder / name
        raise CorpusError(f"{folder / names[0]}: label file of AU{au} ({recording.id}) is missing")

    def labels(self, recording: Recording, aus: Sequence[int]) -> pd.DataFrame:
        from ..faces.video import VideoError, image_files

        self.check_aus(aus)
        aus = [a for a in DISFA_AUS if a in {int(x) for x in aus}]
        per_au = {a: read_au_file(self.au_file(recording, a)) for a in aus}
        numbers = sorted(set().union(*per_au.values())) if per_au else []
        try:
            files = image_files(recording.source, recording.subject)
        except VideoError as exc:
            raise CorpusError(str(exc)) from exc
        pos = {n: i + 1 for i, (n, _) in enumerate(files)}
        missing = [n for n in numbers if n not in pos]
        if missing:
            raise CorpusError(f"{self.label_dir(recording)}: no image for labelled frame(s) {ranges(missing)} in "
                              f"{recording.source}")
        columns = {f"AU{a}": np.array([v.get(n, np.nan) for n in numbers], dtype=np.float64)
                   for a, v in per_au.items()}
        return label_frame([pos[n] for n in numbers], columns, source_frames=numbers)

    def label_inputs(self, recording: Recording) -> list[Path]:
        return [self.label_dir(recording), recording.source]
