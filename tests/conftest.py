"""Shared fixtures. Workflow tests run snakemake in a temporary working directory, never in results/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TEST_CONFIG = ROOT / "tests" / "config_test.yaml"


def run_snakemake(workdir: Path, *args: str, configfile: Path = TEST_CONFIG, check: bool = True,
                  timeout: int = 1800, snakefile: Path = ROOT / "Snakefile") -> subprocess.CompletedProcess:
    """Run the project's Snakefile (or ``snakefile``) with ``workdir`` as working directory."""
    cmd = [SNAKEMAKE, "-s", str(snakefile), "--directory", str(workdir), "--configfile", str(configfile),
           "--resources", "gpu=1", "--cores", "2", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-8000:]}")
    return proc


@dataclass
class Job:
    """One job of a `snakemake -n` listing."""

    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    input: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    priority: int = 0  # Snakemake lists it only when a rule sets one

    def __str__(self) -> str:
        wc = ",".join(f"{k}={v}" for k, v in self.wildcards.items())
        return f"{self.rule}[{wc}] ({self.reason[:100]})"


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of a `snakemake -n` report (rule ``all`` left out): rule name, wildcards, reason, input, output and
    priority of each ``rule NAME:`` / ``localrule NAME:`` block."""
    jobs: list[Job] = []
    current: Job | None = None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):$", line)
        if m:
            current = Job(m[1])
            jobs.append(current)
            continue
        if current is None:
            continue
        m = re.match(r"^\s+(wildcards|reason|input|output|priority): (.*)$", line)
        if m and m[1] == "wildcards":
            current.wildcards = dict(kv.split("=", 1) for kv in m[2].split(", "))
        elif m and m[1] in ("input", "output"):
            setattr(current, m[1], m[2].split(", "))
        elif m and m[1] == "priority":
            current.priority = int(m[2])
        elif m:
            current.reason = m[2]
        elif not line.startswith(" "):
            current = None
    return [j for j in jobs if j.rule != "all"]


def plan(workdir: Path, configfile: Path = TEST_CONFIG, *args: str, snakefile: Path = ROOT / "Snakefile"
         ) -> tuple[list[Job], str]:
    """The jobs that `snakemake -n` plans in ``workdir``, and its whole output."""
    proc = run_snakemake(workdir, "--dry-run", *args, configfile=configfile, snakefile=snakefile)
    return parse_dry_run(proc.stdout), proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def finished_workflow(tmp_path_factory, worker_id) -> Path:
    """A working directory in which the whole workflow has run once on tests/config_test.yaml.

    Shared by all pytest-xdist workers (one run, guarded by a file lock in the session's common temporary folder).
    Tests that use it must not modify it (copy it first: see ``copy_workflow``); mark them
    ``@pytest.mark.xdist_group("workflow")`` so that they also run in one worker under ``--dist loadgroup``.
    """
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        base = base.parent  # the folder that every worker's basetemp lives in
    wd = base / "finished_workflow"
    with FileLock(str(base / "finished_workflow.lock")):
        if not (base / "finished_workflow.ok").exists():
            wd.mkdir(exist_ok=True)
            run_snakemake(wd)
            (base / "finished_workflow.ok").touch()
    return wd


def predict_like_the_workflow(workdir: Path, split: str, subject: str, model: str, out: Path, *args: str,
                              data_root: str = "demo_corpus") -> tuple[float, float]:
    """Run ``au-transfer predict`` on a test subject's video of a finished run and compare it with the workflow's
    test predictions of ``model`` for that subject; returns (mean agreement of pred, mean correlation of scores)
    over AUs. Every AU must have a predictor row with a face for most of the workflow's frames."""
    import numpy as np
    import pandas as pd

    from au_transfer.cli import main

    video = next(workdir.glob(f"{data_root}/Video*/*{subject}*"))
    assert main(["predict", str(video), "-o", str(out), "--results", str(workdir / "results"), "--split", split,
                 "--model", model, "--largest-face", "-q", *args]) == 0
    df = pd.read_csv(out).set_index("frame")
    wf = pd.read_csv(workdir / "results" / "predictions" / split / f"{model}.csv", dtype={"subject": str})
    wf = wf[(wf["subject"] == subject) & (wf["set"] == "test") & (wf["face"] == 1)]  # faceless rows: no score
    assert len(wf), f"no workflow test predictions of {model} for {subject}"
    agree, corr = [], []
    for au, w in wf.groupby("au"):
        w = w.set_index("frame")
        common = w.index.intersection(df.index[df["success"] == 1])
        assert len(common) > 0.8 * len(w), (model, au, len(common), len(w))
        agree.append((w.loc[common, "pred"].to_numpy() == df.loc[common, f"AU{au:02d}_c"].to_numpy()).mean())
        a, b = w.loc[common, "score"].to_numpy(float), df.loc[common, f"AU{au:02d}_p"].to_numpy(float)
        if a.std() > 0 and b.std() > 0:
            corr.append(np.corrcoef(a, b)[0, 1])
    return float(np.mean(agree)), float(np.mean(corr))


def copy_workflow(src: Path, dst: Path) -> Path:
    """Copy a finished working directory (results, corpus, .snakemake metadata) for a test that changes it."""
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


# --- corpus: a tiny synthetic DISFA-layout corpus for unit tests (owner: corpus/labels stage)
TINY_CORPUS = dict(subjects=("SN001", "SN002", "SN003"), n_frames=40, width=240, height=180, fps=20.0, seed=7)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """3 synthetic subjects x 40 frames at 240x180 in the DISFA layout (au_transfer.datasets.demo).

    Returns a namespace: ``root`` (Path, the DISFA root), ``subjects``, ``n_frames``, ``width``, ``height``,
    ``fps``, ``seed``, ``camera`` and ``manifests`` ({subject: manifest dict with e.g. ``defects``: frames that
    have no landmark file}). Read it with au_transfer.datasets.disfa; do not modify it.
    """
    from types import SimpleNamespace

    from au_transfer.datasets.demo import generate_corpus

    root = tmp_path_factory.mktemp("tiny_corpus") / "DISFA"
    kw = {k: v for k, v in TINY_CORPUS.items() if k != "subjects"}
    manifests = generate_corpus(root, TINY_CORPUS["subjects"], camera="left", **kw)
    return SimpleNamespace(root=root, camera="left", manifests=manifests, **TINY_CORPUS)


def demo_video(root: Path, subject: str = "SN001", *, n_frames: int, seed: int, width: int = 320,
               height: int = 240) -> Path:
    """A synthetic demo video (a rendered face that moves and makes expressions) under ``root``."""
    from au_transfer.datasets.demo import generate_subject

    generate_subject(root, subject, n_frames=n_frames, width=width, height=height, seed=seed)
    return next(root.glob(f"Video*/*{subject}*"))
