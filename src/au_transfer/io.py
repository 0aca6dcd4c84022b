"""Small I/O helpers shared by every stage: atomic writes and logging set-up."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted or failing writer leaves no file at ``path`` (a stale temporary may remain, never under the
    final name), so neither Snakemake nor a later stage can trust a half-written output.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the permissions a plain open() would (umask applies)
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike[str], **kwargs) -> None:
    """Write a DataFrame as CSV atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def setup_logging(log_file: str | os.PathLike[str] | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to ``log_file`` (Snakemake's ``log:``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    if log_file:
        # An uncaught exception must reach the rule's log too, not only Snakemake's (or SLURM's) stderr.
        previous = sys.excepthook

        def _log_uncaught(exc_type, exc, tb):
            logging.getLogger("au_transfer").critical("job failed: %s", exc, exc_info=(exc_type, exc, tb))
            for h in logging.getLogger().handlers:
                h.flush()
            if previous is not sys.__excepthook__:
                previous(exc_type, exc, tb)

        sys.excepthook = _log_uncaught
