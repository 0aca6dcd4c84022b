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
