"""Atomic writes: nothing under the final name unless the writer finished."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from au_transfer.io import atomic_path, write_csv_atomic


def test_atomic_path_renames_on_success(tmp_path):
    out = tmp_path / "sub" / "x.txt"
    with atomic_path(out) as tmp:
        tmp.write_text("hello")
        assert not out.exists()
    assert out.read_text() == "hello"
    assert [p.name for p in out.parent.iterdir()] == ["x.txt"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "x.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
    finally:
        os.umask(old)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644


def test_uncaught_exception_reaches_the_log_file(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "job.log"
    code = ("from au_transfer.io import setup_logging\n"
            f"setup_logging({str(log)!r})\n"
            "raise ValueError('video SN002.avi is truncated at frame 17')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    text = log.read_text()
    assert "video SN002.avi is truncated at frame 17" in text and "ValueError" in text


def test_iter_ahead_keeps_order_raises_after_the_items_before_and_stops_early():
    import threading
    import time

    from au_transfer.io import iter_ahead

    seen = []
    assert list(iter_ahead(iter(range(20)), 3, on_item=lambda: seen.append(1))) == list(range(20))
    assert len(seen) == 20  # called in the thread after each item

    def failing():
        yield from (1, 2)
        raise ValueError("item 3 is broken")

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for x in iter_ahead(failing(), 2):
            got.append(x)
    assert got == [1, 2]

    made, stopped = [], []

    def endless():
        for i in range(10**6):
            made.append(i)
            yield i
            time.sleep(0.001)

    it = iter_ahead(endless(), 2, on_early_stop=lambda: stopped.append(1))
    assert next(it) == 0
    it.close()
    assert stopped == [1]
    n = len(made)
    time.sleep(0.05)
    assert len(made) == n < 10  # the thread stopped at most a queue's depth ahead
    assert not any(t.name == "au-transfer-ahead" for t in threading.enumerate())
    done = []
    list(iter_ahead(iter([1]), 1, on_early_stop=lambda: done.append(1)))
    assert done == []  # not for an iteration that ran to its end
