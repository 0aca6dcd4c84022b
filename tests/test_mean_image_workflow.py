"""A mean-image backbone (paper IV-A: VGG-Face subtracts the training set's mean image) in the workflow: every
consumer of its features reads the split's mean-image features, and the predictor reproduces the workflow."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from conftest import TEST_CONFIG, copy_workflow, predict_like_the_workflow, run_snakemake

from au_transfer.classifiers import load_model
from au_transfer.layout import Layout

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("workflow")]

BACKBONE = "mtcnn_onet"  # tiny (48 px) and offline: its weights ship with facenet-pytorch
MODELS = [f"{BACKBONE}-face-svm", f"{BACKBONE}-face-lstm"]


@pytest.fixture(scope="module")
def mean_image_run(finished_workflow, tmp_path_factory):
    """The tiny run's corpus, labels and faces, with a mean-image backbone as the only feature backbone."""
    wd = copy_workflow(finished_workflow, tmp_path_factory.mktemp("mean_image") / "wd")
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["backbones"] = {BACKBONE: {"mean_image": True}}
    cfg["features"] = dict(cfg["features"], backbones=[BACKBONE], regions=["face"])
    cfg["classifiers"] = dict(cfg["classifiers"], frame=["svm"], regions=["face"],
                              lstm=dict(cfg["classifiers"]["lstm"], backbones=[BACKBONE]))
    cfg["finetune"] = {"enabled": False}
    cfg["ensembles"] = {}
    cfg["report"] = {"paper_models": {}}
    path = wd / "config_mean_image.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_snakemake(wd, configfile=path)
    (split,) = cfg["splits"]
    return wd, cfg, split


def test_fits_read_the_split_mean_image_features(mean_image_run):
    wd, cfg, split = mean_image_run
    subjects = [s for part in cfg["splits"][split].values() for s in part]
    for s in subjects:
        assert (wd / f"results/split_features/{split}/{BACKBONE}/face/{s}.h5").is_file()
    assert not (wd / f"results/features/{BACKBONE}").exists(), "features without the mean image were made"
    mean_image = wd / f"results/mean_image/{split}/{BACKBONE}/face.npy"
    sha = hashlib.sha256(mean_image.read_bytes()).hexdigest()
    for model in MODELS:
        for au in cfg["data"]["aus"]:
            bundle = load_model(Layout.of(wd / "results").model_file(split, model, au))
            attrs = bundle["feature_attrs"]
            assert attrs.get("mean_image") == str(mean_image.relative_to(wd)), (model, au, attrs)
            assert attrs.get("mean_image_sha256") == sha, (model, au)


def test_predictor_reproduces_mean_image_models(mean_image_run, tmp_path):

    wd, cfg, split = mean_image_run
    subject = cfg["splits"][split]["test"][0]
    agree, corr = predict_like_the_workflow(wd, split, subject, MODELS[0], tmp_path / "pred.csv",
                                            data_root=cfg["data_root"])
    assert agree > 0.85, agree
    assert corr > 0.7, corr
