"""The workflow on a real SLURM cluster, through profiles/slurm and Snakemake's SLURM executor plugin.

A module fixture starts a throw-away single-node cluster with workflow/tools/slurm_local.sh (Debian's munge,
slurmctld, slurmd, slurm-client, slurmdbd + MariaDB, so that `sacct` works; fake GPUs as gres/gpu; everything under
a temporary folder, on free ports) and its finalizer stops exactly those daemons (slurm_stop.sh, by PID file).
The test runs a small part of the demo workflow (corpus -> labels, and landmarks -> faces -> features of one
subject and one backbone) with `--workflow-profile profiles/slurm`, then asks `sacct` whether each non-local job
ran as a SLURM job, with the profile's cores, memory and time, and whether the GPU rule was given a GPU.
Without root (nothing to install or start daemons with) it is skipped; in CI it runs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import ROOT, TEST_CONFIG
from test_lint import all_workflow_rules, demo_rules, workflow_rules

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

TOOLS = ROOT / "workflow" / "tools"
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
VENV_BIN = Path(sys.executable).parent
PARTITION = "aupart"
SUBJECT = "SN001"
REGION = "face"


def load_profile() -> dict:
    """The SLURM profile with its yte expressions evaluated (as Snakemake does) for a given environment."""
    import yte

    with open(PROFILE) as fh:
        return yte.process_yaml(fh, require_use_yte=True)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def test_profile_names_only_existing_rules():
    """set-threads / set-resources for a misspelt rule would be ignored silently by Snakemake."""
    rules = all_workflow_rules()
    profile = load_profile()
    for key in ("set-threads", "set-resources"):
        unknown = sorted(set(profile.get(key, {})) - set(rules))
        assert not unknown, f"{PROFILE}: {key} names rules that the workflow does not have: {unknown}"


def test_profile_gpu_rules_ask_for_a_gpu_on_the_gpu_partition(monkeypatch):
    monkeypatch.setenv("AU_SLURM_ACCOUNT", "acct")
    monkeypatch.setenv("AU_SLURM_PARTITION", "cpuq")
    monkeypatch.setenv("AU_SLURM_GPU_PARTITION", "gpuq")
    profile = load_profile()
    assert profile["executor"] == "slurm"
    assert profile["default-resources"]["slurm_account"] == "acct"
    assert profile["default-resources"]["slurm_partition"] == "cpuq"
    for res in ("mem_mb", "runtime"):
        assert res in profile["default-resources"], f"default-resources lacks {res}"
    per_rule = profile["set-resources"]
    rules = demo_rules("1")  # the rules on a machine with a GPU, every device auto: the GPU rules claim one
    gpu_rules = [name for name, rule in rules.items() if rule["gpu"]]
    assert gpu_rules, "no rule declares resources: gpu=1"
    for name in gpu_rules:
        # rules generated with computed names (one per split) cannot be addressed by name in a profile
        if name in per_rule:
            assert per_rule[name].get("gpu") == 1, f"set-resources.{name} must keep gpu: 1"
            assert per_rule[name].get("slurm_partition") == "gpuq", f"set-resources.{name}: GPU partition"
    for name, res in per_rule.items():
        if res.get("gpu"):
            assert rules[name]["gpu"], f"rule {name} gets a GPU on SLURM but not on a local GPU machine (gpu=1)"
    monkeypatch.delenv("AU_SLURM_GPU_PARTITION")
    assert load_profile()["set-resources"]["features"]["slurm_partition"] == "cpuq"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster with accounting; yields the environment to reach it."""
    if os.geteuid() != 0:
        pytest.skip("SLURM test needs root to install packages and start slurmctld/slurmd/slurmdbd")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("SLURM test needs Debian's apt-get (or an installed SLURM) to build a local cluster")
    base = tmp_path_factory.mktemp("slurm")
    ctld, slurmd, dbd, mysql = free_ports(4)
    env = dict(os.environ, SLURM_LOCAL_DIR=str(base), SLURM_LOCAL_PARTITION=PARTITION, SLURM_LOCAL_GPUS="2",
               SLURM_LOCAL_ACCOUNTING="slurmdbd", SLURM_LOCAL_CTLD_PORT=str(ctld),
               SLURM_LOCAL_SLURMD_PORT=str(slurmd), SLURM_LOCAL_DBD_PORT=str(dbd), SLURM_LOCAL_MYSQL_PORT=str(mysql),
               # a node as large as the profile's largest request (nothing enforces it: no cgroups)
               SLURM_LOCAL_CPUS="8", SLURM_LOCAL_MEM_MB="64000", SLURM_LOCAL_WAIT_S="90",
               TMPDIR=str(base))

    def stop():
        proc = subprocess.run(["bash", str(TOOLS / "slurm_stop.sh"), "--purge"], env=env, capture_output=True,
                              text=True, timeout=120)
        print(proc.stdout, proc.stderr)

    start = subprocess.run(["bash", str(TOOLS / "slurm_local.sh")], env=env, capture_output=True, text=True,
                           timeout=1200)
    if start.returncode != 0:
        logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((base / "log").glob("*.log")))
        stop()
        pytest.fail(f"slurm_local.sh failed ({start.returncode}):\n{start.stdout}\n{start.stderr}{logs}")
    print(start.stdout)
    env["PATH"] = f"{base / 'bin'}{os.pathsep}{VENV_BIN}{os.pathsep}{env['PATH']}"
    env["SLURM_CONF"] = str(base / "etc" / "slurm.conf")
    try:
        yield {"env": env, "base": base}
    finally:
        stop()


def sacct_jobs(env: dict) -> list[dict]:
    out = subprocess.run(["sacct", "-a", "-X", "-n", "-P", "-S", "2000-01-01", "-o",
                          "JobID,State,Partition,Account,AllocTRES,ReqTRES,Timelimit,Comment"],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    keys = ["jobid", "state", "partition", "account", "alloc", "req", "timelimit", "comment"]
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines() if line.strip()]


def tres(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def test_workflow_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    env = dict(slurm_cluster["env"], AU_SLURM_ACCOUNT="root", AU_SLURM_PARTITION=PARTITION, OMP_NUM_THREADS="1")
    env.pop("AU_SLURM_GPU_PARTITION", None)
    config = yaml.safe_load(TEST_CONFIG.read_text())
    backbone = config["features"]["backbones"][0]
    targets = [f"results/labels/{SUBJECT}.csv", f"results/features/{backbone}/{REGION}/{SUBJECT}.h5"]
    wd = tmp_path / "wd"
    cmd = [str(VENV_BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(wd),
           "--configfile", str(TEST_CONFIG), "--workflow-profile", str(PROFILE.parent),
           "--jobs", "4", "--local-cores", "1", "--retries", "0", "--latency-wait", "10",
           "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
           "--slurm-keep-successful-logs", *targets]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.time() - t0
    jobs = sacct_jobs(env)
    print(f"snakemake --executor slurm: {elapsed:.0f} s for {len(jobs)} SLURM jobs")
    slurm_logs = "".join(f"\n--- {p}\n{p.read_text()[-3000:]}" for p in sorted(wd.glob(".snakemake/slurm_logs/**/*.log")))
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}{slurm_logs}"
    assert "submitted with SLURM jobid" in proc.stdout + proc.stderr, proc.stderr[-3000:]

    # the outputs exist and are what the stages write
    assert (wd / targets[0]).stat().st_size > 0
    with h5py.File(wd / targets[1]) as h5:
        assert h5["features"].shape[0] == h5["frames"].shape[0] > 0

    # every non-local job of the DAG ran as a SLURM job (one each), local rules did not
    rules = workflow_rules()
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        m = re.match(r"rule_(?P<rule>.+?)(?:_wildcards_(?P<wc>.*))?$", job["comment"])
        assert m, f"SLURM job {job['jobid']} has no rule comment: {job}"
        by_rule.setdefault(m["rule"], []).append(job)
    assert set(by_rule) == {"landmarks", "faces", "features"}, f"SLURM jobs per rule: {sorted(by_rule)}"
    assert all(rules[r]["local"] for r in ("demo_subject", "labels")), "corpus and labels should be local rules"
    profile = load_profile()
    for rule, rjobs in by_rule.items():
        assert len(rjobs) == 1, f"rule {rule} ran {len(rjobs)} times"
        job = rjobs[0]
        alloc, req = tres(job["alloc"]), tres(job["req"])
        assert job["state"] == "COMPLETED", job
        assert job["partition"] == PARTITION and job["account"] == "root", job
        # the profile's resources reached SLURM
        assert int(alloc["cpu"]) == profile["set-threads"][rule], (rule, job)
        assert alloc["mem"] == f"{profile['set-resources'][rule]['mem_mb']}M", (rule, job)
        hours, minutes = divmod(profile["set-resources"][rule]["runtime"], 60)
        assert job["timelimit"] == f"{hours:02d}:{minutes:02d}:00", (rule, job)
        # GPU rules (and only those) were given a GPU
        if rules[rule]["gpu"]:
            assert alloc.get("gres/gpu") == "1" and req.get("gres/gpu") == "1", (rule, job)
        else:
            assert "gres/gpu" not in alloc, (rule, job)
    assert rules["features"]["gpu"] == 1

    # a second run has nothing left to do (the cluster's outputs are trusted)
    again = subprocess.run(cmd + ["--dry-run"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


@pytest.mark.xdist_group("workflow")
def test_predict_target_runs_as_slurm_jobs(slurm_cluster, finished_workflow, tmp_path):
    """`snakemake predict` through profiles/slurm on a finished run: one SLURM job per video of the study, each given
    the profile's GPU, cores, memory and time; a rerun has nothing to do."""
    from conftest import copy_workflow

    env = dict(slurm_cluster["env"], AU_SLURM_ACCOUNT="root", AU_SLURM_PARTITION=PARTITION, OMP_NUM_THREADS="1")
    env.pop("AU_SLURM_GPU_PARTITION", None)
    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    study = tmp_path / "study"
    study.mkdir()
    videos = sorted((wd / "demo_corpus").glob("Video*/*"))[:2]
    for v in videos:
        shutil.copy2(v, study / v.name)
    before = {j["jobid"] for j in sacct_jobs(env)}
    cmd = [str(VENV_BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(wd),
           "--configfile", str(TEST_CONFIG), "--workflow-profile", str(PROFILE.parent), "--config",
           f"predict_input={study}", "--jobs", "4", "--local-cores", "1", "--retries", "0", "--latency-wait", "10",
           "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2", "predict"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    for v in videos:
        assert next((wd / "results" / "predict").glob(f"*/{v.stem}.csv")).stat().st_size > 0
    jobs = [j for j in sacct_jobs(env) if j["jobid"] not in before]
    assert len(jobs) == len(videos) and all(j["comment"].startswith("rule_predict_video") for j in jobs), jobs
    profile = load_profile()
    for job in jobs:
        alloc = tres(job["alloc"])
        assert job["state"] == "COMPLETED" and job["partition"] == PARTITION, job
        assert alloc.get("gres/gpu") == "1", job
        assert int(alloc["cpu"]) == profile["set-threads"]["predict_video"], job
        assert alloc["mem"] == f"{profile['set-resources']['predict_video']['mem_mb']}M", job
    again = subprocess.run(cmd + ["--dry-run"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
