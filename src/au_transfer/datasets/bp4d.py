"""BP4D-Spontaneous through the corpus interface (registered as ``bp4d``).

The layout (``root`` is the BP4D folder; releases differ, the reader tolerates every variant listed)::

    <images dir>/F001/T1/<n>.jpg            images dir: option ``images_dir``, else the first of IMAGE_DIRS that
                                            exists (BP4D-training, Sequences(2D+3D), ...), else root itself when it
                                            holds the subject folders; <n> = BP4D's frame number, zero-padded or not
    AUCoding/AU_OCC/F001_T1.csv             occurrence (older release: AUCoding/F001_T1.csv; also AU_OCC/...):
                                            a header row (first cell: the frame column; then AU numbers, ``1`` or
                                            ``AU1``), one row per coded frame: frame number, 0/1 per AU, 9 = unknown
    AUCoding/AU_INT/AU06/F001_T1_AU06.csv   intensity of AU6, 10, 12, 14, 17 (also AU_INT/AU06/..., ``AU6``
                                            folder / file spellings): headerless ``frame,intensity``, 0-5, 9 = unknown

41 subjects (F001-F023, M001-M018), 8 tasks each (T1-T8); one recording per task (id ``F001.T1``). Only a
contiguous range of each task is coded, not always from frame 1: uncoded frames are absent from the label table
(they are not negatives). BP4D ships no usable 68-point landmarks (dlib finds them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .base import Corpus, CorpusError, Recording, label_frame, recording_id, register
from .tables import as_int, as_number, au_header, note_frame, ranges, require_aus, rows

BP4D_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
BP4D_INTENSITY_AUS: tuple[int, ...] = (6, 10, 12, 14, 17)
BP4D_SUBJECTS: tuple[str, ...] = (*(f"F{i:03d}" for i in range(1, 24)), *(f"M{i:03d}" for i in range(1, 19)))
TASKS: tuple[str, ...] = tuple(f"T{i}" for i in range(1, 9))
#: Names of the image folder in the releases we know (option ``images_dir`` names any other).
IMAGE_DIRS: tuple[str, ...] = ("BP4D-training", "Sequences(2D+3D)", "2D+3D", "BP4D_Images", "Images", "images",
                               "Sequences")
UNKNOWN: int = 9
MAX_INTENSITY: int = 5

#: The standard subject-exclusive 3-fold protocol (JAA-Net, ME-GraphAU): the three parts of BP4D's subjects, in
#: the order of ME-GraphAU's ``tool/BP4D_image_label_process.py`` (``BP4D_Sequence_split``).
PARTS: tuple[tuple[str, ...], ...] = (
    ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008"),
    ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005"),
    ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014"),
)
#: The part each fold tests, numbered as JAA-Net's and ME-GraphAU's tools number them (and so every published
#: per-fold table): fold1 trains on part1 + part2 and tests part3, fold2 tests part2, fold3 tests part1.
FOLD_TEST_PART: dict[str, int] = {"fold1": 3, "fold2": 2, "fold3": 1}
#: Validation subjects of each fold: the last N_VAL of the fold's second training part (as config/disfa_3fold.yaml).
N_VAL: int = 4

_TASK_RE = re.compile(r"^T(\d+)$", re.IGNORECASE)
_SUBJECT_RE = re.compile(r"^[FM]\d{3}$")


def three_fold_splits(prefix: str = "") -> dict[str, dict[str, list[str]]]:
    """``fold1..fold3`` (:data:`FOLD_TEST_PART`): each tests one part and trains on the other two (in part
    order), the last :data:`N_VAL` subjects of the second training part held out for validation."""
    out = {}
    for fold, part in FOLD_TEST_PART.items():
        first, second = (PARTS[j] for j in range(3) if j != part - 1)
        train = [*first, *second[:-N_VAL]]
        out[fold] = {"train": [prefix + s for s in train], "val": [prefix + s for s in second[-N_VAL:]],
                     "test": [prefix + s for s in PARTS[part - 1]]}
    return out


# ----------------------------------------------------------------------------------------------------- readers
def read_occurrence(path: Path, aus: Sequence[int]) -> tuple[list[int], dict[int, np.ndarray]]:
    """Frame numbers (file order) and ``{AU: 0/1/NaN}`` of an occurrence file (module docstring)."""
    frames: list[int] = []
    values: dict[int, list[float]] = {int(a): [] for a in aus}
    header: dict[int, int] | None = None
    seen: dict[int, int] = {}
    for lineno, cells in rows(path):
        if header is None:
            header = au_header(cells, path, lineno)
            require_aus(header, aus, path)
            need = max((header[a] for a in values), default=0) + 1
            continue
        if len(cells) < need:
            raise CorpusError(f"{path}, line {lineno}: {len(cells)} cells, the header needs {need}")
        frame = as_int(cells[0], path, lineno, "frame number")
        note_frame(seen, frame, path, lineno)
        frames.append(frame)
        for au, col in ((a, header[a]) for a in values):
            v = as_number(cells[col])
            if v not in (0, 1, UNKNOWN):
                raise CorpusError(f"{path}, line {lineno}: AU{au} of frame {frame} is {cells[col]!r}; occurrence "
                                  f"must be 0, 1 or {UNKNOWN} (unknown)")
            values[au].append(np.nan if v == UNKNOWN else v)
    if header is None:
        raise CorpusError(f"{path}: label file is empty")
    return frames, {a: np.asarray(v, dtype=np.float64) for a, v in values.items()}


def read_intensity(path: Path) -> dict[int, float]:
    """``{frame: intensity 0-5 or NaN}`` of a headerless ``frame,intensity`` file (a non-numeric first line is
    skipped as a header)."""
    out: dict[int, float] = {}
    seen: dict[int, int] = {}
    first = True
    for lineno, cells in rows(path):
        if first and as_number(cells[0]) is None:
            first = False
            continue
        first = False
        if len(cells) < 2:
            raise CorpusError(f"{path}, line {lineno}: expected 'frame,intensity', got {','.join(cells)!r}")
        frame = as_int(cells[0], path, lineno, "frame number")
        v = as_number(cells[1])
        if v is None or not (v == UNKNOWN or (0 <= v <= MAX_INTENSITY and v == int(v))):
            raise CorpusError(f"{path}, line {lineno}: intensity {cells[1]!r} of frame {frame} must be 0-"
                              f"{MAX_INTENSITY} or {UNKNOWN} (unknown)")
        note_frame(seen, frame, path, lineno)
        out[frame] = np.nan if v == UNKNOWN else float(v)
    return out


# ----------------------------------------------------------------------------------------------------- adapter
@register
class Bp4dCorpus(Corpus):
    """BP4D (module docstring). Options: ``images_dir`` (the image folder under root, or an absolute path)."""

    name = "bp4d"
    aus = BP4D_AUS
    intensity_aus = BP4D_INTENSITY_AUS
    occurrence_codes = True

    def present(self, threshold: int) -> str:
        """BP4D's occurrence codes count every FACS level, the faintest (A) included (not ``threshold``)."""
        return "occurrence codes (A+)"

    # ------------------------------------------------------------------------------------------ paths
    def images_root(self) -> Path:
        """The folder that holds ``F001/T1/...``: option ``images_dir``, else auto-detected (module docstring).
        A missing root gives the first known name (so that a dry run plans); a root where no image folder is
        found is an error listing its folders."""
        if self.options.get("images_dir"):
            return self.root / str(self.options["images_dir"])  # an absolute path replaces root
        if not self.root.is_dir():
            return self.root / IMAGE_DIRS[0]
        for name in IMAGE_DIRS:
            if (self.root / name).is_dir():
                return self.root / name
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if any(_SUBJECT_RE.match(n) for n in found):
            return self.root
        raise CorpusError(
            f"{self.root}: no BP4D image folder (looked for {', '.join(IMAGE_DIRS)}); folders found: "
            f"{', '.join(found) or 'none'}. Name it with data.options.images_dir")

    def occurrence_path(self, own: str, task: str) -> Path:
        """The existing occurrence file of a task, else its path in the current release's layout."""
        candidates = [self.root / "AUCoding" / "AU_OCC" / f"{own}_{task}.csv",
                      self.root / "AUCoding" / f"{own}_{task}.csv",
                      self.root / "AU_OCC" / f"{own}_{task}.csv"]
        return next((p for p in candidates if p.is_file()), candidates[0])

    def _occurrence_file(self, own: str, task: str) -> Path:
        path = self.occurrence_path(own, task)
        if not path.is_file():
            raise CorpusError(f"{path}: occurrence label file of {own} {task} is missing (also looked for "
                              f"AUCoding/{own}_{task}.csv and AU_OCC/{own}_{task}.csv under {self.root})")
        return path

    def intensity_path(self, own: str, task: str, au: int) -> Path | None:
        """The intensity file of an AU, or None when the release has no intensity folder for the AU. A folder
        without the task's file is an error naming it."""
        for base in (self.root / "AUCoding" / "AU_INT", self.root / "AU_INT"):
            for folder in (base / f"AU{au:02d}", base / f"AU{au}"):
                if not folder.is_dir():
                    continue
                names = (f"{own}_{task}_AU{au:02d}.csv", f"{own}_{task}_AU{au}.csv")
                for name in names:
                    if (folder / name).is_file():
                        return folder / name
                raise CorpusError(f"{folder / names[0]}: intensity label file of {own} {task} AU{au} is missing")
        return None

    # ------------------------------------------------------------------------------------------ interface
    def subjects(self) -> list[str]:
        return [self.workflow_id(s) for s in BP4D_SUBJECTS]

    def _own(self, subject: str) -> str:
        own = self.own_id(subject)
        if own not in BP4D_SUBJECTS:
            raise CorpusError(f"unknown BP4D subject {subject!r}; BP4D has {BP4D_SUBJECTS[0]}-F023, M001-M018")
        return own

    def recordings(self, subject: str) -> list[Recording]:
        own = self._own(subject)
        folder = self.images_root() / own
        if folder.is_dir():
            found = [(int(m.group(1)), p.name) for p in folder.iterdir()
                     if p.is_dir() and (m := _TASK_RE.match(p.name))]
            if not found:
                raise CorpusError(f"{folder}: no task folders (T1-T8) for subject {own}")
            tasks = [name for _, name in sorted(found)]
        else:
            tasks = list(TASKS)
        return [Recording(id=recording_id(subject, t), subject=subject, sequence=t, source=folder / t,
                          corpus=self.name) for t in tasks]

    def labels(self, recording: Recording, aus: Sequence[int]) -> pd.DataFrame:
        self.check_aus(aus)
        aus = [a for a in BP4D_AUS if a in {int(x) for x in aus}]
        own, task = self._own(recording.subject), recording.sequence
        occ_path = self._occurrence_file(own, task)
        frames, occ = read_occurrence(occ_path, aus)
        numbers = self._image_numbers(recording)
        missing = [f for f in frames if f not in numbers]
        if missing:
            raise CorpusError(f"{occ_path}: no image for coded frame(s) {ranges(missing)} in {recording.source}")
        order = np.argsort(frames, kind="stable")
        frames_sorted = [frames[i] for i in order]
        columns: dict[str, np.ndarray] = {f"AU{a}_c": occ[a][order] for a in aus}
        for a in aus:
            if a not in BP4D_INTENSITY_AUS:
                continue
            path = self.intensity_path(own, task, a)
            if path is not None:
                inten = read_intensity(path)
                columns[f"AU{a}"] = np.array([inten.get(f, np.nan) for f in frames_sorted], dtype=np.float64)
        return label_frame([numbers[f] for f in frames_sorted], columns, source_frames=frames_sorted)

    def _image_numbers(self, recording: Recording) -> dict[int, int]:
        """``{BP4D frame number: 1-based position}`` of the recording's images."""
        from ..faces.video import VideoError, image_files

        try:
            files = image_files(recording.source, recording.subject)
        except VideoError as exc:
            raise CorpusError(str(exc)) from exc
        return {n: i + 1 for i, (n, _) in enumerate(files)}

    def label_inputs(self, recording: Recording) -> list[Path]:
        own, task = self._own(recording.subject), recording.sequence
        out = [self.occurrence_path(own, task), recording.source]
        for a in BP4D_INTENSITY_AUS:
            try:
                path = self.intensity_path(own, task, a)
            except CorpusError:
                continue  # reported by labels(); an input that does not exist would only hide the message
            if path is not None:
                out.append(path)
        return out

    def splits(self) -> dict[str, dict[str, list[str]]]:
        return three_fold_splits(self.prefix)
