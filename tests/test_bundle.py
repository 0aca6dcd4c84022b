"""Model bundles that are safe to share (export-models, predict --models BUNDLE), legacy pickled results (refused
unless trusted, convert-models) and the predictor's bad-input probe cases (broken model files, unknown models)."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import joblib
import pandas as pd
import pytest
import torch
from test_predict import SPLIT, face_video, results  # noqa: F401  (fixtures)

from au_transfer.classifiers.frame import load_model
from au_transfer.cli import main
from au_transfer.layout import LEGACY_MODEL_EXT, Layout
from au_transfer.persist import TRUST_ENV, trust_legacy_pickles
from au_transfer.predict.bundle import BUNDLE_FILE, file_sha256, verify_bundle
from au_transfer.predict.manifest import PredictError

SVM = "dlib_resnet-face-svm"


@pytest.fixture(autouse=True)
def _untrusted(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    trust_legacy_pickles(False)
    yield
    trust_legacy_pickles(False)


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _predict(capsys, video, out: Path, *args: str) -> tuple[int, str]:
    rc = main(["predict", str(video), "-o", str(out), "-q", "--largest-face", "--front-end", "thread", *args])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


@pytest.fixture(scope="module")
def bundle(results, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("bundle") / "b"
    assert main(["export-models", str(results), "--split", SPLIT, "-o", str(out), "--model", "ens-pair"]) == 0
    return out


def _relist(root: Path) -> None:
    """What a malicious sender does: rewrite bundle.json so that every file's sha256 matches again."""
    meta = json.loads((root / BUNDLE_FILE).read_text())
    meta["files"] = [{"path": p.relative_to(root).as_posix(), "size": p.stat().st_size, "sha256": file_sha256(p)}
                     for p in sorted(root.rglob("*")) if p.is_file() and p.name != BUNDLE_FILE]
    (root / BUNDLE_FILE).write_text(json.dumps(meta))


def test_export_packs_what_the_predictor_needs_with_sha256(bundle, results):  # noqa: F811
    meta = json.loads((bundle / BUNDLE_FILE).read_text())
    paths = {e["path"] for e in meta["files"]}
    layout = Layout.of(".")
    want = {Layout.of("x").manifest(SPLIT)[2:], layout.ensemble_params(SPLIT, "ens-pair")[2:]}
    want |= {layout.model_file(SPLIT, m, au)[2:] for m in (SVM, "dlib_resnet-face-lda") for au in (1, 12)}
    assert paths == want, paths
    assert meta["default_model"] == "ens-pair" and meta["models"] == ["dlib_resnet-face-lda", SVM, "ens-pair"]
    for e in meta["files"]:
        assert e["sha256"] == file_sha256(results / e["path"])
    assert not any(p.suffix == ".csv" for p in bundle.rglob("*")), "a bundle carries no predictions or labels"
    verify_bundle(bundle)


def test_predict_with_a_bundle_folder_or_tar_gives_the_results_folder_rows(bundle, results, face_video, tmp_path,  # noqa: F811
                                                                           capsys):
    ref, out, out_tar = tmp_path / "ref.csv", tmp_path / "b.csv", tmp_path / "t.csv"
    assert _predict(capsys, face_video, ref, "--results", str(results), "--split", SPLIT, "--model", "ens-pair")[0] == 0
    rc, text = _predict(capsys, face_video, out, "--models", str(bundle))
    assert rc == 0 and "ens-pair" in text and "the bundle's default" in text, text
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(ref))
    tar = tmp_path / "b.tar"
    assert main(["export-models", str(results), "--split", SPLIT, "-o", str(tar), "--model", "ens-pair"]) == 0
    assert tarfile.is_tarfile(tar)
    assert _predict(capsys, face_video, out_tar, "--models", str(tar), "--model", SVM)[0] == 0
    ref_svm = tmp_path / "svm.csv"
    assert _predict(capsys, face_video, ref_svm, "--results", str(results), "--split", SPLIT, "--model", SVM)[0] == 0
    pd.testing.assert_frame_equal(pd.read_csv(out_tar), pd.read_csv(ref_svm))


@pytest.mark.parametrize("change", ["modified", "unlisted", "missing"])
def test_a_changed_bundle_is_refused_before_use(bundle, tmp_path, change):
    root = tmp_path / "b"
    shutil.copytree(bundle, root)
    target = root / Layout.of(".").model_file(SPLIT, SVM, 12)[2:]
    if change == "modified":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 1
        target.write_bytes(bytes(data))
        match = "does not match its sha256"
    elif change == "unlisted":
        (root / "models" / SPLIT / "extra.json").write_text("{}")
        match = "not listed"
    else:
        target.unlink()
        match = "missing"
    with pytest.raises(PredictError, match=match):
        verify_bundle(root)


@pytest.mark.parametrize("name", [f"AU12{LEGACY_MODEL_EXT}", "AU12.npz"])
def test_a_crafted_pickled_model_in_a_bundle_never_runs(bundle, face_video, tmp_path, capsys, name):  # noqa: F811
    """A crafted AU12 model (a pickle whose loading writes a marker file), listed with matching sha256s (the sender
    rewrote bundle.json): refused, and the marker is never written, even with --trust-legacy-pickles."""
    root = tmp_path / "b"
    shutil.copytree(bundle, root)
    marker = tmp_path / "marker"
    folder = root / "models" / SPLIT / SVM
    (folder / "AU12.npz").unlink()
    joblib.dump({"au": 12, "estimator": Evil(marker)}, folder / name)
    _relist(root)
    for extra in ([], ["--trust-legacy-pickles"]):
        rc, text = _predict(capsys, face_video, tmp_path / "o.csv", "--models", str(root), "--model", SVM, *extra)
        assert rc == 1 and "refused" in text and name in text, text
        assert not marker.exists(), "the crafted model ran its code"
    assert not (tmp_path / "o.csv").exists()


def test_a_crafted_finetuned_network_in_a_bundle_never_runs(bundle, face_video, tmp_path, capsys):  # noqa: F811
    from au_transfer.finetune.bundle import BUNDLE_FORMAT

    root = tmp_path / "b"
    shutil.copytree(bundle, root)
    marker = tmp_path / "marker"
    layout = Layout.of(root)
    for au in (1, 12):
        net = Path(layout.finetune_net(SPLIT, "dlib_resnet", "face", au))
        net.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": BUNDLE_FORMAT, "au": au, "state_dict": {}, "x": Evil(marker)}, net)
    _relist(root)
    verify_bundle(root)  # a torch zip file like any other: the loader is what refuses it
    rc, text = _predict(capsys, face_video, tmp_path / "o.csv", "--models", str(root), "--model",
                        "dlib_resnet_ft-face-softmax")
    assert rc == 1 and "refused" in text and "AU1.pt" in text and len(text.strip().splitlines()) <= 2, text
    assert not marker.exists(), "the crafted network ran its code"


# ------------------------------------------------------------------------------------------ legacy results
@pytest.fixture
def legacy(results, tmp_path):  # noqa: F811
    """The results folder as an earlier version wrote it: joblib pickles instead of .npz."""
    root = tmp_path / "old"
    shutil.copytree(results, root)
    for p in sorted(root.glob("models/*/*/AU*.npz")):
        joblib.dump(load_model(p), p.with_suffix(LEGACY_MODEL_EXT))
        p.unlink()
    return root


def test_legacy_pickles_load_only_when_trusted_and_convert(legacy, results, face_video, tmp_path, capsys):  # noqa: F811
    out, ref = tmp_path / "o.csv", tmp_path / "ref.csv"
    rc, text = _predict(capsys, face_video, out, "--results", str(legacy), "--split", SPLIT, "--model", SVM)
    assert rc == 1 and "convert-models" in text and "AU1.joblib" in text and len(text.strip().splitlines()) == 2
    assert main(["export-models", str(legacy), "--split", SPLIT, "-o", str(tmp_path / "b")]) == 1
    assert "convert-models" in capsys.readouterr().err
    assert _predict(capsys, face_video, ref, "--results", str(results), "--split", SPLIT, "--model", SVM)[0] == 0
    rc, _ = _predict(capsys, face_video, out, "--results", str(legacy), "--split", SPLIT, "--model", SVM,
                     "--trust-legacy-pickles")
    assert rc == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(ref))
    trust_legacy_pickles(False)
    with pytest.raises(SystemExit):  # the converter needs the user's word
        main(["convert-models", str(legacy)])
    assert main(["convert-models", str(legacy), "--trust-legacy-pickles"]) == 0
    assert not list(legacy.glob("models/*/*/AU*.joblib"))
    trust_legacy_pickles(False)
    out2 = tmp_path / "o2.csv"
    assert _predict(capsys, face_video, out2, "--results", str(legacy), "--split", SPLIT, "--model", SVM)[0] == 0
    pd.testing.assert_frame_equal(pd.read_csv(out2), pd.read_csv(ref))


# ------------------------------------------------------------------------------------------ probe cases
@pytest.mark.parametrize("which", ["model", "ensemble", "manifest"])
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_broken_model_file_is_one_line_naming_it(results, face_video, tmp_path, capsys, damage, which):  # noqa: F811
    root = tmp_path / "r"
    shutil.copytree(results, root)
    layout = Layout.of(root)
    path = Path({"model": layout.model_file(SPLIT, SVM, 12), "ensemble": layout.ensemble_params(SPLIT, "ens-pair"),
                 "manifest": layout.manifest(SPLIT)}[which])
    path.write_bytes(b"" if damage == "empty" else path.read_bytes()[:300])
    rc, text = _predict(capsys, face_video, tmp_path / "o.csv", "--results", str(root), "--split", SPLIT,
                        "--model", "ens-pair" if which == "ensemble" else SVM)
    err = [ln for ln in text.splitlines() if "error" in ln]
    assert rc == 1 and len(err) == 1 and str(path) in err[0] and "rerun" in err[0], text
    assert "Traceback" not in text


def test_an_unknown_model_lists_the_models_that_exist(results, face_video, tmp_path, capsys):  # noqa: F811
    for bad in ("dlib_resnet-face-lstm", "nonsense"):
        rc, text = _predict(capsys, face_video, tmp_path / "o.csv", "--results", str(results), "--split", SPLIT,
                            "--model", bad)
        assert rc == 1 and f"dlib_resnet-face-lda, {SVM}, ens-pair" in text, text


def test_a_tar_with_a_path_outside_the_bundle_is_refused(bundle, tmp_path):
    import io

    from au_transfer.predict.bundle import open_bundle

    tar = tmp_path / "evil.tar"
    with tarfile.open(tar, "w") as t:
        t.add(bundle, arcname=".")
        info = tarfile.TarInfo("../outside.json")
        info.size = 2
        t.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(PredictError, match="not a plain file inside the bundle"), open_bundle(tar):
        pass
    assert not (tmp_path / "outside.json").exists()
    ok = tmp_path / "ok.tar"
    with tarfile.open(ok, "w") as t:  # a tar made by hand of the folder (with its directories) is fine
        t.add(bundle, arcname=".")
    with open_bundle(ok) as b:
        assert b.split == SPLIT


def test_export_brings_mean_images_and_the_networks_of_finetuned_features(tmp_path):
    """A mean-image backbone's model brings the split's mean images; a model on a fine-tuned network's features
    brings that network (one file per AU)."""
    import numpy as np

    from au_transfer import persist
    from au_transfer.predict import write_manifest
    from au_transfer.predict.bundle import export_models

    root, split = tmp_path / "results", "s"
    layout = Layout.of(root)
    write_manifest(layout.manifest(split), split=split, aus=[1, 12], faces={}, backbones={"vgg_face": {
        "mean_image": True}})
    for model in ("vgg_face-face-svm", "cnn_f_ft-face-svm"):
        for au in (1, 12):
            persist.save({"au": au, "estimator": None, "status": "skipped"}, layout.model_file(split, model, au))
    Path(layout.mean_image(split, "vgg_face", "face")).parent.mkdir(parents=True)
    np.save(layout.mean_image(split, "vgg_face", "face"), np.zeros((2, 2, 3), np.float32))
    for au in (1, 12):
        net = Path(layout.finetune_net(split, "cnn_f", "face", au))
        net.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"w": torch.zeros(1)}, net)
    (Path(layout.finetune_dir(split, "cnn_f", "face")) / "AU1.ckpt").write_bytes(b"not packed")
    meta = export_models(root, split, tmp_path / "b")
    paths = {e["path"] for e in meta["files"]}
    rel = Layout.of(".")
    assert rel.mean_image(split, "vgg_face", "face")[2:] in paths
    assert {rel.finetune_net(split, "cnn_f", "face", au)[2:] for au in (1, 12)} <= paths
    assert not any(p.endswith(".ckpt") for p in paths)
    assert meta["models"] == ["cnn_f_ft-face-softmax", "cnn_f_ft-face-svm", "vgg_face-face-svm"]
    verify_bundle(tmp_path / "b")
