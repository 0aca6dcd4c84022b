"""The corpus interface: one adapter per AU corpus, registered by name, as backbones are.

The workflow never holds corpus knowledge: the labels, landmarks and faces stages ask the configured adapter (config
``data.corpus``, default ``disfa``, reading ``data_root``; extra corpora for cross-corpus splits in
``data.corpora``). An adapter says

- its **subjects** (the ids that splits name) and, for each, its **recordings**: one recording is one sequence of
  frames (DISFA: the subject's video of the configured camera; BP4D: one task T1-T8; DISFA+: one trial; a generic
  corpus: one video or image folder). A recording is the unit of every per-frame stage (labels, landmarks, faces,
  features: one job and one file each), so that no temporal processing (the LSTM's sequences, tracking) ever
  crosses a sequence boundary;
- where a recording's frames come from (:attr:`Recording.source`: a video file, or a folder of images whose frame
  numbers are parsed from the file names, see :func:`au_transfer.faces.video.image_files`);
- its frame-level labels (:meth:`Corpus.labels`, the label table below), with an explicit *unknown*;
- the 68-point landmarks it ships, if any (:meth:`Corpus.landmark_files`), and its standard splits.

Recording ids: ``{subject}`` for a corpus with one recording per subject (DISFA: ``SN001``, so DISFA's files keep
their names), else ``{subject}.{sequence}`` (BP4D: ``F001.T1``). Subject ids and sequence names hold letters,
digits, ``_`` and ``-`` only; :func:`subject_of` recovers the subject of a recording id, which is how the jobs check
that a split stays subject-exclusive when they are given recordings. An extra corpus's subject ids carry its
``prefix`` (e.g. ``bp4d-F001``), so that ids are unique across corpora.

The label table (``results/labels/{recording}.csv``) has
- ``frame``: the 1-based position of the frame in its source (the video frame number; for an image folder, the
  position in frame-number order), the key every other stage uses;
- ``source_frame`` (image folders only): the corpus's own frame number (the number in the image name);
- ``AU{n}``: intensity 0-5 where the corpus codes intensity (empty = unknown);
- ``AU{n}_c`` (corpora that code occurrence separately, e.g. BP4D): occurrence 0/1 (empty = unknown). Occurrence is
  ``AU{n}_c`` when present, else ``AU{n} >= data.threshold`` (:func:`au_transfer.labels.read_label_table`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..config import subject_of

__all__ = ["CORPORA", "FACS_LEVELS", "Corpus", "CorpusError", "Recording", "check_name", "corpus_names", "get_corpus", "label_frame",
           "parse_frame_number", "positions_of", "recording_id", "register", "subject_of"]

#: FACS intensity levels A (trace) to E (maximum): intensities 1-5.
FACS_LEVELS: str = "ABCDE"
#: A subject id or a sequence name: letters, digits, ``_`` and ``-`` (no ``.``: it separates them in recording ids).
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class CorpusError(ValueError):
    """The corpus on disk (or its configuration) is missing or malformed; the message names the file (and line,
    frame or subject) and what is wrong."""


def check_name(name: str, what: str, where: str = "") -> str:
    """Return ``name`` if it is a usable subject id / sequence name, else raise :class:`CorpusError`."""
    if not NAME_RE.match(str(name)):
        raise CorpusError(f"{where + ': ' if where else ''}{what} {name!r} may hold only letters, digits, '_' and '-'")
    return str(name)


def recording_id(subject: str, sequence: str | None) -> str:
    """``subject`` (one recording per subject) or ``subject.sequence``."""
    return subject if sequence is None else f"{subject}.{sequence}"


@dataclass(frozen=True)
class Recording:
    """One sequence of one subject: the unit of the per-frame stages."""

    id: str                 # workflow id: subject or subject.sequence (unique across corpora)
    subject: str            # workflow subject id (with the corpus prefix)
    sequence: str           # the corpus's own name of the sequence (camera, task, trial, file stem)
    source: Path            # a video file or a folder of images
    corpus: str = ""        # corpus name (registry key)

    @property
    def is_images(self) -> bool:
        """Whether the frames come from a folder of images (else a video file)."""
        return self.source.suffix == "" or self.source.is_dir()


def parse_frame_number(name: str) -> int | None:
    """The frame number of an image file name: the last run of digits of its stem (``0012.jpg`` -> 12,
    ``12.jpg`` -> 12, ``frame_000.png`` -> 0); None when the stem holds no digits. Never a fixed pattern:
    releases pad differently."""
    digits = re.findall(r"\d+", Path(name).stem)
    return int(digits[-1]) if digits else None


class Corpus(ABC):
    """One AU corpus on disk. Subclasses set :attr:`name`, :attr:`aus`, :attr:`intensity_aus` and implement the
    abstract methods; they are registered with :func:`register`."""

    #: registry key (config ``data.corpus``)
    name: ClassVar[str] = ""
    #: AUs the corpus codes for occurrence, and those it codes with an intensity 0-5
    aus: ClassVar[tuple[int, ...]] = ()
    intensity_aus: ClassVar[tuple[int, ...]] = ()
    #: whether subjects have exactly one recording each (then recording id == subject id)
    one_recording_per_subject: ClassVar[bool] = False
    #: whether the corpus ships 68/66-point landmarks (``faces.landmarks: disfa`` reads them)
    ships_landmarks: ClassVar[bool] = False
    #: whether "present" is the corpus's own occurrence codes (``AU{n}_c``), else intensity >= its threshold
    occurrence_codes: ClassVar[bool] = False
    #: the population whose ids the corpus's own subject ids are, when its people appear in other corpora too
    #: (DISFA and DISFA+: ``DISFA``): then :meth:`person_id` is ``{people}:{own id}``; empty: its own people
    people: ClassVar[str] = ""

    def __init__(self, root: str | Path, *, prefix: str = "", options: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.prefix = str(prefix or "")
        self.options = dict(options or {})

    # ------------------------------------------------------------------------------------------- ids
    def own_id(self, subject: str) -> str:
        """The corpus's own id of a workflow subject id (the prefix removed)."""
        if self.prefix and not subject.startswith(self.prefix):
            raise CorpusError(f"subject {subject!r} does not carry the prefix {self.prefix!r} of corpus {self.name}")
        return subject[len(self.prefix):]

    def workflow_id(self, own: str) -> str:
        return f"{self.prefix}{own}"

    def person_id(self, subject: str) -> str:
        """Who a subject (workflow id) is: the id that the subject-exclusive check compares across corpora.
        ``{people}:{own id}`` when the corpus declares :attr:`people` (DISFA+'s ``dplus-SN001`` and DISFA's
        ``SN001`` are both ``DISFA:SN001``), else the workflow id (every corpus its own people)."""
        return f"{self.people}:{self.own_id(subject)}" if self.people else subject

    def present(self, threshold: int) -> str:
        """The corpus's definition of an AU *present*, in words for summaries and reports: its own occurrence codes
        (:attr:`occurrence_codes`), else intensity >= ``threshold`` with the FACS level (``intensity >= 2 (B+)``)."""
        if self.occurrence_codes:
            return "occurrence codes"
        return f"intensity >= {int(threshold)} ({FACS_LEVELS[int(threshold) - 1]}+)"

    # ------------------------------------------------------------------------------------------- interface
    @abstractmethod
    def subjects(self) -> list[str]:
        """Workflow ids of every subject of the corpus (those that can appear in splits)."""

    @abstractmethod
    def recordings(self, subject: str) -> list[Recording]:
        """The recordings of one subject (workflow id), in order. Must not need the files to exist when the
        corpus's layout fixes them (DISFA, BP4D's tasks), so that a dry run plans; listing from disk otherwise."""

    @abstractmethod
    def labels(self, recording: Recording, aus: Sequence[int]) -> pd.DataFrame:
        """The label table of one recording (module docstring): ``frame``, optional ``source_frame``, ``AU{n}``
        intensities and/or ``AU{n}_c`` occurrences for ``aus`` (float, NaN = unknown). Raises
        :class:`CorpusError` naming the file and line for malformed input."""

    def label_inputs(self, recording: Recording) -> list[Path]:
        """Files and folders the labels of a recording are read from (Snakemake inputs: changing them reruns)."""
        return []

    def landmark_files(self, recording: Recording) -> dict[int, Path] | None:
        """Shipped 68/66-point landmark files by ``frame`` (1-based position), or None when the corpus ships none."""
        return None

    def read_landmark_file(self, path: Path) -> np.ndarray:
        """Read one shipped landmark file (66 or 68 x 2 pixel coordinates)."""
        raise CorpusError(f"corpus {self.name} ships no landmark files")

    def landmark_inputs(self, recording: Recording) -> list[Path]:
        """Folders of the shipped landmarks of a recording (Snakemake inputs)."""
        return []

    def splits(self) -> dict[str, dict[str, list[str]]]:
        """The corpus's standard splits (``{name: {train, val, test}}`` with workflow ids), if any."""
        return {}

    # ------------------------------------------------------------------------------------------- helpers
    def recording(self, recording_id: str) -> Recording:
        """The :class:`Recording` of a recording id."""
        for rec in self.recordings(subject_of(recording_id)):
            if rec.id == recording_id:
                return rec
        raise CorpusError(f"corpus {self.name} ({self.root}) has no recording {recording_id!r}")

    def check_aus(self, aus: Sequence[int], key: str = "data.aus") -> None:
        """Raise naming the AUs the corpus does not code."""
        missing = [a for a in aus if int(a) not in self.aus]
        if missing:
            raise CorpusError(f"{key}: AU(s) {missing} are not coded in corpus {self.name}; it codes {list(self.aus)}")


#: name -> adapter class
CORPORA: dict[str, type[Corpus]] = {}


def register(cls: type[Corpus]) -> type[Corpus]:
    """Class decorator: register a corpus adapter under ``cls.name``."""
    CORPORA[cls.name] = cls
    return cls


def corpus_names() -> list[str]:
    """Names of the registered corpora (the package ``au_transfer.datasets`` imports every built-in adapter)."""
    return sorted(CORPORA)


def get_corpus(name: str, root: str | Path, *, prefix: str = "", options: Mapping[str, Any] | None = None,
               key: str = "data.corpus") -> Corpus:
    """An adapter instance by registry name; an unknown name is an error naming ``key`` and the known names."""
    if name not in CORPORA:
        raise CorpusError(f"{key}: unknown corpus {name!r}; known corpora: {', '.join(sorted(CORPORA))}")
    return CORPORA[name](root, prefix=prefix, options=options)


def label_frame(frames: Sequence[int], columns: Mapping[str, Sequence[float]], *,
                source_frames: Sequence[int] | None = None) -> pd.DataFrame:
    """Build a label table (module docstring) from ``frame`` numbers and ``{column: values}`` (NaN = unknown).

    Label columns are integers with missing values (pandas ``Int64``), so that the CSV holds ``2`` (not ``2.0``)
    and an empty cell for unknown."""
    out = pd.DataFrame({"frame": np.asarray(frames, dtype=np.int64)})
    if source_frames is not None:
        out["source_frame"] = np.asarray(source_frames, dtype=np.int64)
    for col, values in columns.items():
        v = np.asarray(values, dtype=np.float64)
        if np.any(np.isfinite(v) & (v != np.round(v))):
            raise CorpusError(f"label column {col}: values must be whole numbers")
        out[col] = pd.array(np.where(np.isfinite(v), v, np.nan), dtype="Int64")
    return out


def positions_of(numbers: Sequence[int], what: str) -> Callable[[int], int]:
    """Map a corpus frame number to the 1-based position of its image (the image list sorted by number)."""
    pos = {int(n): i + 1 for i, n in enumerate(sorted(int(n) for n in numbers))}

    def lookup(n: int) -> int:
        if int(n) not in pos:
            raise CorpusError(f"{what}: no image for frame {n}")
        return pos[int(n)]

    return lookup
