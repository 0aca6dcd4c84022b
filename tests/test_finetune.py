"""Unit tests of au_transfer.finetune on a tiny stand-in backbone and face stores written in the test."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from au_transfer import finetune as ft
from au_transfer.backbones import Backbone, BackboneSpec, preprocess
from au_transfer.faces.store import FaceStore, FaceStoreWriter

torch.set_num_threads(1)
SIZE = 32  # aligned face size in the test stores
INPUT = 16  # input size of the tiny backbone
AUS = [1, 2, 9, 12]


# ------------------------------------------------------------------------------------------------ stand-ins
def create_tiny(name: str, weights: str = "pretrained", seed: int = 0, key_map=None) -> Backbone:
    """A registry-style Backbone on a tiny network: body -> fc (fc6+ReLU) -> tail (drop, fc7, relu, drop, fc7b,
    relu, fc8). 'pretrained' weights are fixed (seed 123), whatever the global RNG state."""
    spec = BackboneSpec(name="tiny", family="test", layer="fc6", feature_dim=12, input_size=INPUT,
                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123 if weights == "pretrained" else 999 + seed)
        body = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, 2, 1), nn.ReLU(), nn.Flatten())
        fc = nn.Sequential(nn.Linear(64, 12), nn.ReLU())
        tail = nn.Sequential(nn.Dropout(0.2), nn.Linear(12, 10), nn.ReLU(), nn.Dropout(0.2), nn.Linear(10, 10),
                             nn.ReLU(), nn.Linear(10, 7))
    sha = f"tiny-{weights}" if weights == "pretrained" else f"random:seed={seed}"
    return Backbone(spec, body, fc, tail, weights=weights, weights_sha256=sha)


# Region boxes of the synthetic aligned faces (x0, y0, x1, y1) in upper, middle, lower order.
BOXES = {"upper": (0, 0, SIZE, SIZE // 2), "middle": (0, SIZE // 4, SIZE, SIZE // 2),
         "lower": (0, SIZE // 2, SIZE, SIZE)}


class SpyStore(FaceStore):
    """The real FaceStore, recording the regions it is asked to crop."""

    calls: list[str] = []

    def crops(self, idx, region, out_size):
        SpyStore.calls.append(region)
        return super().crops(idx, region, out_size)


def write_subject(root: Path, subject: str, n: int, seed: int) -> tuple[Path, Path]:
    """A face store (FaceStoreWriter, DESIGN layout) and label table: AU1 brightens the upper half, AU9 the
    middle, AU12 the lower half; row 3 is an invalid frame."""
    rng = np.random.default_rng(seed)
    inten = {a: rng.integers(0, 6, n) for a in AUS}
    images = rng.integers(0, 60, (n, SIZE, SIZE, 3)).astype(np.uint8)
    for a, region in ((1, "upper"), (9, "middle"), (12, "lower")):
        x0, y0, x1, y1 = BOXES[region]
        images[inten[a] >= 2, y0:y1, x0:x1] += 150
    boxes = np.array([BOXES[r] for r in ("upper", "middle", "lower")], np.float32)
    faces = root / "faces" / f"{subject}.h5"
    faces.parent.mkdir(parents=True, exist_ok=True)
    with FaceStoreWriter(faces, n, SIZE, subject=subject) as w:
        for k in range(n):
            w.put(k, k + 1, images[k], np.zeros((68, 2), np.float32), boxes, np.zeros((2, 3), np.float32),
                  k != 3, 0 if k != 3 else 1)
    labels = root / "labels" / f"{subject}.csv"
    labels.parent.mkdir(parents=True, exist_ok=True)
    au4 = rng.integers(0, 6, n) if subject == "SN004" else np.zeros(n, int)  # AU4: present in test only
    pd.DataFrame({"frame": np.arange(1, n + 1), **{f"AU{a}": inten[a] for a in AUS}, "AU4": au4}).to_csv(
        labels, index=False)
    return faces, labels


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ft_corpus")
    faces, labels = {}, {}
    for i, s in enumerate(["SN001", "SN002", "SN003", "SN004"]):
        faces[s], labels[s] = write_subject(root, s, 48, seed=i)
    return {"faces": faces, "labels": labels, "root": root}


CFG = dict(epochs=3, batch_size=16, lr=0.01, patience=10, seed=3, optimizer="adam", amp="none", head="per_au",
           augment={"enabled": True, "shift": 0.1, "flip": True})


def run(corpus, out: Path, *, aus=(1,), region="face", cfg=None, ckpt=None, weights="pretrained",
        **kw) -> ft.TrainResult:
    return ft.run_finetune(
        face_paths=corpus["faces"], label_paths=corpus["labels"], train_subjects=["SN001", "SN002"],
        val_subjects=["SN003"], test_subjects=["SN004"], backbone="tiny", weights=weights, region=region,
        aus=list(aus), threshold=2, cfg={**CFG, **(cfg or {})}, out_model=out / "net.pt",
        out_predictions=out / "pred.csv", ckpt_path=ckpt, device="cpu", split="t", create=create_tiny, **kw)


# -------------------------------------------------------------------------------------------------- model
def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("reinit", ["all", "fc6_fc7", "none"])
def test_reinit_changes_exactly_the_chosen_layers(reinit):
    pre = _params(create_tiny("tiny"))
    net = ft.FinetuneNet(create_tiny("tiny"), n_aus=1)
    names = ft.reinit_layers(net, reinit, seed=5)
    post = _params(net.backbone)
    changed = {k.rsplit(".", 1)[0] for k in pre if k in post and not torch.equal(pre[k], post[k])}
    expected = {"all": {"fc.0", "tail.1", "tail.4"}, "fc6_fc7": {"fc.0", "tail.1"}, "none": set()}[reinit]
    assert changed == expected | {"tail.6"}  # tail.6: the new two-way classifier, always fresh
    assert names == sorted(expected, key=["fc.0", "tail.1", "tail.4"].index)
    for k in ("body.0.weight", "body.2.weight", "body.2.bias"):  # convolutional weights are kept
        assert torch.equal(pre[k], post[k])
    assert net.classifier.out_features == 2 and net(torch.zeros(2, 3, INPUT, INPUT)).shape == (2, 1, 2)
    probs = torch.softmax(net.eval()(torch.randn(4, 3, INPUT, INPUT)), -1)  # a zero classifier: p = 0.5 at start
    assert torch.allclose(probs, torch.full_like(probs, 0.5))
    # seeded: the same seed gives the same re-initialisation
    again = ft.FinetuneNet(create_tiny("tiny"), n_aus=1)
    ft.reinit_layers(again, reinit, seed=5)
    assert all(torch.equal(v, _params(again.backbone)[k]) for k, v in post.items())


def test_backbone_without_linear_tail_gets_a_new_classifier():
    backbone = create_tiny("tiny")
    backbone.tail = nn.Sequential()
    net = ft.FinetuneNet(backbone, n_aus=3)
    assert net.classifier.in_features == 12 and net.classifier.out_features == 6
    assert net(torch.zeros(4, 3, INPUT, INPUT)).shape == (4, 3, 2)


@pytest.mark.parametrize("freeze,frozen_keys", [("body", ["body.0", "body.2"]), (1, ["body.0"]), ("none", [])])
def test_freeze_keeps_frozen_layers_unchanged(freeze, frozen_keys):
    net = ft.FinetuneNet(create_tiny("tiny"), n_aus=1)
    frozen = ft.freeze_layers(net, freeze)
    before = _params(net.backbone.body)
    cfg = ft.FinetuneConfig(lr=0.5, optimizer="sgd", freeze=freeze)
    opt = ft._make_optimizer(net, cfg)
    ft._set_train_mode(net, frozen)
    loss = net(torch.randn(8, 3, INPUT, INPUT)).sum()
    loss.backward()
    opt.step()
    after = _params(net.backbone.body)
    for key in ("0", "2"):
        same = torch.equal(before[f"{key}.weight"], after[f"{key}.weight"])
        assert same == (f"body.{key}" in frozen_keys)
    with pytest.raises(ft.FinetuneError, match="finetune.freeze"):
        ft.freeze_layers(ft.FinetuneNet(create_tiny("tiny"), 1), 99)


def test_config_errors_name_the_key():
    with pytest.raises(ft.FinetuneError, match="finetune.reinit"):
        ft.FinetuneConfig(reinit="fc8")
    with pytest.raises(ft.FinetuneError, match="finetune.head"):
        ft.FinetuneConfig.from_mapping({"head": "both", "enabled": True})


# --------------------------------------------------------------------------------------------------- data
def test_balance_keeps_all_positives_and_as_many_negatives():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"subject": "SN001", "row": np.arange(200), "frame": np.arange(1, 201),
                          "AU1": (rng.random(200) < 0.2).astype(int), "AU2": (rng.random(200) < 0.1).astype(int)})
    b = ft.balance(table, [1], seed=1)
    assert b["AU1"].sum() == table["AU1"].sum() == (b["AU1"] == 0).sum()
    assert ft.balance(table, [1], seed=1).equals(b)
    assert not ft.balance(table, [1], seed=2).equals(b)
    multi = ft.balance(table, [1, 2], seed=1)  # union of each AU's balanced subset
    for a in (1, 2):
        assert multi[f"AU{a}"].sum() == table[f"AU{a}"].sum() <= (multi[f"AU{a}"] == 0).sum()
    assert len(multi) <= 2 * (table["AU1"].sum() + table["AU2"].sum()) and not multi["frame"].duplicated().any()


def test_frame_table_uses_valid_labelled_frames(corpus):
    t = ft.frame_table(corpus["faces"], corpus["labels"], ["SN001"], AUS, 2)
    raw = pd.read_csv(corpus["labels"]["SN001"])
    assert 4 not in t["frame"].to_numpy() and len(t) == len(raw) - 1
    merged = t.merge(raw, on="frame", suffixes=("", "_raw"))
    for a in AUS:
        assert ((merged[f"AU{a}_raw"] >= 2).astype(int) == merged[f"AU{a}"]).all()


def test_bad_label_table_names_file_and_frame(tmp_path):
    p = tmp_path / "SN009.csv"
    pd.DataFrame({"frame": [1, 2, 3], "AU1": [0, 7, 1]}).to_csv(p, index=False)
    with pytest.raises(ft.FinetuneError, match=r"SN009\.csv, frame 2: AU1 intensity '7'.*\(line 3\)"):
        ft.read_label_table(p, [1], 2)
    with pytest.raises(ft.FinetuneError, match=r"SN009\.csv: missing column\(s\) \['AU12'\]"):
        ft.read_label_table(p, [1, 12], 2)


def test_augment_is_seeded_and_shape_preserving():
    x = torch.randn(6, 3, 8, 8)
    a = ft.augment_batch(x, torch.Generator().manual_seed(1), 0.25, True)
    b = ft.augment_batch(x, torch.Generator().manual_seed(1), 0.25, True)
    c = ft.augment_batch(x, torch.Generator().manual_seed(2), 0.25, True)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


# -------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("norm", ["none", "standardize"])
def test_finetune_learns_and_writes_predictions_and_bundle(corpus, tmp_path, norm):
    res = run(corpus, tmp_path, aus=(12,), region="au_region", cfg={"epochs": 6, "classifier_norm": norm})
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ft.PRED_COLUMNS
    assert set(pred["set"]) == {"val", "test"}
    assert set(pred.loc[pred["set"] == "val", "subject"]) == {"SN003"}
    assert set(pred.loc[pred["set"] == "test", "subject"]) == {"SN004"}
    assert (pred["au"] == 12).all() and 4 not in pred.loc[pred["set"] == "val", "frame"].to_numpy()
    # the test set is never balanced: every labelled frame is predicted; the invalid one (frame 4) as absent
    raw = pd.read_csv(corpus["labels"]["SN004"])
    test = pred[pred["set"] == "test"].merge(raw, on="frame")
    assert len(test) == len(raw) and ((test["AU12"] >= 2).astype(int) == test["label"]).all()
    faceless = test[test["face"] == 0]
    assert faceless["frame"].tolist() == [4] and faceless["pred"].tolist() == [0] and faceless["score"].isna().all()
    test = test[test["face"] == 1]
    assert ((pred["score"] >= 0.5).astype(int) == pred["pred"]).all()
    # AU12 brightens the lower half: a working fine-tuning separates it on the unseen test subject
    assert ft.f1_binary(test["label"].to_numpy(), test["pred"].to_numpy()) > 0.8, res.history
    bundle = ft.load_bundle(tmp_path / "net.pt")
    assert bundle["backbone"] == "tiny" and bundle["region"] == "au_region" and bundle["crop_region"] == "lower"
    assert bundle["input_size"] == INPUT and bundle["seed"] == CFG["seed"] and bundle["config"]["lr"] == CFG["lr"]
    assert bundle["model"] == "tiny_ft-au_region-softmax" and len(bundle["history"]) >= 1
    assert bundle["classifier_norm"] == norm
    loaded = ft.load_finetuned(tmp_path / "net.pt", create=create_tiny)[0].backbone.tail
    assert any(isinstance(m, ft.Standardize) for m in loaded) == (norm == "standardize")
    if norm == "standardize":  # statistics fitted on the training frames and saved with the network
        assert not torch.equal(loaded[-2].std, torch.ones_like(loaded[-2].std))
        assert torch.equal(loaded[-2].mean, bundle["state_dict"][f"backbone.tail.{len(loaded) - 2}.mean"])
    # the predictor API reproduces the written scores
    clf = ft.FinetunedClassifier(tmp_path / "net.pt", create=create_tiny)
    with FaceStore(corpus["faces"]["SN004"]) as store:
        rows = np.flatnonzero(store.valid)
        images = store.crops(rows, "lower", INPUT)
    scores = clf.decision_function(images)
    np.testing.assert_allclose(scores, test.sort_values("frame")["score"].to_numpy(), atol=1e-5)
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("au,crop", [(1, "upper"), (9, "middle"), (12, "lower")])
def test_au_region_crop_matches_table_vi(corpus, tmp_path, au, crop):
    SpyStore.calls = []  # recorded in this process: crops are read in-process (num_workers 0, not the default 2)
    run(corpus, tmp_path, aus=(au,), region="au_region", cfg={"epochs": 1, "num_workers": 0}, open_store=SpyStore)
    assert set(SpyStore.calls) == {crop}
    assert ft.load_bundle(tmp_path / "net.pt")["crop_region"] == crop
    SpyStore.calls = []
    run(corpus, tmp_path, aus=(au,), region="face", cfg={"epochs": 1, "num_workers": 0}, open_store=SpyStore)
    assert set(SpyStore.calls) == {"face"}


def test_backbone_options_reach_the_registry(corpus, tmp_path):
    run(corpus, tmp_path, cfg={"epochs": 1}, weights="random", backbone_kwargs={"seed": 5, "key_map": None})
    b = ft.load_bundle(tmp_path / "net.pt")
    assert b["weights"] == "random" and b["backbone_options"] == {"seed": 5}
    assert b["base_weights_sha256"] == "random:seed=5"


def test_crop_groups_follow_table_vi_and_config_override():
    groups = ft.crop_groups("au_region", [1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26])
    assert groups == {"upper": [1, 2, 4, 5, 6], "middle": [9], "lower": [12, 15, 17, 20, 25, 26]}
    assert ft.crop_groups("face", [1, 9, 12]) == {"face": [1, 9, 12]}
    assert ft.crop_groups("au_region", [1, 9], {"1": "face", "9": "middle"}) == {"face": [1], "middle": [9]}


def test_resume_after_kill_matches_uninterrupted_run(corpus, tmp_path, caplog):
    full = tmp_path / "full"
    run(corpus, full, ckpt=full / "ckpt")
    killed = tmp_path / "killed"
    ckpt = killed / "ckpt"

    def kill(epoch, stats):
        if epoch == 0:
            raise KeyboardInterrupt("simulated kill after the checkpoint of epoch 1")

    with pytest.raises(KeyboardInterrupt):
        run(corpus, killed, ckpt=ckpt, on_epoch_end=kill)
    assert ckpt.exists() and not (killed / "net.pt").exists()
    assert torch.load(ckpt, weights_only=True)["epoch"] == 0
    with caplog.at_level(logging.INFO, logger="au_transfer.finetune"):
        res = run(corpus, killed, ckpt=ckpt)
    assert res.start_epoch == 1 and "resuming from checkpoint" in caplog.text
    assert [h["epoch"] for h in res.history] == [0, 1, 2]
    a, b = ft.load_bundle(full / "net.pt"), ft.load_bundle(killed / "net.pt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert a["history"] == b["history"]
    assert not ckpt.exists()  # removed once the job succeeded


def test_checkpoint_of_other_settings_is_ignored(corpus, tmp_path):
    ckpt = tmp_path / "ckpt"

    def kill(epoch, stats):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(corpus, tmp_path, ckpt=ckpt, on_epoch_end=kill)
    res = run(corpus, tmp_path, ckpt=ckpt, cfg={"lr": 0.02})
    assert res.start_epoch == 0


def test_early_stopping_stops_and_keeps_best_epoch(corpus, tmp_path):
    res = run(corpus, tmp_path, cfg={"epochs": 8, "patience": 1, "lr": 0.0, "select": "loss"})
    # lr 0: the validation loss never improves after the first epoch
    assert res.stopped_early and len(res.history) == 2 and res.best_epoch == 0


def test_multilabel_head_and_unpack(corpus, tmp_path):
    run(corpus, tmp_path, aus=(1, 9, 12), region="face", cfg={"head": "multilabel", "epochs": 2})
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert sorted(pred["au"].unique()) == [1, 9, 12]
    ft.unpack_au(tmp_path / "net.pt", tmp_path / "pred.csv", 9, tmp_path / "AU9.pt", tmp_path / "AU9.csv")
    b = ft.load_bundle(tmp_path / "AU9.pt")
    assert b["au"] == 9 and b["au_index"] == 1 and b["aus"] == [1, 9, 12]
    au9 = pd.read_csv(tmp_path / "AU9.csv")
    assert (au9["au"] == 9).all() and len(au9) == (pred["au"] == 9).sum()
    with pytest.raises(ft.FinetuneError, match="AU4"):
        ft.unpack_au(tmp_path / "net.pt", tmp_path / "pred.csv", 4, tmp_path / "AU4.pt", tmp_path / "AU4.csv")
    with pytest.raises(ft.FinetuneError, match="different crops"):
        run(corpus, tmp_path, aus=(1, 12), region="au_region", cfg={"head": "multilabel", "epochs": 1})


def test_finetuned_features_use_the_feature_store_layout(corpus, tmp_path):
    from au_transfer.features import read_features

    run(corpus, tmp_path, aus=(1, 2), region="au_region", cfg={"head": "multilabel", "epochs": 2})
    subjects = ["SN003", "SN004"]
    outs = [tmp_path / f"AU{a}" / f"{s}.h5" for a in (1, 2) for s in subjects]
    ft.extract_ft_features_many(tmp_path / "net.pt", corpus["faces"], outs, subjects=subjects, aus=[1, 2],
                                batch_size=8, num_workers=0, device="cpu", create=create_tiny)
    bundle = ft.load_bundle(tmp_path / "net.pt")
    net, _ = ft.load_finetuned(tmp_path / "net.pt", create=create_tiny)
    pretrained = create_tiny("tiny")
    for i, s in enumerate(subjects):
        frames, X, valid, attrs = read_features(outs[i])
        assert attrs["backbone"] == "tiny_ft" and attrs["region"] == "upper" and X.shape[1] == 12
        assert attrs["weights_sha256"] == bundle["weights_sha256"] == ft.state_sha256(bundle["state_dict"])
        with FaceStore(corpus["faces"][s]) as store:
            rows = np.flatnonzero(store.valid)
            x = preprocess(net.backbone.spec, store.crops(rows, "upper", INPUT), "cpu")
        with torch.no_grad():
            expect, before = net.features(x).numpy(), pretrained.features(x).numpy()
        np.testing.assert_allclose(X[valid], expect, rtol=1e-2, atol=1e-2)
        assert np.abs(expect - before).max() > 0.05  # fine-tuning changed the fc6 features
        frames2, X2, _, _ = read_features(outs[len(subjects) + i])  # the second AU's copy
        assert np.array_equal(X2, X, equal_nan=True) and np.array_equal(frames2, frames)
    with pytest.raises(ft.FinetuneError, match="output files"):
        ft.extract_ft_features_many(tmp_path / "net.pt", corpus["faces"], outs[:3], subjects=subjects, aus=[1, 2],
                                    create=create_tiny)


def test_dataloader_workers_give_the_same_batches(corpus):
    """Face stores opened lazily in DataLoader worker processes read the same crops as in-process reads."""
    table = ft.frame_table(corpus["faces"], corpus["labels"], ["SN001", "SN002"], [1], 2)
    ds = ft.FaceCropDataset(table, corpus["faces"], "upper", INPUT, [1])
    order = np.random.default_rng(0).permutation(len(ds)).tolist()
    inproc = list(ft._loader(ds, 7, order, num_workers=0))
    workers = list(ft._loader(ds, 7, order, num_workers=2))
    assert len(inproc) == len(workers) == -(-len(ds) // 7)
    for (xa, ya), (xb, yb) in zip(inproc, workers, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first = order[:7]
    assert torch.equal(inproc[0][1][:, 0], torch.as_tensor(table["AU1"].to_numpy()[first]))
    ds.close()


def test_au_without_training_positives_is_skipped(corpus, tmp_path):
    run(corpus, tmp_path, aus=(4,), cfg={"epochs": 1})
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert pred["score"].isna().all() and (pred["pred"] == 0).all() and pred["label"].sum() > 0
    b = ft.load_bundle(tmp_path / "net.pt")
    assert b["status"] == "skipped" and "0 positive" in b["reason"] and b["history"] == []
    clf = ft.FinetunedClassifier(tmp_path / "net.pt", create=create_tiny)
    images = np.zeros((3, INPUT, INPUT, 3), np.uint8)
    assert np.isnan(clf.decision_function(images)).all() and (clf.predict(images) == 0).all()
    # multilabel: the other AU of the network trains, the skipped one keeps empty scores
    run(corpus, tmp_path, aus=(1, 4), cfg={"epochs": 1, "head": "multilabel"})
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert pred.loc[pred["au"] == 4, "score"].isna().all()
    assert pred.loc[(pred["au"] == 1) & (pred["face"] == 1), "score"].notna().all()  # no face: predicted absent
    ft.unpack_au(tmp_path / "net.pt", tmp_path / "pred.csv", 4, tmp_path / "AU4.pt", tmp_path / "AU4.csv")
    ft.unpack_au(tmp_path / "net.pt", tmp_path / "pred.csv", 1, tmp_path / "AU1.pt", tmp_path / "AU1.csv")
    assert ft.load_bundle(tmp_path / "AU4.pt")["status"] == "skipped"
    assert ft.load_bundle(tmp_path / "AU1.pt")["status"] == "ok"


# ------------------------------------------------------------------------------------- unknown labels (BP4D 9s)
@pytest.fixture(scope="module")
def corpus_unknown(corpus, tmp_path_factory) -> dict:
    """The corpus with AU9's label unknown (an empty cell) on every 4th frame of every subject."""
    root = tmp_path_factory.mktemp("ft_unknown")
    labels = {}
    for s, path in corpus["labels"].items():
        t = pd.read_csv(path)
        t["AU9"] = t["AU9"].astype(float).where(t["frame"] % 4 != 0)
        labels[s] = root / f"{s}.csv"
        t.to_csv(labels[s], index=False)
    return {**corpus, "labels": labels}


def test_masked_loss_ignores_unknown_labels():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 2, 2, generator=gen, requires_grad=True)
    y = torch.tensor([[1, 0], [0, -1], [1, 1], [0, -1], [1, 0], [0, 1]])
    weight = torch.tensor([[0.6, 1.4], [1.2, 0.8]])
    for w in (None, weight):
        loss = ft.masked_loss(logits, y, w)
        loss.backward()
        # an unknown label gets no gradient, and its logits do not change the loss
        assert torch.all(logits.grad[[1, 3], 1] == 0) and torch.any(logits.grad[[1, 3], 0] != 0)
        other = logits.detach().clone()
        other[[1, 3], 1] += 5.0
        assert torch.equal(ft.masked_loss(other, y, w), loss.detach())
        logits.grad = None
    # each AU's own known frames: AU1 on all six, AU2 on four
    known = [nn.functional.cross_entropy(logits[:, 0], y[:, 0], weight=weight[0]),
             nn.functional.cross_entropy(logits[[0, 2, 4, 5], 1], y[[0, 2, 4, 5], 1], weight=weight[1])]
    torch.testing.assert_close(ft.masked_loss(logits, y, weight), torch.stack(known).mean())
    full = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]])  # no unknown: the plain losses
    torch.testing.assert_close(ft.masked_loss(logits, full), nn.functional.cross_entropy(logits.reshape(-1, 2),
                                                                                        full.reshape(-1)))


def test_frame_table_keeps_frames_with_some_known_label(corpus_unknown):
    both = ft.frame_table(corpus_unknown["faces"], corpus_unknown["labels"], ["SN001"], [1, 9], 2)
    au9 = ft.frame_table(corpus_unknown["faces"], corpus_unknown["labels"], ["SN001"], [9], 2)
    au1 = ft.frame_table(corpus_unknown["faces"], corpus_unknown["labels"], ["SN001"], [1], 2)
    assert both["frame"].tolist() == au1["frame"].tolist()  # AU1 known everywhere: no frame dropped for AU9
    assert (both.loc[both["frame"] % 4 == 0, "AU9"] == -1).all() and (both.loc[both["frame"] % 4 != 0, "AU9"] >= 0).all()
    assert au9["frame"].tolist() == [f for f in au1["frame"] if f % 4 != 0]


def test_multilabel_scores_each_au_on_its_per_au_frames(corpus_unknown, tmp_path):
    """A multilabel network trains each AU on its known labels (masked loss) and tests each AU on the frames its
    per-AU network is tested on: a frame whose AU9 is unknown still counts for AU1."""
    def frames(pred: pd.DataFrame, au: int) -> list[tuple[str, str, int]]:
        p = pred[pred["au"] == au]
        return sorted(zip(p["set"], p["subject"], p["frame"], strict=True))

    multi = {}
    for name, aus, head in (("multi", (1, 9), "multilabel"), ("au1", (1,), "per_au"), ("au9", (9,), "per_au")):
        out = tmp_path / name
        out.mkdir()
        res = run(corpus_unknown, out, aus=aus, cfg={"epochs": 1, "head": head})
        assert np.isfinite(res.history[0]["train_loss"]) and np.isfinite(res.history[0]["val_loss"])
        multi[name] = pd.read_csv(out / "pred.csv")
    assert frames(multi["multi"], 1) == frames(multi["au1"], 1)
    assert frames(multi["multi"], 9) == frames(multi["au9"], 9)
    assert len(frames(multi["multi"], 9)) < len(frames(multi["multi"], 1))
    assert set(multi["multi"]["label"]) <= {0, 1}
    counts = ft.load_bundle(tmp_path / "multi" / "net.pt")["counts"]["train_balanced"]
    assert counts["AU9"] >= 0 and counts["AU1"] > 0
