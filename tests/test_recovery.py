"""Recovery from failures: killed jobs leave nothing that looks finished, reruns give the uninterrupted result,
and one subject's broken video fails only that subject's jobs under --keep-going.

The kill tests copy the finished tiny run, delete one output (keeping it as the uninterrupted reference), start
Snakemake on it, `kill -9` the job (or Snakemake with its job, as a crashed node would) while it runs, check that no
output is left under its final name, rerun, and compare with the reference.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import psutil
import pytest
import torch
import yaml
from conftest import ROOT, SNAKEMAKE, TEST_CONFIG, copy_workflow, run_snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("workflow")]

CFG = yaml.safe_load(TEST_CONFIG.read_text())
BACKBONE = CFG["features"]["backbones"][0]
SPLIT = next(iter(CFG["splits"]))
FEATURES = f"results/features/{BACKBONE}/face/SN001.h5"


def start_snakemake(workdir: Path, *targets: str) -> subprocess.Popen:
    """Snakemake in the background, in its own process group (so that the whole run can be killed at once)."""
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(TEST_CONFIG),
           "--resources", "gpu=1", "--cores", "1", *targets]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def wait_for_job(proc: subprocess.Popen, script: str, ready=lambda: True, timeout: float = 600) -> psutil.Process:
    """The running job process of ``script`` (a workflow/scripts/ file) under ``proc``, once ``ready()`` holds."""
    parent = psutil.Process(proc.pid)
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, f"snakemake ended before the {script} job could be killed:\n{proc.stdout.read()}"
        for child in parent.children(recursive=True):
            try:
                if any(arg.endswith(f".{script}") for arg in child.cmdline()) and ready():
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no running {script} job after {timeout} s")


def leftovers(path: Path) -> list[Path]:
    """Files that a later stage could mistake for ``path``: the file itself (temporaries start with a dot)."""
    return [p for p in path.parent.glob(path.name + "*") if not p.name.startswith(".")]


def read_h5(path: Path) -> dict:
    with h5py.File(path) as h5:
        return {k: h5[k][()] for k in h5} | {f"attr:{k}": v for k, v in h5.attrs.items()}


def assert_same_h5(a: dict, b: dict) -> None:
    assert a.keys() == b.keys(), f"datasets/attributes differ: {sorted(a.keys() ^ b.keys())}"
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        nan = np.issubdtype(x.dtype, np.floating)          # invalid frames keep NaN rows
        assert np.array_equal(x, y, equal_nan=nan), f"{k} differs after recovery"


def test_killed_feature_job_leaves_no_output_and_rerun_is_identical(finished_workflow, tmp_path):
    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    out = wd / FEATURES
    reference = read_h5(out)
    out.unlink()
    proc = start_snakemake(wd, FEATURES)
    job = wait_for_job(proc, "features.py")
    time.sleep(0.5)                                       # inside imports, model load or extraction
    job.send_signal(signal.SIGKILL)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, f"snakemake did not notice the killed job:\n{log[-3000:]}"
    assert "Error in rule features" in log, log[-3000:]
    assert not leftovers(out), f"a killed job left {leftovers(out)}"
    run_snakemake(wd, "--rerun-incomplete", FEATURES)
    assert_same_h5(read_h5(out), reference)


def test_crash_of_snakemake_and_job_is_recovered(finished_workflow, tmp_path):
    """kill -9 of Snakemake together with its job (a crashed machine): nothing trusted, unlock, rerun, identical."""
    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    out = wd / FEATURES
    reference = read_h5(out)
    out.unlink()
    proc = start_snakemake(wd, FEATURES)
    wait_for_job(proc, "features.py")
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not leftovers(out), f"a crashed run left {leftovers(out)}"
    plan = run_snakemake(wd, "--dry-run", FEATURES)
    assert "rule features:" in plan.stdout, plan.stdout[-3000:]
    run_snakemake(wd, "--unlock")
    run_snakemake(wd, "--rerun-incomplete", FEATURES)
    assert_same_h5(read_h5(out), reference)


def test_killed_finetune_job_resumes_and_matches_uninterrupted_run(finished_workflow, tmp_path):
    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    if CFG["finetune"].get("head") == "multilabel":
        stem = wd / f"results/finetune/{SPLIT}/{BACKBONE}-face/multilabel-face"
        outputs = [stem.with_suffix(".pt"), stem.with_suffix(".csv")]
    else:
        stem = wd / f"results/finetune/{SPLIT}/{BACKBONE}-face/AU{CFG['data']['aus'][0]}"
        outputs = [stem.with_suffix(".pt"),
                   wd / f"results/predictions/{SPLIT}/{BACKBONE}_ft-face-softmax/AU{CFG['data']['aus'][0]}.csv"]
    ckpt = stem.with_suffix(".ckpt")
    ref_pred = pd.read_csv(outputs[1])
    ref_model = torch.load(outputs[0], map_location="cpu", weights_only=True)
    for p in outputs:
        p.unlink()
    target = str(outputs[0].relative_to(wd))
    proc = start_snakemake(wd, target)
    job = wait_for_job(proc, "finetune.py", ready=ckpt.exists)   # after the first epoch's checkpoint
    job.send_signal(signal.SIGKILL)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, log[-3000:]
    for p in outputs:
        assert not leftovers(p), f"a killed fine-tuning left {leftovers(p)}"
    assert ckpt.exists(), "the checkpoint of the finished epoch should survive the kill"
    run_snakemake(wd, "--rerun-incomplete", target)
    logs = list(wd.glob("logs/finetune/**/*.log"))
    assert any("resuming from checkpoint" in p.read_text() for p in logs), "the rerun did not resume"
    pd.testing.assert_frame_equal(pd.read_csv(outputs[1]), ref_pred)
    model = torch.load(outputs[0], map_location="cpu", weights_only=True)
    assert_same_state(model, ref_model)


def assert_same_state(a, b, where="model") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs after resuming"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"   # NaN == NaN here


def test_corrupt_video_fails_only_its_subject_with_keep_going(tmp_path):
    wd = tmp_path / "wd"
    subjects = CFG["data"]["demo"]["subjects"]
    run_snakemake(wd, "--until", "demo_subject")            # the corpus step only
    bad = subjects[1]
    videos = sorted((wd / CFG["data_root"]).glob(f"Videos_*/*{bad}*"))
    assert len(videos) == 1, videos
    broken = videos[0]
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 3])           # truncated mid-stream, as by a failed copy
    targets = [f"results/features/{BACKBONE}/face/{s}.h5" for s in subjects] + [f"results/labels/{s}.csv"
                                                                                 for s in subjects]
    proc = run_snakemake(wd, "--keep-going", *targets, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, "a truncated video went unnoticed"
    for s in subjects:
        done = (wd / f"results/features/{BACKBONE}/face/{s}.h5").exists()
        assert done == (s != bad), f"{s}: features {'exist' if done else 'missing'}\n{out[-4000:]}"
    # the failure names the file, the subject and what is wrong ...
    assert re.search(rf"{broken.name}.*{bad}.*(truncated|corrupt)", out, re.IGNORECASE), out[-5000:]
    # ... and only that subject's jobs failed
    errors = []
    for block in out.split("Error in rule ")[1:]:
        head, *lines = block.splitlines()
        body = [head]
        for ln in lines:                                  # the indented lines right below "Error in rule"
            if not ln.startswith("    "):
                break
            body.append(ln)
        errors.append("\n".join(body))
    assert errors, out[-4000:]
    for block in errors:
        assert bad in block and not any(s in block for s in subjects if s != bad), block
