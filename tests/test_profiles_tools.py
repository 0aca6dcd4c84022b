"""Bad-input probe items of the workflow's profiles and tools: a run killed mid-way resumes with the same command
(every profile sets ``rerun-incomplete``), and ``slurm_local.sh --env`` prints shell text that is safe to eval."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

PROFILES = sorted((ROOT / "profiles").glob("*/config.yaml"))


@pytest.mark.parametrize("profile", PROFILES, ids=[p.parent.name for p in PROFILES])
def test_every_profile_recomputes_incomplete_outputs(profile: Path) -> None:
    """After Ctrl-C or kill -9 of snakemake the same command resumes (no IncompleteFilesException)."""
    text = profile.read_text()
    cfg = yaml.safe_load(text) if "__use_yte__" not in text else {
        k: v for k, v in yaml.safe_load(text).items() if not k.startswith("__")}
    assert cfg.get("rerun-incomplete") is True, f"{profile} lacks rerun-incomplete: true"


def test_profiles_cover_default_local_slurm() -> None:
    assert {p.parent.name for p in PROFILES} >= {"default", "local", "slurm"}


@pytest.mark.parametrize("evil", ["/tmp/x y; touch {marker}", "/tmp/$(touch {marker})", "/tmp/`touch {marker}`",
                                  "/tmp/a'b\"c\n touch {marker}"])
def test_slurm_local_env_is_quoted(tmp_path: Path, evil: str) -> None:
    """``eval "$(slurm_local.sh --env)"`` never runs shell text placed in SLURM_LOCAL_DIR: it sets the variables to
    the literal paths."""
    marker = tmp_path / "ran"
    base = evil.format(marker=marker)
    script = ROOT / "workflow" / "tools" / "slurm_local.sh"
    env = {**os.environ, "SLURM_LOCAL_DIR": base}
    out = subprocess.run(["bash", "-c", f'eval "$(bash {script} --env)" && printf "%s\\0%s" "$SLURM_CONF" "$PATH"'],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    conf, path = out.split("\0")
    assert not marker.exists(), "shell text in SLURM_LOCAL_DIR was executed"
    assert conf == f"{base}/etc/slurm.conf"
    assert path.startswith(f"{base}/bin:") and path.endswith(os.environ["PATH"])
