"""A user's own FACS-coded videos through the corpus interface (registered as ``generic``; docs/corpora.md).

``root`` holds ``recordings.csv``, one row per recording::

    subject,sequence,source,labels
    P01,,videos/p01.mp4,labels/p01.csv              sequence may be empty when the subject has one recording
    P02,interview,frames/p02_interview,labels/p02_interview.csv     source: a video file or a folder of images

(paths relative to root; the ``sequence`` column may be left out). Each label CSV is ``frame,AU1,AU2,...``: ``frame``
the 1-based video frame number (an image folder: the number in the image's name), one column per AU (``AU1`` or
``1``), an empty cell = unknown. Option ``labels``: ``occurrence`` (default; 0/1, written as ``AU{n}_c``) or
``intensity`` (0-5, written as ``AU{n}``). The corpus's AUs are the AU columns found in its label files. Recording
ids: ``subject`` (empty sequence) or ``subject.sequence``. The splits are the config's ``splits`` section.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .base import Corpus, CorpusError, Recording, check_name, label_frame, recording_id, register
from .tables import as_int, as_number, au_header, note_frame, ranges, require_aus, rows

LABEL_KINDS: tuple[str, ...] = ("occurrence", "intensity")
INDEX_NAME = "recordings.csv"
REQUIRED_COLUMNS: tuple[str, ...] = ("subject", "source", "labels")


@dataclass(frozen=True)
class _Row:
    recording: Recording
    labels: Path
    line: int


def read_label_csv(path: Path, aus: Sequence[int], kind: str, *, min_frame: int = 1
                   ) -> tuple[list[int], dict[int, np.ndarray]]:
    """Frame numbers (file order) and ``{AU: value or NaN}`` of one label CSV (module docstring)."""
    top = 1 if kind == "occurrence" else 5
    frames: list[int] = []
    values: dict[int, list[float]] = {int(a): [] for a in aus}
    header: dict[int, int] | None = None
    seen: dict[int, int] = {}
    for lineno, cells in rows(path):
        if header is None:
            if cells[0].lower() != "frame":
                raise CorpusError(f"{path}, line {lineno}: the first column must be 'frame', got {cells[0]!r}")
            header = au_header(cells, path, lineno)
            require_aus(header, aus, path)
            continue
        frame = as_int(cells[0], path, lineno, "frame number")
        if frame < min_frame:
            raise CorpusError(f"{path}, line {lineno}: frame {frame} is below {min_frame}")
        note_frame(seen, frame, path, lineno)
        frames.append(frame)
        for au in values:
            col = header[au]
            cell = cells[col] if col < len(cells) else ""
            v = as_number(cell) if cell else np.nan
            if v is None or (cell and not (0 <= v <= top and v == int(v))):
                raise CorpusError(f"{path}, line {lineno}: AU{au} of frame {frame} is {cell!r}; {kind} must be "
                                  f"0-{top} (empty = unknown)")
            values[au].append(v)
    if header is None:
        raise CorpusError(f"{path}: label file is empty")
    return frames, {a: np.asarray(v, dtype=np.float64) for a, v in values.items()}


def label_header_aus(path: Path) -> list[int]:
    """The AUs of a label CSV's header."""
    for lineno, cells in rows(path):
        return sorted(au_header(cells, path, lineno))
    raise CorpusError(f"{path}: label file is empty")


@register
class GenericCorpus(Corpus):
    """A user's corpus described by ``recordings.csv`` (module docstring). Options: ``labels``."""

    name = "generic"

    def __init__(self, root, *, prefix: str = "", options=None) -> None:
        super().__init__(root, prefix=prefix, options=options)
        kind = str(self.options.get("labels", "occurrence"))
        if kind not in LABEL_KINDS:
            raise CorpusError(f"data.options.labels: {kind!r} is not one of {', '.join(LABEL_KINDS)}")
        self.kind = kind
        self._rows: dict[str, _Row] | None = None
        self._aus: tuple[int, ...] | None = None

    # -------------------------------------------------------------------------------------------- index
    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    def _index(self) -> dict[str, _Row]:
        """``{recording id: row}`` in file order, read once and checked (errors name recordings.csv and line)."""
        if self._rows is not None:
            return self._rows
        path = self.index_path
        if not path.is_file():
            raise CorpusError(f"{path}: the generic corpus's index is missing (data_root {self.root})")
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            lines = [(i, [c.strip() for c in r]) for i, r in enumerate(reader, start=1) if any(c.strip() for c in r)]
        if not lines:
            raise CorpusError(f"{path}: empty (expected a header 'subject,sequence,source,labels')")
        head = [c.lower() for c in lines[0][1]]
        missing = [c for c in REQUIRED_COLUMNS if c not in head]
        if missing:
            raise CorpusError(f"{path}, line {lines[0][0]}: missing column(s) {', '.join(missing)} (header: "
                              f"{','.join(lines[0][1])}; expected subject,sequence,source,labels)")
        col = {c: head.index(c) for c in (*REQUIRED_COLUMNS, "sequence") if c in head}
        entries: list[tuple[int, str, str, Path, Path]] = []
        for lineno, cells in lines[1:]:
            get = {c: (cells[i] if i < len(cells) else "") for c, i in col.items()}
            where = f"{path}, line {lineno}"
            subject = check_name(get["subject"], "subject", where)
            seq = check_name(get["sequence"], "sequence", where) if get.get("sequence") else ""
            for c in ("source", "labels"):
                if not get[c]:
                    raise CorpusError(f"{where}: the {c} cell is empty")
            source, labels = self.root / get["source"], self.root / get["labels"]
            if not source.exists():
                raise CorpusError(f"{where}: source {source} does not exist")
            if not labels.is_file():
                raise CorpusError(f"{where}: label file {labels} does not exist")
            entries.append((lineno, subject, seq, source, labels))
        out: dict[str, _Row] = {}
        count: dict[str, int] = {}
        for _, subject, _, _, _ in entries:
            count[subject] = count.get(subject, 0) + 1
        for lineno, subject, seq, source, labels in entries:
            if not seq and count[subject] > 1:
                raise CorpusError(f"{path}, line {lineno}: subject {subject} has {count[subject]} recordings, so "
                                  "each needs a sequence name")
            sid = self.workflow_id(subject)
            rid = recording_id(sid, seq or None)
            if rid in out:
                raise CorpusError(f"{path}, line {lineno}: recording {rid} is listed twice (first on line "
                                  f"{out[rid].line})")
            rec = Recording(id=rid, subject=sid, sequence=seq, source=source, corpus=self.name)
            out[rid] = _Row(rec, labels, lineno)
        if not out:
            raise CorpusError(f"{path}: no recordings listed")
        self._rows = out
        return out

    # -------------------------------------------------------------------------------------------- interface
    @property
    def aus(self) -> tuple[int, ...]:  # type: ignore[override]
        """The AU columns found in the label files (their union)."""
        if self._aus is None:
            found: set[int] = set()
            for row in self._index().values():
                found.update(label_header_aus(row.labels))
            self._aus = tuple(sorted(found))
        return self._aus

    @property
    def intensity_aus(self) -> tuple[int, ...]:  # type: ignore[override]
        return self.aus if self.kind == "intensity" else ()

    @property
    def occurrence_codes(self) -> bool:  # type: ignore[override]
        return self.kind == "occurrence"

    def subjects(self) -> list[str]:
        return list(dict.fromkeys(r.recording.subject for r in self._index().values()))

    def recordings(self, subject: str) -> list[Recording]:
        recs = [r.recording for r in self._index().values() if r.recording.subject == subject]
        if not recs:
            raise CorpusError(f"{self.index_path}: no recording of subject {subject!r}")
        return recs

    def labels(self, recording: Recording, aus: Sequence[int]) -> pd.DataFrame:
        row = self._index().get(recording.id)
        if row is None:
            raise CorpusError(f"{self.index_path}: no recording {recording.id!r}")
        aus = sorted({int(a) for a in aus})
        frames, values = read_label_csv(row.labels, aus, self.kind, min_frame=0 if recording.is_images else 1)
        order = np.argsort(frames, kind="stable")
        frames = [frames[i] for i in order]
        suffix = "_c" if self.kind == "occurrence" else ""
        columns = {f"AU{a}{suffix}": values[a][order] for a in aus}
        if not recording.is_images:
            return label_frame(frames, columns)
        from ..faces.video import VideoError, image_files

        try:
            pos = {n: i + 1 for i, (n, _) in enumerate(image_files(recording.source, recording.subject))}
        except VideoError as exc:
            raise CorpusError(str(exc)) from exc
        missing = [f for f in frames if f not in pos]
        if missing:
            raise CorpusError(f"{row.labels}: no image for labelled frame(s) {ranges(missing)} in {recording.source}")
        return label_frame([pos[f] for f in frames], columns, source_frames=frames)

    def label_inputs(self, recording: Recording) -> list[Path]:
        row = self._index()[recording.id]
        return [self.index_path, row.labels, *([recording.source] if recording.is_images else [])]
