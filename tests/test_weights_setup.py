"""Weights a config needs: missing files named before any job (with the converter's command), `weights check`
(keys and shapes), `weights fetch` (hub downloads into the jobs' caches, run offline against a local server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_snakemake
from test_convert_weights import TINY_BLOCKS, mcn_layers, write_simplenn

from au_transfer.backbones import BackboneSpec, create_backbone, register_backbone
from au_transfer.backbones.classic import _split_flat, conv_stack, native_builder
from au_transfer.backbones.convert import convert_weights
from au_transfer.cli import main
from au_transfer.config import ConfigError, validate_config
from au_transfer.plan import check_workflow

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "disfa_paper.yaml"
torch.set_num_threads(1)


def _paper_cfg() -> dict:
    return validate_config(yaml.safe_load(PAPER.read_text()))


def test_missing_weights_are_named_with_the_converters_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        check_workflow(_paper_cfg())
    lines = str(exc.value).splitlines()
    for name, release in (("cnn_f", "imagenet-vgg-f.mat"), ("cnn_s", "imagenet-vgg-s.mat"),
                          ("vgg_face", "vgg-face.mat")):
        line = next(x for x in lines if f"backbone {name}:" in x)  # one line each: file, backbone, command
        assert f"weights file weights/{name}.pth does not exist (backbones.{name}.weights)" in line
        assert f"au-transfer convert-weights {release} weights/{name}.pth --backbone {name}" in line
    assert not any("cnn_m" in x for x in lines)  # configured, but no job of this config builds it
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "cnn_f.pth").write_bytes(b"")
    with pytest.raises(ConfigError) as exc:
        check_workflow(_paper_cfg())
    assert "backbone cnn_f:" not in str(exc.value) and "backbone cnn_s:" in str(exc.value)


def test_validate_config_names_missing_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate-config", str(PAPER)]) == 1
    err = capsys.readouterr().err
    assert "au-transfer convert-weights imagenet-vgg-f.mat weights/cnn_f.pth --backbone cnn_f" in err


def test_the_start_up_check_imports_no_torch():
    code = ("import sys, yaml; from au_transfer.weights_plan import missing_weights; "
            f"from au_transfer.config import validate_config; cfg = validate_config(yaml.safe_load(open({str(PAPER)!r}))); "
            "assert missing_weights(cfg); assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_workflow_stops_before_any_job_with_the_command(tmp_path):
    proc = run_snakemake(tmp_path, "--dry-run", "--config", f"data_root={tmp_path / 'DISFA'}", configfile=PAPER,
                         check=False, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "MissingInputException" not in out
    assert "au-transfer convert-weights imagenet-vgg-f.mat weights/cnn_f.pth --backbone cnn_f" in out


# ------------------------------------------------------------------------------------------ weights check
def _cfg_file(tmp_path, backbones: list[str], options: dict) -> Path:
    cfg = yaml.safe_load((ROOT / "tests" / "config_test.yaml").read_text())
    cfg["features"]["backbones"] = backbones
    cfg["backbones"] = options
    cfg["finetune"]["enabled"] = False
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_weights_check_loads_files_and_names_what_does_not_fit(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_simplenn(tmp_path / "t.mat", mcn_layers(TINY_BLOCKS, 28, 5, 3, rng), {"averageImage": np.ones((1, 1, 3))})
    convert_weights(tmp_path / "t.mat", tmp_path / "good.pth", "tiny_mcn")
    sd = torch.load(tmp_path / "good.pth", weights_only=True)["state_dict"]
    sd["fc6.weight"] = sd["fc6.weight"][:, :-1].clone()
    torch.save(sd, tmp_path / "bad.pth")
    good = _cfg_file(tmp_path, ["tiny_mcn"], {"tiny_mcn": {"weights": str(tmp_path / "good.pth")}})
    assert main(["weights", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "ok    tiny_mcn: file" in out and "converted from t.mat" in out
    bad = _cfg_file(tmp_path, ["tiny_mcn", "dlib_resnet"], {"tiny_mcn": {"weights": str(tmp_path / "bad.pth")}})
    assert main(["weights", "check", str(bad)]) == 1
    cap = capsys.readouterr()
    assert "FAIL  tiny_mcn" in cap.out and "fc6.weight: file (5, 215) vs network (5, 216)" in cap.out
    assert "ok    dlib_resnet: package" in cap.out and "weights of tiny_mcn not ready" in cap.err
    missing = _cfg_file(tmp_path, ["tiny_mcn"], {"tiny_mcn": {"weights": str(tmp_path / "none.pth")}})
    assert main(["weights", "check", str(missing)]) == 1
    assert "missing" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ weights fetch
TINY_TV = BackboneSpec("tiny_tv", "cnn", "fc6 (after ReLU)", 5, 28, pretrained="torchvision")


@pytest.fixture
def served(tmp_path):
    """A local file server on 127.0.0.1 (the hub's stand-in) and the folder it serves."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _register_tiny_tv(url: str) -> None:
    from torchvision.models._api import Weights, WeightsEnum

    enum = WeightsEnum("TinyWeights", [("V1", Weights(url=url, transforms=lambda: None, meta={}))])
    register_backbone("tiny_tv", TINY_TV, native_builder(TINY_TV, lambda: conv_stack(TINY_BLOCKS, 28, 3, 5),
                                                         _split_flat, hub=lambda: enum.V1), overwrite=True)


def _hub_file(root: Path, corrupt: bool = False) -> str:
    tmp = root / "tmp.pth"
    torch.manual_seed(0)
    torch.save(conv_stack(TINY_BLOCKS, 28, 3, 5).state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"tiny-{'00000000' if corrupt else digest[:8]}.pth"  # torch.hub checks the prefix in the name
    tmp.rename(root / name)
    return name


def test_weights_fetch_downloads_into_the_jobs_cache_and_works_offline(tmp_path, served, monkeypatch, capsys):
    root, base = served
    name = _hub_file(root)
    _register_tiny_tv(f"{base}/{name}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = _cfg_file(tmp_path, ["tiny_tv"], {})
    assert main(["weights", "check", "--offline", str(cfg)]) == 1  # not cached yet
    assert "not cached" in capsys.readouterr().out
    assert main(["weights", "fetch", "-q", str(cfg)]) == 0
    out = capsys.readouterr().out
    cached = tmp_path / "torch" / "hub" / "checkpoints" / name
    assert cached.is_file() and str(cached) in out and "TORCH_HOME" in out
    (root / name).unlink()  # the hub is gone: the job reads the cache
    net = create_backbone("tiny_tv", "pretrained")
    assert net.weights_sha256 == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert main(["weights", "check", "--offline", str(cfg)]) == 0


def test_weights_fetch_refuses_a_corrupt_download(tmp_path, served, monkeypatch, capsys):
    root, base = served
    name = _hub_file(root, corrupt=True)
    _register_tiny_tv(f"{base}/{name}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["weights", "fetch", "-q", str(_cfg_file(tmp_path, ["tiny_tv"], {}))]) == 1
    err = capsys.readouterr().err
    assert f"{base}/{name}" in err and str(tmp_path / "torch" / "hub" / "checkpoints" / name) in err
    assert not (tmp_path / "torch" / "hub" / "checkpoints" / name).exists()


def test_weights_fetch_timm_into_the_hugging_face_cache(tmp_path, monkeypatch, capsys):
    """timm's pretrained=True path, offline: the Hugging Face download is a stand-in that fills a cache folder in
    the hub's layout (models--org--name/snapshots/<rev>/file, refs/main)."""
    import timm
    import timm.models._hub as timm_hub
    from huggingface_hub import constants
    from safetensors.torch import save_file

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    src = tmp_path / "test_vit.safetensors"
    torch.manual_seed(1)
    save_file(timm.create_model("test_vit", pretrained=False).state_dict(), str(src))
    calls = []

    def fake_download(repo_id, filename, revision=None, **kwargs):
        calls.append((repo_id, filename))
        if not filename.endswith(".safetensors"):
            raise FileNotFoundError(filename)
        folder = cache / f"models--{repo_id.replace('/', '--')}"
        snap = folder / "snapshots" / "abc123"
        snap.mkdir(parents=True, exist_ok=True)
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text("abc123")
        (snap / filename).write_bytes(src.read_bytes())
        return str(snap / filename)

    monkeypatch.setattr(timm_hub, "hf_hub_download", fake_download)
    cfg = _cfg_file(tmp_path, ["test_vit"], {})
    assert main(["weights", "fetch", "-q", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert calls and calls[0][0] == "timm/test_vit.r160_in1k"
    assert str(cache / "models--timm--test_vit.r160_in1k" / "snapshots" / "abc123" / "model.safetensors") in out
    assert main(["weights", "check", "--offline", str(cfg)]) == 0
