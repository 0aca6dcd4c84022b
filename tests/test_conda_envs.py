"""Conda environments: every rule names an env file that exists and parses, with the project's own pins.

`snakemake --sdm conda` itself cannot run here (no conda channels); these tests check everything short of that:
the rule -> env file mapping from the loaded workflow, the env files' content against pyproject.toml, and that
pip (which conda runs on the env's `pip:` list) resolves the project's own editable install.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import tomllib
import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from test_lint import TARGET_RULES, all_workflow_rules, load_workflow

ENVS = ROOT / "envs"
ENV_FILES = sorted(ENVS.glob("*.yaml"))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def project_requirements() -> dict[str, Requirement]:
    """The project's runtime dependencies (pyproject.toml), by normalised name."""
    reqs = [Requirement(r) for r in pyproject()["project"]["dependencies"]]
    return {canon(r.name): r for r in reqs}


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def load_env(path: Path) -> dict:
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict), f"{path}: not a YAML mapping"
    return env


def pip_entries(env: dict) -> list[str]:
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict) and "pip" in dep:
            return [str(x) for x in dep["pip"]]
    return []


def test_there_is_an_env_file():
    assert (ENVS / "au_transfer.yaml") in ENV_FILES


def test_every_rule_names_an_existing_env_file():
    rules = all_workflow_rules()
    checked = 0
    for name, rule in rules.items():
        if name in TARGET_RULES:
            continue
        assert rule["conda"], f"rule {name} ({rule['file']}) declares no conda: env"
        path = Path(rule["conda"])
        assert path.is_file(), f"rule {name} ({rule['file']}) names env file {path}, which does not exist"
        assert path.parent == ENVS, f"rule {name}: env file {path} is not in {ENVS}"
        checked += 1
    assert checked > 0, "the workflow has no rules to check"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_parses(path):
    env = load_env(path)
    assert env.get("name"), f"{path}: no name"
    assert env.get("channels"), f"{path}: no channels"
    assert "defaults" not in env["channels"], f"{path}: the defaults channel needs a licence on many sites"
    deps = env.get("dependencies")
    assert isinstance(deps, list) and deps, f"{path}: no dependencies"
    for dep in deps:
        assert isinstance(dep, str) or (isinstance(dep, dict) and set(dep) == {"pip"}), f"{path}: bad entry {dep!r}"
    pythons = [d for d in deps if isinstance(d, str) and re.match(r"python\b", d)]
    assert len(pythons) == 1, f"{path}: pin python exactly once"
    version = pythons[0].split("=", 1)[1].lstrip("=")
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    assert Version(version) in requires, f"{path}: python {version} is outside requires-python {requires}"
    if pip_entries(env):
        assert "pip" in deps, f"{path}: a pip: section needs pip itself among the conda dependencies"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject(path):
    wanted = project_requirements()
    pinned: dict[str, Requirement] = {}
    for entry in pip_entries(load_env(path)):
        if entry.startswith("-"):       # options such as the project's own `-e ${AU_TRANSFER_ROOT}`
            continue
        req = Requirement(entry)
        assert canon(req.name) in wanted, f"{path}: {req.name} is not a dependency in pyproject.toml"
        pinned[canon(req.name)] = req
    if path.name != "au_transfer.yaml":
        wanted = {k: v for k, v in wanted.items() if k in pinned}
    missing = sorted(set(wanted) - set(pinned))
    assert not missing, f"{path}: pyproject.toml dependencies missing from the env: {missing}"
    for name, req in pinned.items():
        assert req.specifier == wanted[name].specifier, (
            f"{path}: {req.name}{req.specifier} differs from pyproject.toml's {wanted[name]}")


def test_main_env_installs_the_project_itself(tmp_path):
    """The `pip:` list, as conda hands it to pip, resolves to an editable install of this checkout."""
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    entries = pip_entries(load_env(ENVS / "au_transfer.yaml"))
    reqfile = tmp_path / "condaenv.requirements.txt"      # what conda writes next to the env file
    reqfile.write_text("\n".join(entries) + "\n")
    env_root = load_workflow()["environ"]["AU_TRANSFER_ROOT"]
    assert env_root and Path(env_root) == ROOT.resolve(), "common.smk must set AU_TRANSFER_ROOT to the project"
    old = os.environ.get("AU_TRANSFER_ROOT")
    os.environ["AU_TRANSFER_ROOT"] = env_root
    try:
        parsed = list(parse_requirements(str(reqfile), session=PipSession()))
    finally:
        if old is None:
            del os.environ["AU_TRANSFER_ROOT"]
        else:
            os.environ["AU_TRANSFER_ROOT"] = old
    editable = [r for r in parsed if r.is_editable]
    assert len(editable) == 1, f"expected one editable install of the project, got {[r.requirement for r in editable]}"
    target = Path(editable[0].requirement)
    assert target.resolve() == ROOT.resolve()
    assert tomllib.loads((target / "pyproject.toml").read_text())["project"]["name"] == "au-transfer"


def test_post_deploy_installs_the_no_deps_requirements():
    script = ENVS / "au_transfer.post-deploy.sh"
    assert script.is_file(), "envs/au_transfer.post-deploy.sh (run by snakemake after creating the env) is missing"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "--no-deps" in text and "requirements-nodeps.txt" in text
    for line in (ROOT / "requirements-nodeps.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            assert canon(req.name) not in {canon(e.split("=")[0]) for e in pip_entries(load_env(ENVS / "au_transfer.yaml"))
                                           if not e.startswith("-")}, f"{req.name} must be installed with --no-deps only"
    # without the project folder it stops before pip, with a message naming the variable
    env = {k: v for k, v in os.environ.items() if k != "AU_TRANSFER_ROOT"}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "AU_TRANSFER_ROOT" in proc.stderr
