"""Small text-table helpers shared by the corpus adapters: rows with line numbers, numbers, AU headers, frame ranges.

Every problem raises :class:`~.base.CorpusError` naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .base import CorpusError

_AU_RE = re.compile(r"^\s*(?:AU)?\s*0*(\d+)\s*$", re.IGNORECASE)
_SPLIT_RE = re.compile(r"[,\s;]+")


def ranges(frames: Iterable[int], limit: int = 8) -> str:
    """Compact text of frame numbers: ``1-3, 7, 9-12`` (at most ``limit`` runs, then ``... (N frames)``)."""
    frames = sorted(set(int(f) for f in frames))
    if not frames:
        return "none"
    runs: list[str] = []
    start = prev = frames[0]
    for f in [*frames[1:], None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    text = ", ".join(runs[:limit])
    if len(runs) > limit:
        text += f", ... ({len(frames)} frames)"
    return text


def rows(path: Path, *, sep: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(line number, stripped cells)`` of each non-blank line; ``sep="any"`` splits on commas, semicolons and
    whitespace (runs of them count once)."""
    if not path.is_file():
        raise CorpusError(f"{path}: label file is missing")
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            cells = _SPLIT_RE.split(line) if sep == "any" else [c.strip() for c in line.split(sep)]
            yield lineno, cells


def as_number(cell: str) -> float | None:
    """The number in a cell (``3``, ``3.0``), or None when it holds none."""
    try:
        return float(cell)
    except ValueError:
        return None


def as_int(cell: str, path: Path, lineno: int, what: str) -> int:
    """A whole number, else an error naming file, line and ``what``."""
    v = as_number(cell)
    if v is None or v != int(v):
        raise CorpusError(f"{path}, line {lineno}: {what} {cell!r} is not a whole number")
    return int(v)


def note_frame(seen: dict[int, int], frame: int, path: Path, lineno: int) -> None:
    """Record that ``frame`` is on line ``lineno``; a frame listed twice is an error naming both lines."""
    if frame in seen:
        raise CorpusError(f"{path}, line {lineno}: frame {frame} is listed twice (first on line {seen[frame]})")
    seen[frame] = lineno


def au_number(cell: str) -> int | None:
    """The AU number of a header cell (``1``, ``01``, ``AU1``, ``au01``), or None."""
    m = _AU_RE.match(cell)
    return int(m.group(1)) if m else None


def au_header(cells: Sequence[str], path: Path, lineno: int, *, first: int = 1) -> dict[int, int]:
    """``{AU number: column index}`` of a header row (cells from ``first`` on; empty cells ignored); a cell that
    names no AU, or an AU named twice, is an error naming the file and line."""
    out: dict[int, int] = {}
    for i, cell in enumerate(cells[first:], start=first):
        if not cell:
            continue
        au = au_number(cell)
        if au is None:
            raise CorpusError(f"{path}, line {lineno}: header cell {cell!r} (column {i + 1}) names no AU "
                              "(expected e.g. '1' or 'AU1')")
        if au in out:
            raise CorpusError(f"{path}, line {lineno}: AU{au} has two columns ({out[au] + 1} and {i + 1})")
        out[au] = i
    return out


def require_aus(header: dict[int, int], aus: Sequence[int], path: Path) -> None:
    """Raise naming the requested AUs that the header of ``path`` lacks."""
    missing = [int(a) for a in aus if int(a) not in header]
    if missing:
        raise CorpusError(f"{path}, line 1: no column for AU(s) {missing} (the header has AUs {sorted(header)})")
