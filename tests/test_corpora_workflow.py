"""The workflow on other corpora (issue 13): the BP4D 3-fold protocol plans on a fake tree; a user's own (generic)
corpus runs end to end beside a synthetic BP4D-layout corpus, with a within-corpus and a cross-corpus split scored
and reported; recordings (BP4D tasks) are the unit of the per-frame stages and of the classifiers' files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, plan, run_snakemake

from au_transfer.datasets.bp4d import BP4D_SUBJECTS
from au_transfer.faces.video import image_files
from au_transfer.layout import Layout

pytestmark = pytest.mark.xdist_group("corpora_workflow")


def _fake_bp4d(root: Path) -> None:
    """Folders and (empty) occurrence files of the full BP4D release: enough for a dry run."""
    for s in BP4D_SUBJECTS:
        for t in range(1, 9):
            (root / "BP4D-training" / s / f"T{t}").mkdir(parents=True)
            occ = root / "AUCoding" / "AU_OCC" / f"{s}_T{t}.csv"
            occ.parent.mkdir(parents=True, exist_ok=True)
            occ.write_text("")


def _job_counts(text: str) -> dict[str, int]:
    """The `Job stats` table of a dry run: rule -> number of jobs."""
    counts, inside = {}, False
    for line in text.splitlines():
        if line.startswith("Job stats"):
            inside = True
            continue
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip()) if inside else None
        if m:
            counts[m[1]] = int(m[2])
    return counts


def _bp4d_plan(tmp_path, reduce: bool):
    """Dry-run config/bp4d_3fold.yaml on a fake BP4D tree; ``reduce``: each fold keeps two subjects of each of its
    sets (the DAG of the full protocol, ~20,000 jobs, takes minutes to build)."""
    data = tmp_path / "BP4D"
    _fake_bp4d(data)
    work = tmp_path / "work"
    work.mkdir()
    cfg = yaml.safe_load((ROOT / "config" / "bp4d_3fold.yaml").read_text())
    for opts in (cfg.get("backbones") or {}).values():  # local weight files the config names (e.g. cnn_f)
        if (opts or {}).get("weights") not in (None, "pretrained", "random"):
            (work / opts["weights"]).parent.mkdir(parents=True, exist_ok=True)
            (work / opts["weights"]).write_bytes(b"")
    if reduce:
        cfg["splits"] = {name: {w: sets[w][:2] for w in ("train", "val", "test")} for name, sets in cfg["splits"].items()}
    cfg["data_root"] = str(data)
    configfile = tmp_path / "bp4d_3fold.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    # job counts only (a full listing would take longer than the planning)
    proc = run_snakemake(work, "--dry-run", "--quiet", "rules", configfile=configfile)
    counts = _job_counts(proc.stdout)
    n_rec = len({s for sp in cfg["splits"].values() for w in ("train", "val", "test") for s in sp[w]}) * 8
    assert counts["labels"] == n_rec and counts["landmarks"] == n_rec and counts["faces"] == n_rec, counts
    n_folds, n_aus = len(cfg["splits"]), len(cfg["data"]["aus"])
    assert counts["fit_frame"] > 0 and counts["fit_frame"] % (n_folds * n_aus) == 0, counts
    assert counts["fit_lstm"] == n_folds * n_aus and counts["summary"] == 1 and counts["paper_report"] == 1
    # one fit of fold1: it reads the labels (and features) of all eight tasks of each of the fold's subjects
    target = Layout().model_file("fold1", "alexnet-face-svm", 1)
    jobs, out = plan(work, configfile, "--", target)
    fit = next(j for j in jobs if j.rule == "fit_frame")
    fold1 = [s for w in ("train", "val", "test") for s in cfg["splits"]["fold1"][w]]
    assert sum("results/labels/" in f for f in fit.input) == len(fold1) * 8, out[-3000:]
    assert {f"results/labels/{s}.T{t}.csv" for s in fold1 for t in range(1, 9)} <= set(fit.input)
    assert {f"results/features/alexnet/face/{s}.T8.h5" for s in fold1} <= set(fit.input)


def test_bp4d_three_fold_config_plans(tmp_path):
    """config/bp4d_3fold.yaml (every stage, backbone, model, ensemble and the report) plans on a BP4D tree, each
    subject's eight tasks as recordings; the folds keep two subjects per set to keep the test fast."""
    _bp4d_plan(tmp_path, reduce=True)


@pytest.mark.skipif(not os.environ.get("AU_TRANSFER_FULL_PLAN"), reason="minutes of DAG building: set "
                    "AU_TRANSFER_FULL_PLAN=1 to plan the whole BP4D protocol")
def test_bp4d_three_fold_protocol_plans(tmp_path):
    """`snakemake --configfile config/bp4d_3fold.yaml --config data_root=...`: the whole protocol (41 subjects x 8
    tasks, three folds) plans."""
    _bp4d_plan(tmp_path, reduce=False)


def _write_config(path: Path, generic: dict, bp4d: dict) -> dict:
    cfg = {
        "data_root": str(generic["root"]),
        "data": {"corpus": "generic", "options": generic["options"], "aus": [6, 12],
                 "corpora": [{"corpus": "bp4d", "root": str(bp4d["root"]), "prefix": "bp4d-",
                              "options": bp4d["options"]}]},
        "splits": {
            "within": {"train": ["P01"], "val": [], "test": ["P02"]},
            "cross": {"train": ["P01", "P02"], "val": [], "test": ["bp4d-F001", "bp4d-M001"]},
        },
        "faces": {"landmarks": "dlib", "size": 112, "qc_samples": 4, "qc_tile": 64},
        "features": {"backbones": ["mtcnn_onet"], "regions": ["face"], "batch_size": 16, "num_workers": 0,
                     "threads": 1},
        "classifiers": {"regions": ["face"], "frame": ["svm"], "svm": {"C_grid": [1.0]}, "lstm": {"enabled": False}},
        "finetune": {"enabled": False},
        "report": {"corpus": "synthetic demo corpora (generic + BP4D layout)"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return cfg


@pytest.fixture(scope="module")
def corpora_run(tmp_path_factory) -> Path:
    from au_transfer.datasets.demo.layouts import make_corpus

    tmp = tmp_path_factory.mktemp("corpora")
    size = {"n_frames": 40, "width": 320, "height": 240}
    generic = make_corpus("generic", tmp / "generic", write={"kind": "intensity"}, **size)  # present: >= 2
    bp4d = make_corpus("bp4d", tmp / "bp4d", seed=11, **size)  # other faces than the generic corpus's
    work = tmp / "work"
    work.mkdir()
    _write_config(work / "config.yaml", generic, bp4d)
    run_snakemake(work, configfile=work / "config.yaml")
    return work


def test_generic_and_cross_corpus_run_end_to_end(corpora_run):
    work = corpora_run
    labels = sorted(p.name for p in (work / "results" / "labels").glob("*.csv"))
    # one label table per recording: P02 has two sequences, each BP4D subject (prefixed) its tasks
    assert "P01.csv" in labels and {"P02.a.csv", "P02.b.csv"} <= set(labels)
    assert any(name.startswith("bp4d-F001.T") for name in labels), labels
    bp_csv = next((work / "results" / "labels").glob("bp4d-F001.T*.csv"))
    bp = pd.read_csv(bp_csv)
    assert {"frame", "source_frame", "AU6_c", "AU12_c"} <= set(bp.columns)
    # `frame` is the image's position in its folder (frame-number order), `source_frame` BP4D's own number; the coded
    # range does not start at the first image
    report = json.loads(bp_csv.with_suffix(".json").read_text())
    numbers = [n for n, _ in image_files(report["source"])]
    assert bp["frame"].min() > 1
    assert [numbers[f - 1] for f in bp["frame"]] == bp["source_frame"].tolist()
    summary = pd.read_csv(work / "results" / "metrics" / "summary.csv", dtype={"au": str})
    svm = summary[(summary["model"] == "mtcnn_onet-face-svm") & (summary["au"] == "mean")].set_index("split")
    assert set(svm.index) == {"within", "cross"}
    assert svm.loc["within", "train_corpus"] == "generic" and svm.loc["within", "test_corpus"] == "generic"
    assert svm.loc["cross", "train_corpus"] == "generic" and svm.loc["cross", "test_corpus"] == "bp4d (bp4d-)"
    # each side's definition of present: the generic corpus's intensities >= data.threshold, BP4D's occurrence codes
    assert svm.loc["within", "train_present"] == svm.loc["within", "test_present"] == "intensity >= 2 (B+)"
    assert svm.loc["cross", "train_present"] == "intensity >= 2 (B+)"
    assert svm.loc["cross", "test_present"] == "occurrence codes (A+)"
    assert summary["f1"].notna().all()
    # the cross split is scored on the BP4D recordings' coded frames only (unknown labels left out)
    preds = pd.read_csv(work / "results" / "predictions" / "cross" / "mtcnn_onet-face-svm.csv")
    test = preds[preds["set"] == "test"]
    assert set(test["subject"].str.split(".").str[0]) == {"bp4d-F001", "bp4d-M001"}
    n_known = 0
    for f in (work / "results" / "labels").glob("bp4d-*.csv"):
        t = pd.read_csv(f)
        n_known += int(t["AU6_c"].notna().sum())
    assert len(test[test["au"] == 6]) <= n_known
    table = pd.read_csv(work / "results" / "report" / "corpora.csv")
    cross_cols = [c for c in table.columns if "cross-corpus" in c]
    assert len(cross_cols) == 1 and cross_cols[0].startswith("cross: generic -> bp4d")
    assert "within: generic -> generic" in table.columns
    assert "cross-corpus" in (work / "results" / "report" / "report.html").read_text()
    index = (work / "results" / "report" / "index.md").read_text()
    assert ("**Warning**: split `cross` is cross-corpus: it trains on generic (present = intensity >= 2 (B+)) and "
            "tests on bp4d (bp4d-) (present = occurrence codes (A+)). The definitions of present differ") in index
    assert "Split `within` trains and tests on generic: present = intensity >= 2 (B+)." in index
