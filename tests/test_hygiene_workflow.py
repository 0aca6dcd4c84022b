"""Workflow-level hygiene: with two folds, each fold's fine-tuned features and the models fitted on them come from
that fold's own network (a fine-tuned network has seen its fold's training subjects, which are test subjects of
another fold). Checked on the planned jobs of a dry run (`snakemake -n`), with either fine-tuning head; nothing
is run. The package-level guard (extract_ft_features_many refuses another split's network) is tested in
test_hygiene.py."""

from __future__ import annotations

import pytest
import yaml
from conftest import TEST_CONFIG, Job, parse_dry_run, run_snakemake

# two folds of the tiny test corpus: each subject is a training subject of one fold and a test subject of another
FOLDS = {"fold1": {"train": ["SN001"], "val": ["SN002"], "test": ["SN003"]},
         "fold2": {"train": ["SN003"], "val": ["SN001"], "test": ["SN002"]}}
SPLIT_DIRS = ("finetune", "ft_features", "models", "predictions", "metrics", "split_features", "mean_image")


def split_of(path: str) -> str | None:
    """The split of a split-specific result file (results/{finetune,ft_features,models,...}/{split}/...)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[0] == "results" and parts[1] in SPLIT_DIRS and parts[2] in FOLDS:
        return parts[2]
    return None


@pytest.fixture(scope="module", params=["multilabel", "per_au"])
def two_fold_plan(request, tmp_path_factory) -> list[Job]:
    """The planned jobs of the whole workflow on the tiny test config with two folds, fine-tuned features on, and
    LDA/SVM on the fine-tuned features (classifiers.ft_backbones)."""
    tmp = tmp_path_factory.mktemp(f"two_folds_{request.param}")
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["splits"] = FOLDS
    cfg["finetune"].update(head=request.param, extract_features=True)
    cfg["classifiers"]["ft_backbones"] = list(cfg["finetune"]["backbones"])
    path = tmp / "two_folds.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp / "wd", "-n", configfile=path, timeout=300)
    jobs = parse_dry_run(proc.stdout)
    assert jobs and all(j.output for j in jobs), proc.stdout[-3000:]
    return jobs


def test_ft_features_of_each_fold_come_from_that_folds_network(two_fold_plan):
    seen = {s: 0 for s in FOLDS}
    for job in two_fold_plan:
        if not any(o.startswith("results/ft_features/") for o in job.output):
            continue
        splits = {split_of(o) for o in job.output}
        assert len(splits) == 1 and None not in splits, f"{job.rule} writes features of {splits}: {job.output}"
        split = splits.pop()
        models = [i for i in job.input if i.endswith(".pt")]
        assert models, f"{job.rule}: no network among its inputs {job.input}"
        wrong = [m for m in models if not m.startswith(f"results/finetune/{split}/")]
        assert not wrong, f"{job.rule} writes fine-tuned features of {split} from the network(s) {wrong}"
        seen[split] += 1
    assert all(seen.values()), f"no fine-tuned feature job planned for some fold: {seen}"


def test_ft_classifiers_of_each_fold_read_that_folds_ft_features(two_fold_plan):
    seen = {s: 0 for s in FOLDS}
    for job in two_fold_plan:
        wc = job.wildcards
        if not (job.rule.startswith("fit_") and wc.get("backbone", "").endswith("_ft")):
            continue
        split = wc["split"]
        features = [i for i in job.input if i.startswith("results/ft_features/")]
        own = f"results/ft_features/{split}/{wc['backbone']}/{wc['region']}/"
        assert features and all(f.startswith(own) for f in features), \
            f"{job.rule} of {job.output[0]} reads {features}, expected files under {own}"
        seen[split] += 1
    assert all(seen.values()), f"no classifier on fine-tuned features planned for some fold: {seen}"


def test_no_job_of_one_fold_reads_another_folds_results(two_fold_plan):
    """Any job whose outputs belong to one fold (networks, features, models, predictions, metrics) reads no
    fold-specific result of another fold."""
    checked = 0
    for job in two_fold_plan:
        splits = {split_of(o) for o in job.output}
        if len(splits) != 1 or None in splits:
            continue  # cross-fold summaries (summary.csv, the report) and fold-free files
        split = splits.pop()
        other = [i for i in job.input if split_of(i) not in (None, split)]
        assert not other, f"{job.rule} writes {job.output[0]} of {split} but reads {other}"
        checked += 1
    assert checked > 100
