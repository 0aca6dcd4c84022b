"""One device resolver and one AMP vocabulary (au_transfer.device) for features, fine-tuning, the LSTM and the
predictor; each caller keeps its own CPU rule."""

from __future__ import annotations

import logging

import pytest
import torch

from au_transfer.config import ConfigError
from au_transfer.device import AMP_VALUES, DeviceError, amp_dtype, resolve_device
from au_transfer.plan import gpu_claim, local_gpus

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_resolve_device():
    assert resolve_device("cpu") == CPU and resolve_device(CPU) == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="config key 'x.device': 'gpu0' is not a device"):
        resolve_device("gpu0", what="config key 'x.device'")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="config key 'finetune.device': 'cuda:1' requested but CUDA is not"):
            resolve_device("cuda:1", what="config key 'finetune.device'")


@pytest.mark.parametrize("amp,on_cpu,expected", [
    ("off", True, None), ("none", True, None), ("auto", True, None), ("bf16", True, torch.bfloat16),
    ("fp16", True, torch.float16), ("bf16", False, None), ("fp16", False, None), ("auto", False, None),
])
def test_amp_on_cpu(amp, on_cpu, expected):
    """Feature extraction autocasts on CPU when bf16/fp16 is given (on_cpu); fine-tuning ignores AMP on CPU."""
    assert amp_dtype(amp, CPU, on_cpu=on_cpu) == expected


@pytest.mark.parametrize("bf16_ok", [True, False])
def test_amp_on_cuda(monkeypatch, caplog, bf16_ok):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    for on_cpu in (True, False):
        assert amp_dtype("fp16", CUDA, on_cpu=on_cpu) == torch.float16
        assert amp_dtype("off", CUDA, on_cpu=on_cpu) is amp_dtype("none", CUDA, on_cpu=on_cpu) is None
        assert amp_dtype("auto", CUDA, on_cpu=on_cpu) == (torch.bfloat16 if bf16_ok else torch.float16)
        with caplog.at_level(logging.WARNING, logger="au_transfer.device"):
            assert amp_dtype("bf16", CUDA, on_cpu=on_cpu) == (torch.bfloat16 if bf16_ok else torch.float16)
        assert ("bf16 is not supported" in caplog.text) == (not bf16_ok)


def test_unknown_amp_names_the_setting():
    assert set(AMP_VALUES) == {"auto", "bf16", "fp16", "off", "none"}
    with pytest.raises(DeviceError, match=r"config key 'features.amp': 'fp32' is not one of"):
        amp_dtype("fp32", CPU, what="config key 'features.amp'")


def _dev(tmp_path, *names):
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    return tmp_path


def test_local_gpus_counts_device_nodes_without_torch(tmp_path):
    env = {}
    assert local_gpus(_dev(tmp_path / "none", "null", "nvidiactl", "nvidia-uvm"), env) == 0
    assert local_gpus(_dev(tmp_path / "nv", "nvidia0", "nvidia1", "nvidiactl", "nvidia-modeset"), env) == 2
    assert local_gpus(_dev(tmp_path / "rocm", "kfd", "dri/renderD128", "dri/card0"), env) == 1
    assert local_gpus(_dev(tmp_path / "dri", "dri/renderD128"), env) == 0  # a render node without ROCm's kfd
    nv = tmp_path / "nv"
    assert local_gpus(nv, {"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert local_gpus(nv, {"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    assert local_gpus(nv, {"CUDA_VISIBLE_DEVICES": "1"}) == 2
    assert local_gpus(tmp_path / "none", {"AU_TRANSFER_GPUS": "3"}) == 3
    assert local_gpus(nv, {"AU_TRANSFER_GPUS": "0"}) == 0
    with pytest.raises(ConfigError, match="AU_TRANSFER_GPUS='yes'"):
        local_gpus(nv, {"AU_TRANSFER_GPUS": "yes"})


def test_gpu_claim_follows_the_device_setting():
    assert gpu_claim("auto", 1) == 1 and gpu_claim("auto", 0) == 0
    assert gpu_claim("cpu", 4) == 0
    assert gpu_claim("cuda", 0) == 1 and gpu_claim("cuda:1", 2) == 1  # asked for: claimed (fails at run time if none)
