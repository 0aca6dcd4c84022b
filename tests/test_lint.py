"""The workflow passes `snakemake --lint`, and its rules follow the project's rule conventions.

`workflow_rules()` (also used by test_conda_envs.py and test_slurm.py) loads the workflow through the Snakemake
API in a subprocess and returns what each rule declares, so that tests check the real rule objects rather than
a regex over the .smk files.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from conftest import ROOT, SNAKEMAKE, TEST_CONFIG

# Run inside a subprocess: the Snakemake API changes the working directory and keeps global state.
_DUMP_RULES = r"""
import json, os, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

snakefile, workdir, configfile, dump = (Path(a) for a in sys.argv[1:5])
overrides = json.loads(sys.argv[5])
with SnakemakeApi(OutputSettings(quiet=None)) as api:
    wf = api.workflow(ResourceSettings(), ConfigSettings(configfiles=[configfile], config=overrides),
                      snakefile=snakefile, workdir=workdir)._workflow
    out = {}
    for r in wf.rules:
        conda = str((Path(r.basedir) / r.conda_env).resolve()) if isinstance(r.conda_env, str) else None
        out[r.name] = {
            "conda": conda,
            "log": [str(f) for f in r.log],
            "resources": sorted(r.resources),
            "gpu": r.resources.get("gpu").value if "gpu" in r.resources else 0,
            "local": r.name in wf._localrules,
            "params": sorted(r.params.keys()) if r.params else [],
            "script": str(r.script) if r.script else None,
            "file": str(r.snakefile),
        }
    dump.write_text(json.dumps({"rules": out, "environ": {"AU_TRANSFER_ROOT": os.environ.get("AU_TRANSFER_ROOT")}}))
"""


@functools.cache
def load_workflow(configfile: Path = TEST_CONFIG, overrides: str = "{}", gpus: str = "1") -> dict:
    """The workflow loaded with a config file (and JSON ``overrides`` of top-level config keys) on a machine with
    ``gpus`` GPUs (AU_TRANSFER_GPUS; by default one, so that the GPU rules claim ``gpu``): ``rules`` (what each
    declares) and the ``environ`` it set."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "rules.json"
        proc = subprocess.run([sys.executable, "-c", _DUMP_RULES, str(ROOT / "Snakefile"), tmp, str(configfile),
                               str(dump), overrides], capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, AU_TRANSFER_GPUS=gpus))
        assert proc.returncode == 0, f"could not load the workflow:\n{proc.stderr[-5000:]}"
        return json.loads(dump.read_text())


def workflow_rules(configfile: Path = TEST_CONFIG, overrides: str = "{}", gpus: str = "1") -> dict[str, dict]:
    """Every rule of the workflow and what it declares (conda, log, resources, gpu, local, params, script)."""
    return load_workflow(configfile, overrides, gpus)["rules"]


#: The workflow's target rules: they only ask for files and run nothing (no log, no conda env).
TARGET_RULES = ("all", "predict")


def all_workflow_rules() -> dict[str, dict]:
    """Rules under the test config with either fine-tuning head (some rules exist only under a config choice)."""
    finetune = yaml.safe_load(TEST_CONFIG.read_text()).get("finetune") or {}
    rules = {}
    for head in ("per_au", "multilabel"):
        rules.update(workflow_rules(TEST_CONFIG, json.dumps({"finetune": {**finetune, "head": head}})))
    return rules


def test_snakemake_lint_is_clean(tmp_path):
    # (snakemake 9.27's command line ignores `--lint json`: parse the text report)
    proc = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(TEST_CONFIG), "--lint"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in report, f"snakemake --lint is not clean:\n{report[-8000:]}"
    assert "Congratulations" in report, report[-4000:]


def test_every_rule_has_log_and_conda():
    rules = all_workflow_rules()
    assert "all" in rules and "predict" in rules
    for name, rule in rules.items():
        if name in TARGET_RULES:
            continue
        assert rule["log"], f"rule {name} ({rule['file']}) has no log:"
        assert rule["conda"], f"rule {name} ({rule['file']}) has no conda:"


def test_gpu_rules_are_not_local_rules():
    """A rule that asks for a GPU must run as a cluster job, never on the submit host."""
    bad = [name for name, rule in all_workflow_rules().items() if rule["gpu"] and rule["local"]]
    assert not bad, f"GPU rules marked localrules: {bad}"


GPU_RULES = {"features", "split_features", "fit_lstm", "fit_lstm_regress", "finetune", "finetune_multilabel",
             "ft_features", "predict_video"}
DEMO_CONFIG = ROOT / "config.yaml"  # every device: auto (the test config runs the LSTM and fine-tuning on cpu)


def demo_rules(gpus: str) -> dict[str, dict]:
    """The demo config's rules under both fine-tuning heads on a machine with ``gpus`` GPUs."""
    finetune = yaml.safe_load(DEMO_CONFIG.read_text())["finetune"]
    rules = {}
    for head in ("per_au", "multilabel"):
        rules.update(workflow_rules(DEMO_CONFIG, json.dumps({"finetune": {**finetune, "head": head}}), gpus))
    return rules


def test_gpu_rules_claim_a_gpu_only_where_there_is_one():
    """The torch stages' rules claim the `gpu` resource on a machine with a GPU (so that `--resources gpu=1` keeps
    them from sharing it) and not on a machine without one, where `gpu=1` would run CPU jobs one at a time; a
    section with device: cpu never claims one."""
    claiming = {name for name, rule in demo_rules("1").items() if rule["gpu"]}
    assert claiming == GPU_RULES, f"missing: {sorted(GPU_RULES - claiming)}, unexpected: {sorted(claiming - GPU_RULES)}"
    assert not [name for name, rule in demo_rules("0").items() if rule["gpu"]], "GPU claimed on a machine without GPU"
    test_cfg = workflow_rules(TEST_CONFIG, gpus="1")  # lstm and finetune: device cpu
    assert test_cfg["features"]["gpu"] == 1
    assert test_cfg["fit_lstm"]["gpu"] == 0 and test_cfg["finetune_multilabel"]["gpu"] == 0


def test_local_profile_plans_the_workflow(tmp_path):
    proc = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(TEST_CONFIG), "--workflow-profile", str(ROOT / "profiles" / "local"),
                           "--dry-run"], capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "workflow specific profile" in out and "profiles/local" in out
    assert re.search(r"^total\s+\d+", out, re.MULTILINE), out[-3000:]
