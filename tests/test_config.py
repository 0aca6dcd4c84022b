"""Config validation: schemas with defaults, errors that name the key, subject-exclusive splits."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from au_transfer import AU_REGION, DISFA_AUS
from au_transfer.config import (
    DISFA_SUBJECTS,
    ConfigError,
    check_splits,
    model_id,
    parse_model_id,
    region_for,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "src" / "au_transfer" / "schemas"
CONFIGS = [ROOT / "config.yaml", ROOT / "config" / "disfa_paper.yaml", ROOT / "config" / "disfa_3fold.yaml",
           ROOT / "tests" / "config_test.yaml"]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_ready_configs_validate(path):
    cfg = validate_config(load(path), str(SCHEMAS))
    # defaults were filled in for every section
    assert cfg["data"]["threshold"] == 2
    assert set(cfg["regions"]["au_region"]) == {str(a) for a in AU_REGION}  # Table VI + BP4D's other AUs
    assert {str(a) for a in DISFA_AUS} <= set(cfg["regions"]["au_region"])
    for split in check_splits(cfg["splits"]).values():
        assert set(split.all) <= set(DISFA_SUBJECTS)


def test_defaults_are_filled():
    cfg = {"data_root": "x", "splits": {"s": {"train": ["SN001"], "val": [], "test": ["SN002"]}}}
    validate_config(cfg, str(SCHEMAS))
    assert cfg["data"]["camera"] == "left"
    assert cfg["data"]["aus"] == list(DISFA_AUS)
    assert cfg["data"]["demo"]["enabled"] is False
    assert {int(k): v for k, v in cfg["regions"]["au_region"].items()} == AU_REGION


def base_config() -> dict:
    return copy.deepcopy(load(ROOT / "config.yaml"))


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(bogus=1), "<top level>"),
        (lambda c: c["data"].update(camera="middle"), "data.camera"),
        (lambda c: c["data"].update(aus=[1, 0]), "data.aus.1"),
        (lambda c: c["data"].update(threshold=7), "data.threshold"),
        (lambda c: c["data"]["demo"].update(n_frames="many"), "data.demo.n_frames"),
        (lambda c: c["data"].update(unknown_key=True), "data"),
        (lambda c: c["regions"].update(au_region={"12": "mouth"}), "regions.au_region.12"),
    ],
)
def test_wrong_key_or_value_names_the_key(mutate, key):
    cfg = base_config()
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, str(SCHEMAS))
    assert f"config key '{key}'" in str(err.value)


def test_subject_in_two_sets_is_an_error():
    with pytest.raises(ConfigError, match=r"SN002 is in both train and test"):
        check_splits({"s": {"train": ["SN001", "SN002"], "val": [], "test": ["SN002"]}})


def test_subject_twice_in_one_set_is_an_error():
    with pytest.raises(ConfigError, match=r"SN001 is twice in train"):
        check_splits({"s": {"train": ["SN001", "SN001"], "val": [], "test": ["SN002"]}})


def test_split_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"splits\.s\.test is empty"):
        check_splits({"s": {"train": ["SN001"], "val": [], "test": []}})
    with pytest.raises(ConfigError, match=r"splits\.s\.train: 'S\.1'"):  # '.' separates subject and sequence
        check_splits({"s": {"train": ["S.1"], "val": [], "test": ["SN002"]}})
    with pytest.raises(ConfigError, match=r"splits\.s: unknown key"):
        check_splits({"s": {"train": ["SN001"], "test": ["SN002"], "dev": ["SN003"]}})


def test_corpus_checks_name_the_corpus_and_key():
    """AUs the corpus does not code and subjects it does not have stop the run before any job (plan)."""
    from au_transfer.plan import check_workflow

    cfg = validate_config(base_config(), str(SCHEMAS))
    cfg["data"]["aus"] = [1, 3]
    with pytest.raises(ConfigError, match=r"data\.aus .*AU\(s\) \[3\] are not coded in corpus disfa"):
        check_workflow(cfg)
    cfg = validate_config(base_config(), str(SCHEMAS))
    cfg["data"]["demo"]["enabled"] = False
    cfg["splits"] = {"s": {"train": ["SN001", "F001"], "val": [], "test": ["SN002"]}}
    with pytest.raises(ConfigError, match=r"\['F001'\] are not in corpus disfa"):
        check_workflow(cfg)
    cfg["data"]["corpus"] = "nope"
    with pytest.raises(ConfigError, match=r"data\.corpus: unknown corpus 'nope'"):
        check_workflow(cfg)
    cfg = validate_config(base_config(), str(SCHEMAS))
    cfg["data"]["corpus"] = "bp4d"
    with pytest.raises(ConfigError, match=r"data\.demo\.enabled"):
        check_workflow(cfg)


def test_overlapping_split_stops_validate_config():
    cfg = base_config()
    cfg["splits"]["demo"]["val"] = ["SN001"]
    with pytest.raises(ConfigError, match="subject-exclusive"):
        validate_config(cfg, str(SCHEMAS))


def test_paper_split_is_12_6_9_and_3fold_matches_the_protocol():
    paper = check_splits(load(ROOT / "config" / "disfa_paper.yaml")["splits"])["paper"]
    assert (len(paper.train), len(paper.val), len(paper.test)) == (12, 6, 9)
    assert sorted(paper.all) == sorted(DISFA_SUBJECTS)
    cfg = load(ROOT / "config" / "disfa_3fold.yaml")
    assert cfg["data"]["aus"] == [1, 2, 4, 6, 9, 12, 25, 26]
    folds = check_splits(cfg["splits"])
    parts = [set(folds[f"fold{i}"].test) for i in (1, 2, 3)]  # ME-GraphAU's numbering: fold1 tests part3
    assert parts[2] == set("SN002 SN010 SN001 SN026 SN027 SN032 SN030 SN009 SN016".split())
    assert parts[1] == set("SN013 SN018 SN011 SN028 SN012 SN006 SN031 SN021 SN024".split())
    assert parts[0] == set("SN003 SN029 SN023 SN025 SN008 SN005 SN007 SN017 SN004".split())
    for i, fold in enumerate(folds.values()):
        others = set().union(*(p for j, p in enumerate(parts) if j != i))
        assert set(fold.train) | set(fold.val) == others


def test_region_for_table_vi():
    assert region_for("au_region", 12) == "lower"
    assert region_for("au_region", 1) == "upper"
    assert region_for("au_region", 9) == "middle"
    assert region_for("face", 9) == "face"
    assert region_for("au_region", 12, {"12": "face"}) == "face"
    with pytest.raises(ConfigError):
        region_for("mouth", 12)


def test_model_ids_roundtrip():
    assert parse_model_id(model_id("dlib_resnet_ft", "au_region", "softmax")) == ("dlib_resnet_ft", "au_region", "softmax")
    with pytest.raises(ConfigError):
        parse_model_id("resnet152-nose-svm")


# --- checks that span sections (au_transfer.plan.check_workflow): run before any job and by validate-config
def _checked(change):
    import copy

    from au_transfer.plan import check_workflow

    cfg = validate_config(copy.deepcopy(load(ROOT / "tests" / "config_test.yaml")))
    change(cfg)
    check_workflow(cfg)
    return cfg


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_ready_configs_pass_the_cross_section_checks(path, tmp_path, monkeypatch):
    from au_transfer.plan import check_workflow

    cfg = validate_config(load(path))
    monkeypatch.chdir(tmp_path)  # the local weight files they name, relative to the working directory
    for opts in cfg["backbones"].values():
        if opts["weights"] not in ("pretrained", "random"):
            (tmp_path / opts["weights"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / opts["weights"]).write_bytes(b"")
    check_workflow(cfg)


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["ensembles"]["fe"]["members"].append("vgg_face-face-svm"),
     r"ensembles\.fe\.members.*backbone 'vgg_face', which is not configured.*features\.backbones"),
    (lambda c: c["ensembles"]["fe"]["members"].append("cnn_f_ft-face-softmax"),
     r"backbone 'cnn_f_ft', which is not configured.*finetune\.backbones"),
    (lambda c: c["ensembles"]["fe"]["members"].append("dlib_resnet-upper-svm"),
     r"ensembles\.fe: member 'dlib_resnet-upper-svm' is not a model that this configuration produces"),
    (lambda c: c["report"].update(split="paper"), r"report\.split.*'paper' is not a split"),
    (lambda c: c["report"]["paper_models"].update(fe_svm_vgg="dlib_resnet-face-svm"),
     r"report\.paper_models\.fe_svm_vgg.*not a result of the paper"),
    (lambda c: c["report"]["paper_models"].update(fe_svm_vggface="vgg_face-face-svm"),
     r"report\.paper_models\.fe_svm_vggface.*'vgg_face-face-svm' is not a model"),
    (lambda c: c["report"].update(paper_ensembles=["fe", "nope"]), r"report\.paper_ensembles.*nope"),
    (lambda c: c["data"]["demo"].update(subjects=["SN001", "SN002"]), r"'data\.demo\.subjects' does not generate"),
])
def test_cross_section_errors_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        _checked(change)


def test_report_split_may_be_a_fold_mean():
    def folds(c):
        c["splits"] = {f"fold{k}": {"train": [a], "val": [], "test": [b]}
                       for k, (a, b) in enumerate([("SN001", "SN002"), ("SN002", "SN003")], 1)}
        c["report"]["split"] = "2fold_mean"

    assert _checked(folds)["report"]["split"] == "2fold_mean"


@pytest.mark.parametrize("key", ["features.backbones", "finetune.backbones", "classifiers.lstm.backbones",
                                 "backbones"])
def test_unknown_backbone_names_stop_before_any_job(key):
    def change(cfg):
        section, _, sub = key.partition(".")
        if key == "backbones":
            cfg["backbones"]["resnet_152"] = {"weights": "pretrained"}
        elif sub == "lstm.backbones":
            cfg[section]["lstm"]["backbones"] = ["resnet_152"]
        else:
            cfg[section][sub] = [*cfg[section][sub], "resnet_152"]

    with pytest.raises(ConfigError, match=rf"config key '{key}': unknown backbone 'resnet_152'"):
        _checked(change)


def test_refit_train_val_with_ensembles_fitted_on_validation_is_refused():
    """classifiers.svm.refit: train_val refits the SVMs on the validation rows: an ensemble of one that fits its
    calibration (tie score), weights or stacking on those rows is refused before any job, naming the keys; a
    majority vote with a fixed tie rule (or no SVM member) passes, and its validation predictions count as in
    sample all the same (au_transfer.plan.validation_in_sample)."""
    from au_transfer.plan import validation_in_sample

    def train_val(c):
        c["classifiers"]["svm"]["refit"] = "train_val"

    with pytest.raises(ConfigError, match=r"config key 'classifiers\.svm\.refit' \(train_val\) with "
                                          r"'ensembles\.fe\.tie' \(score\): member\(s\) \['dlib_resnet-face-svm'\].*"
                                          r"fits its calibration"):
        _checked(train_val)

    def stacked_only(c):
        train_val(c)
        for name in ("fe", "fe_ft"):
            c["ensembles"][name]["tie"] = "absent"

    with pytest.raises(ConfigError, match=r"'ensembles\.stacked\.method' \(stacked\).*fits its stacking"):
        _checked(stacked_only)

    def fixed_ties(c):
        stacked_only(c)
        del c["ensembles"]["stacked"]

    cfg = _checked(fixed_ties)
    inside = validation_in_sample(cfg)
    assert inside["dlib_resnet-face-svm"].startswith("refitted on train + validation")
    assert "member(s) ['dlib_resnet-face-svm']" in inside["ens-fe"] and "dlib_resnet-face-lda" not in inside
    default = _checked(lambda c: None)  # refit: train: only the ensembles that fit on validation rows
    assert validation_in_sample(default) == {
        "ens-fe": "fits its calibration on the validation rows",
        "ens-fe_ft": "fits its calibration on the validation rows",
        "ens-stacked": "fits its stacking on the validation rows"}
