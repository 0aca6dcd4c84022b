"""Small I/O helpers shared by every stage: atomic writes, logging set-up, and reading ahead in a thread."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

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


T = TypeVar("T")
_END = object()


def iter_ahead(items: Iterable[T], depth: int, *, name: str = "au-transfer-ahead",
               on_item: Callable[[], Any] | None = None,
               on_early_stop: Callable[[], Any] | None = None) -> Iterator[T]:
    """The items of ``items``, produced by a background thread at most ``depth`` items ahead of the caller.

    The thread iterates ``items``, so that its work overlaps with the caller's wherever the libraries release the
    GIL (file reads, OpenCV, h5py, PyTorch, a pipe); ``on_item`` is called in the thread after each item is queued
    (e.g. a progress bar's update). An error of the thread is raised here, after the items before it. A caller that
    stops early (break, an error, closing the iterator) stops the thread at its next item and waits for it;
    ``on_early_stop`` is called first, for a thread that may be blocked waiting for its next item (e.g. ending the
    process it reads from).
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
                if on_item is not None:
                    on_item()
            put(_END)
        except BaseException as exc:  # noqa: BLE001  (raised in the caller)
            put((False, exc))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    done = False
    try:
        while True:
            got = q.get()
            if got is _END:
                done = True
                return
            ok, value = got
            if not ok:
                done = True
                raise value
            yield value
    finally:
        stop.set()
        if not done and on_early_stop is not None:
            on_early_stop()
        thread.join()
