"""Shared fixtures. Workflow tests run snakemake in a temporary working directory, never in results/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TEST_CONFIG = ROOT / "tests" / "config_test.yaml"


def run_snakemake(workdir: Path, *args: str, configfile: Path = TEST_CONFIG, check: bool = True,
                  timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run the project's Snakefile with ``workdir`` as working directory; returns the completed process."""
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(configfile),
           "--cores", "2", "--resources", "gpu=1", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="session")
def finished_workflow(tmp_path_factory) -> Path:
    """A working directory in which the whole workflow has run once on tests/config_test.yaml.

    Tests that use it must not modify it (copy it first: see ``copy_workflow``). Mark them
    ``@pytest.mark.xdist_group("workflow")`` so that they share one run under ``pytest -n 2 --dist loadgroup``.
    """
    wd = tmp_path_factory.mktemp("workflow")
    run_snakemake(wd)
    return wd


def copy_workflow(src: Path, dst: Path) -> Path:
    """Copy a finished working directory (results, corpus, .snakemake metadata) for a test that changes it."""
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst
