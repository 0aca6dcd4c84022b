"""Partial reruns: on a finished tiny run, a change plans exactly the jobs it affects (from `snakemake -n`).

Snakemake reruns a job when its params, inputs, code or mtimes change (`--rerun-triggers`, all by default); these
tests prove that each kind of change reaches the jobs that depend on it and no others, which holds only when every
config value a rule uses reaches it through `params:` and nothing else leaks into a rule's params.
"""

from __future__ import annotations

import copy
import os
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TEST_CONFIG, Job, copy_workflow, parse_dry_run, plan

from au_transfer.layout import Layout

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("workflow")]

# jobs upstream of the classifiers: never rerun by a classifier or backbone change
PER_SUBJECT_RULES = {"demo_subject", "labels", "landmarks", "faces", "faces_qc"}


def with_config(tmp_path: Path, change) -> Path:
    """A copy of the test config, changed by ``change(cfg)``."""
    cfg = copy.deepcopy(yaml.safe_load(TEST_CONFIG.read_text()))
    change(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))   # key order kept: params dicts compare in order
    return path


def rules_of(jobs: list[Job]) -> set[str]:
    return {j.rule for j in jobs}


def describe(jobs: list[Job]) -> str:
    return "\n  ".join(map(str, jobs[:40]))


def test_dry_run_parser_reads_rules_and_wildcards():
    text = ("[Sat Nov 28 10:00:00 2026]\nrule faces:\n    input: a\n    output: results/faces/SN002.h5\n"
            "    jobid: 7\n    reason: Updated input files: a\n    wildcards: subject=SN002\n"
            "    resources: tmpdir=<TBD>\n\nlocalrule all:\n    input: x\n    jobid: 0\n")
    jobs = parse_dry_run(text)
    assert [(j.rule, j.wildcards, j.reason) for j in jobs] == [("faces", {"subject": "SN002"},
                                                               "Updated input files: a")]


def test_scripts_never_read_config_directly():
    """A config value read inside a script, not passed through params:, is invisible to Snakemake's reruns."""
    scripts = sorted((ROOT / "workflow" / "scripts").glob("*.py"))
    assert scripts, "no workflow scripts"
    pattern = re.compile(r"snakemake\s*\.\s*config\b|getattr\(\s*snakemake\s*,\s*['\"]config['\"]")
    offenders = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in scripts
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, "scripts must get config values through params:, not snakemake.config:\n  " + "\n  ".join(
        offenders)


def test_finished_run_has_nothing_to_do(finished_workflow):
    t0 = time.perf_counter()
    jobs, out = plan(finished_workflow)
    print(f"no-op plan of the finished tiny workflow: {time.perf_counter() - t0:.1f} s")
    assert not jobs, "a finished run plans jobs (unstable params?):\n  " + describe(jobs)
    assert "Nothing to be done" in out


def test_moved_run_with_a_fresh_checkout_has_nothing_to_do(finished_workflow, tmp_path):
    """A finished run copied elsewhere (mtimes kept, as cp -a / rsync -a do), run by a fresh copy of the
    repository (every file, scripts included, newer than the results, as after git clone) plans no job."""
    import shutil

    moved = copy_workflow(finished_workflow, tmp_path / "moved")
    ignore = shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "logs", "__pycache__", "*.egg-info",
                                    ".pytest_cache", ".ruff_cache")
    clone = Path(shutil.copytree(ROOT, tmp_path / "clone", ignore=ignore, copy_function=shutil.copyfile))
    newest = max(p.stat().st_mtime for p in finished_workflow.rglob("*") if p.is_file())
    assert all(p.stat().st_mtime >= newest for p in (clone / "workflow" / "scripts").glob("*.py"))
    config = clone / TEST_CONFIG.relative_to(ROOT)
    jobs, out = plan(moved, config, snakefile=clone / "Snakefile")
    assert not jobs, "a moved finished run replans:\n  " + describe(jobs)


def test_svm_parameter_reruns_only_svm_fits_and_their_dependents(finished_workflow, tmp_path):
    def change(cfg):
        cfg["classifiers"].setdefault("svm", {})["C_grid"] = [0.02, 0.2]

    jobs, _ = plan(finished_workflow, with_config(tmp_path, change))
    svm_models = sorted(finished_workflow.glob(f"results/models/*/*-svm/{Layout.model_pattern()}"))
    assert svm_models, "the finished run has no SVM models"
    fits = [j for j in jobs if j.rule == "fit_frame"]
    assert len(fits) == len(svm_models), f"{len(fits)} frame fits planned for {len(svm_models)} SVM models"
    for job in jobs:
        assert job.rule not in PER_SUBJECT_RULES | {"features", "split_features", "mean_image", "fit_lstm"}, (
            f"SVM change reruns {job}")
        if job.rule == "fit_frame":
            assert job.wildcards["classifier"] == "svm", f"SVM change reruns {job}"
        assert not job.rule.startswith(("finetune", "ft_features")), f"SVM change reruns {job}"
        model = job.wildcards.get("model")
        if job.rule == "merge_predictions":
            assert model.endswith("-svm"), f"SVM change merges a non-SVM model: {job}"
        if job.rule == "metrics":
            assert model.endswith("-svm") or model.startswith("ens-"), f"SVM change rescores {job}"


def test_face_size_reruns_faces_and_later_but_no_landmarks(finished_workflow, tmp_path):
    def change(cfg):
        cfg["faces"]["size"] = cfg["faces"].get("size", 160) + 16

    jobs, _ = plan(finished_workflow, with_config(tmp_path, change))
    rules = rules_of(jobs)
    subjects = sorted(p.stem for p in finished_workflow.glob("results/faces/*.h5"))
    assert sorted(j.wildcards["recording"] for j in jobs if j.rule == "faces") == subjects
    assert {"faces", "features", "fit_frame"} <= rules, sorted(rules)
    assert {j.wildcards["classifier"] for j in jobs if j.rule == "fit_frame"} == {"lda", "svm"}
    assert not rules & {"landmarks", "labels", "demo_subject"}, "face size change reruns:\n  " + describe(
        [j for j in jobs if j.rule in {"landmarks", "labels", "demo_subject"}])


def test_new_backbone_runs_only_its_own_jobs(finished_workflow, tmp_path):
    old = yaml.safe_load(TEST_CONFIG.read_text())["features"]["backbones"]
    new = "mtcnn_onet" if "mtcnn_onet" not in old else "cnn_f"

    def change(cfg):
        cfg["features"]["backbones"] = [*old, new]

    jobs, _ = plan(finished_workflow, with_config(tmp_path, change))
    assert any(j.rule == "features" and j.wildcards["backbone"] == new for j in jobs), describe(jobs)
    assert any(j.rule == "fit_frame" and j.wildcards["backbone"] == new for j in jobs), describe(jobs)
    for job in jobs:
        assert job.rule not in PER_SUBJECT_RULES, f"a new backbone reruns {job}"
        if "backbone" in job.wildcards:
            assert job.wildcards["backbone"] == new, f"a new backbone reruns another backbone's job: {job}"
        if job.rule == "merge_predictions":
            assert job.wildcards["model"].startswith(f"{new}-"), f"a new backbone remerges {job}"
        if job.rule == "metrics":
            assert job.wildcards["model"].startswith(f"{new}-"), f"a new backbone rescores {job}"


@pytest.mark.parametrize("how", ["touched", "rewritten"])
def test_changed_video_reruns_only_that_subjects_jobs(finished_workflow, tmp_path, how):
    """A new mtime (DISFA-size videos) or new content of one subject's video reruns that subject's jobs only.

    Snakemake compares checksums of inputs under --max-checksum-file-size (1 MB) instead of mtimes, so a merely
    touched tiny test video counts as unchanged; the "touched" case lowers that threshold to behave like a real
    DISFA video (hundreds of MB), the "rewritten" case changes the bytes.
    """
    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    videos = sorted(wd.glob("demo_corpus/Videos_*/*SN002*"))
    assert len(videos) == 1, videos
    args: tuple[str, ...] = ()
    if how == "touched":
        now = time.time()
        os.utime(videos[0], (now, now))
        args = ("--max-checksum-file-size", "1")
    else:
        with open(videos[0], "ab") as fh:
            fh.write(b"\0")
    jobs, _ = plan(wd, TEST_CONFIG, *args)
    rules = rules_of(jobs)
    assert {"labels", "landmarks", "faces", "features"} <= rules, sorted(rules)
    for job in jobs:
        assert job.rule != "demo_subject", f"a changed video regenerates the corpus: {job}"
        subject = job.wildcards.get("recording", job.wildcards.get("subject"))  # per-frame jobs: the recording
        assert subject in (None, "SN002"), f"a change of SN002's video reruns another subject's job: {job}"
    assert {j.wildcards.get("recording") for j in jobs if j.rule in ("labels", "faces", "features")} == {"SN002"}


def test_touched_small_video_with_same_content_reruns_nothing(finished_workflow, tmp_path):
    wd = copy_workflow(finished_workflow, tmp_path / "wd")
    video = sorted(wd.glob("demo_corpus/Videos_*/*SN002*"))[0]
    now = time.time()
    os.utime(video, (now, now))
    jobs, out = plan(wd)
    assert not jobs and "Nothing to be done" in out, describe(jobs)
