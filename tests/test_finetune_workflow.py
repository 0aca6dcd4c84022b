"""The finetune rules in Snakemake: the per-AU head on synthetic face stores (isolated from the other stages with
--allowed-rules), and the multilabel head in the shared finished tiny workflow run (tests/config_test.yaml)."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TEST_CONFIG, plan, run_snakemake

from au_transfer import AU_REGION
from au_transfer.faces.store import FaceStoreWriter
from au_transfer.features import read_features
from au_transfer.finetune import load_bundle
from au_transfer.layout import Layout

pytestmark = pytest.mark.workflow

# Paper Table VI, written out: the crop each AU's au_region model must see.
TABLE_VI = {1: "upper", 2: "upper", 4: "upper", 5: "upper", 6: "upper", 9: "middle", 12: "lower", 15: "lower",
            17: "lower", 20: "lower", 25: "lower", 26: "lower"}


def test_table_vi_constant():
    """Paper Table VI for DISFA's AUs (AU_REGION adds BP4D's other AUs beyond the paper)."""
    assert {au: AU_REGION[au] for au in TABLE_VI} == TABLE_VI


# ------------------------------------------------------------------------------------- isolated per-AU run
SUBJECTS = ["SN001", "SN002", "SN003", "SN004"]
AUS = [1, 12]
S = 48


def _write_subject(wd, subject, n, seed):
    rng = np.random.default_rng(seed)
    inten = {a: rng.integers(0, 6, n) for a in AUS}
    boxes = np.array([[0, 0, S, S / 2], [0, S / 4, S, S / 2], [0, S / 2, S, S]], np.float32)
    path = wd / f"results/faces/{subject}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FaceStoreWriter(path, n, S, subject=subject) as w:
        for k in range(n):
            img = rng.integers(0, 80, (S, S, 3)).astype(np.uint8)
            img[: S // 2] += np.uint8(120 * (inten[1][k] >= 2))
            img[S // 2:] += np.uint8(120 * (inten[12][k] >= 2))
            w.put(k, k + 1, img, np.zeros((68, 2), np.float32), boxes, np.zeros((2, 3), np.float32), k != 2,
                  0 if k != 2 else 1)
    (wd / "results/labels").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"frame": np.arange(1, n + 1), **{f"AU{a}": inten[a] for a in AUS}}).to_csv(
        wd / f"results/labels/{subject}.csv", index=False)


@pytest.fixture(scope="module")
def per_au_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("ft_wf")
    for i, s in enumerate(SUBJECTS):
        _write_subject(wd, s, 24, seed=i)
    cfg = {
        "data_root": "no_corpus_needed",
        "data": {"aus": AUS},
        "splits": {"s": {"train": SUBJECTS[:2], "val": SUBJECTS[2:3], "test": SUBJECTS[3:]}},
        "finetune": {"backbones": ["dlib_resnet"], "regions": ["au_region"], "head": "per_au", "epochs": 2,
                     "batch_size": 8, "max_train_frames": 16, "optimizer": "adam", "lr": 0.001, "num_workers": 0,
                     "threads": 1, "device": "cpu", "reinit": "fc6_fc7", "freeze": 3},
    }
    path = wd / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    targets = [f"results/finetune/s/dlib_resnet-au_region/AU{a}.pt" for a in AUS]
    targets += [f"results/ft_features/s/dlib_resnet_ft/au_region/AU{a}" for a in AUS]  # one folder per network
    run_snakemake(wd, "--allowed-rules", "finetune", "ft_features", "--printshellcmds", *targets, configfile=path)
    return wd


def test_per_au_networks_see_their_table_vi_region(per_au_run):
    for au in AUS:
        b = load_bundle(per_au_run / f"results/finetune/s/dlib_resnet-au_region/AU{au}.pt")
        assert b["aus"] == [au] and b["au"] == au and b["crop_region"] == TABLE_VI[au]
        assert b["backbone"] == "dlib_resnet" and b["input_size"] == 150 and b["head"] == "per_au"
        assert b["config"]["reinit"] == "fc6_fc7" and b["config"]["freeze"] == 3 and b["reinitialised"] == ["fc.0"]
        assert b["subjects"] == {"train": SUBJECTS[:2], "val": SUBJECTS[2:3], "test": SUBJECTS[3:]}
        pred = pd.read_csv(per_au_run / f"results/predictions/s/dlib_resnet_ft-au_region-softmax/AU{au}.csv")
        assert list(pred.columns) == ["subject", "frame", "au", "set", "score", "pred", "label", "face"]
        faceless = pred[pred["face"] == 0]  # labelled test frames without a face: predicted absent
        assert (faceless["set"] == "test").all() and (faceless["pred"] == 0).all()
        pred = pred[pred["face"] == 1]
        assert set(pred["subject"]) == {"SN003", "SN004"} and 3 not in set(pred["frame"])
        assert len(pred) == 2 * 23 and pred["score"].between(0, 1).all()
    assert not list((per_au_run / "results/finetune").rglob("*.ckpt"))


def test_frozen_stages_kept_pretrained_weights(per_au_run):
    from au_transfer.backbones import create_backbone

    pre = create_backbone("dlib_resnet").state_dict()
    post = load_bundle(per_au_run / "results/finetune/s/dlib_resnet-au_region/AU12.pt")["state_dict"]
    first = [k for k in pre if k.startswith(("body.0.", "body.1.", "body.2."))]
    later = [k for k in pre if k.startswith(("body.4.", "body.5.")) and pre[k].is_floating_point()]
    assert first and all(torch.equal(pre[k], post[f"backbone.{k}"]) for k in first)
    assert any(not torch.equal(pre[k], post[f"backbone.{k}"]) for k in later)  # fine-tuned stages moved


def test_per_au_ft_features(per_au_run):
    for au in AUS:
        sha = load_bundle(per_au_run / f"results/finetune/s/dlib_resnet-au_region/AU{au}.pt")["weights_sha256"]
        for s in SUBJECTS:
            frames, X, valid, attrs = read_features(per_au_run / f"results/ft_features/s/dlib_resnet_ft/au_region/AU{au}/{s}.h5")
            assert attrs["backbone"] == "dlib_resnet_ft" and attrs["region"] == TABLE_VI[au]
            assert attrs["weights_sha256"] == sha and X.shape == (24, 128) and not valid[2]
            assert np.isfinite(X[valid]).all()


# ---------------------------------------------------------------------------- the shared finished workflow
@pytest.mark.xdist_group("workflow")
def test_finetuned_models_flow_into_metrics(finished_workflow):
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    ft = cfg["finetune"]
    split = next(iter(cfg["splits"]))
    aus = cfg["data"]["aus"]
    wd = finished_workflow
    summary = pd.read_csv(wd / "results/metrics/summary.csv", dtype={"au": str})
    for backbone in ft["backbones"]:
        for region in ft["regions"]:
            model = f"{backbone}_ft-{region}-softmax"
            pred = pd.read_csv(wd / f"results/predictions/{split}/{model}.csv")
            assert sorted(pred["au"].unique()) == sorted(aus)
            assert set(pred["set"]) == {"val", "test"}
            assert set(pred.loc[pred["set"] == "test", "subject"]) == set(cfg["splits"][split]["test"])
            assert (wd / f"results/metrics/{split}/{model}.csv").exists()
            assert set(summary.loc[summary["model"] == model, "au"]) >= {str(a) for a in aus}
            for au in aus:
                b = load_bundle(wd / f"results/finetune/{split}/{backbone}-{region}/AU{au}.pt")
                crop = TABLE_VI[au] if region == "au_region" else region
                assert b["crop_region"] == crop and b["au"] == au and b["aus"][b["au_index"]] == au
                assert b["head"] == ft["head"]
                if ft.get("extract_features", True):
                    unit = Layout.ft_unit(ft["head"], au, crop)  # the network that serves the AU
                    for s in cfg["splits"][split]["train"] + cfg["splits"][split]["test"]:
                        path = wd / Layout().ft_features(split, backbone, region, unit, s)
                        with h5py.File(path) as h5:
                            assert h5.attrs["backbone"] == f"{backbone}_ft" and h5.attrs["region"] == crop
                            assert h5.attrs["weights_sha256"] == b["weights_sha256"]


def test_training_jobs_are_scheduled_first(tmp_path):
    """The fine-tuning jobs and their features head the workflow's longest chain: priority 1, so that Snakemake
    starts them as soon as their inputs exist instead of leaving them for the end (the other rules keep 0)."""
    jobs, _ = plan(tmp_path)
    priority: dict[str, set[int]] = {}
    for job in jobs:
        priority.setdefault(job.rule, set()).add(job.priority)
    assert priority.get("finetune_multilabel") == {1} and priority.get("ft_features") == {1}, priority
    assert priority["fit_frame"] == {0} and priority["features"] == {0}, priority
