"""Devices and mixed precision: one resolver and one AMP vocabulary for every torch stage (feature extraction,
fine-tuning, the LSTM, the predictor).

Device specs: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` (or a ``torch.device``).
AMP values (the union of the config sections' spellings; each schema keeps its own list): ``off`` / ``none`` (no
autocast), ``auto`` (bf16 on CUDA where supported, else fp16; nothing on CPU), ``bf16``, ``fp16``.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

#: Every AMP spelling :func:`amp_dtype` accepts (``features.amp``: auto|bf16|fp16|off, ``finetune.amp``: none|fp16|bf16).
AMP_VALUES: tuple[str, ...] = ("auto", "bf16", "fp16", "off", "none")


class DeviceError(ValueError):
    """A device or AMP setting cannot be used here; the message names the setting."""


def resolve_device(spec: str | torch.device = "auto", *, what: str = "device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device. A CUDA device on a machine without
    CUDA is an error naming ``what`` (the config key or option the spec came from)."""
    if isinstance(spec, torch.device):
        dev = spec
    elif spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(spec)
        except (RuntimeError, TypeError) as err:
            raise DeviceError(f"{what}: {spec!r} is not a device (auto, cpu, cuda or cuda:N)") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{what}: {str(spec)!r} requested but CUDA is not available on this machine")
    return dev


def amp_dtype(amp: str, device: torch.device, *, on_cpu: bool = True, what: str = "amp") -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: no autocast).

    ``off``/``none`` -> None. ``auto`` -> bf16 on CUDA (fp16 where the GPU lacks bf16), None on CPU. ``bf16``/``fp16``
    -> that dtype on CUDA (bf16 falls back to fp16, with a warning, where the GPU lacks it); on CPU that dtype when
    ``on_cpu`` (feature extraction: CPU autocast when asked for), None otherwise (fine-tuning: AMP is a CUDA setting,
    ignored on CPU). An unknown value is an error naming ``what``.
    """
    if amp not in AMP_VALUES:
        raise DeviceError(f"{what}: {amp!r} is not one of {list(AMP_VALUES)}")
    if amp in ("off", "none"):
        return None
    if device.type != "cuda":
        if amp == "auto" or not on_cpu:
            return None
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "fp16":
        return torch.float16
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if amp == "bf16":
        log.warning("bf16 is not supported on this GPU; using fp16 mixed precision")
    return torch.float16
