"""MTCNN's output network (ONet, facenet-pytorch) as a backbone: the 256-D ``dense5`` + PReLU layer.

The network and its weights come from facenet-pytorch (``facenet_pytorch.models.mtcnn.ONet``, weights
``facenet_pytorch/data/onet.pt`` loaded by path). Input: 48x48 RGB face crops, as facenet-pytorch's
``detect_face`` feeds ONet: NCHW RGB in the image's own orientation (the original MTCNN's transposed-image
convention is folded into facenet-pytorch's converted weights and into the ``permute(0, 3, 2, 1)`` before
``dense5``), resized with area interpolation, scaled as ``(x - 127.5) * 0.0078125`` (i.e. ``/ 128``).

Backbone view (docs/DESIGN.md): ``body`` = conv1..prelu4 then the (N, W, H, C) flatten to 1152; ``fc`` =
``dense5`` + ``prelu5`` (the 256-D feature); ``tail`` = ``dense6_1``, the face / non-face logits.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

INPUT_SIZE = 48
FEATURE_DIM = 256
#: facenet-pytorch's input scaling on 0-255 pixels: ``(x - 127.5) * 0.0078125``.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125
#: The same normalisation on images scaled to [0, 1]: ``(x - mean) / std``.
MEAN = (PIXEL_MEAN / 255.0,) * 3
STD = (1.0 / (PIXEL_SCALE * 255.0),) * 3


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _onet_class() -> type[nn.Module]:
    try:
        from facenet_pytorch.models.mtcnn import ONet
    except ImportError as err:
        raise ImportError("mtcnn_onet needs the pip package facenet-pytorch (pip install --no-deps "
                          f"facenet-pytorch): {err}") from err
    return ONet


def default_weights_path() -> Path:
    """``onet.pt`` shipped inside the facenet-pytorch package, found by path."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("no pretrained weights for mtcnn_onet: the pip package facenet-pytorch is not "
                                "installed; install it (--no-deps) or set backbones.mtcnn_onet.weights to a "
                                "path to onet.pt")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "onet.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no pretrained weights for mtcnn_onet: {path} is missing; reinstall "
                                "facenet-pytorch or give a path to onet.pt")
    return path


class _FlattenWHC(nn.Module):
    """facenet-pytorch's ``permute(0, 3, 2, 1)`` then flatten (the TF/caffe element order dense5 expects)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class MtcnnONet(nn.Module):
    """ONet with the Backbone interface; the parameters are those of the wrapped facenet-pytorch ``ONet``."""

    def __init__(self, onet: nn.Module, weights_sha256: str | None = None, spec: Any = None):
        super().__init__()
        self.onet = onet
        self.weights_sha256 = weights_sha256
        self.spec = spec
        o = onet
        self.body = nn.Sequential(o.conv1, o.prelu1, o.pool1, o.conv2, o.prelu2, o.pool2, o.conv3, o.prelu3,
                                  o.pool3, o.conv4, o.prelu4, _FlattenWHC())
        self.fc = nn.Sequential(o.dense5, o.prelu5)
        self.tail = nn.Sequential(o.dense6_1)

    feature_dim = FEATURE_DIM

    def features(self, x: Tensor) -> Tensor:
        """The 256-D dense5 + PReLU feature of a preprocessed (B, 3, 48, 48) batch."""
        return self.fc(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        """Face / non-face logits (``dense6_1`` before its softmax)."""
        return self.tail(self.features(x))


def load_onet(weights: str | Path = "pretrained", *, seed: int = 0) -> tuple[nn.Module, str]:
    """facenet-pytorch's ONet with ``weights``: ``pretrained`` (the package's onet.pt), ``random`` (seeded
    PyTorch default init) or a path to a state dict (.pt/.pth with ONet's keys, or .safetensors)."""
    ONet = _onet_class()
    if weights == "random":
        with torch.random.fork_rng():  # ONet initialises in its constructor: seed it, leave the global RNG alone
            torch.manual_seed(seed)
            net = ONet(pretrained=False)
        return net.eval(), f"random:{seed}"
    path = default_weights_path() if weights == "pretrained" else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"mtcnn_onet weights file {path} does not exist (weights: {weights!r}; use "
                                "'pretrained', 'random' or a path to onet.pt)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = {k.removeprefix("onet."): v for k, v in sd.items()}
    net = ONet(pretrained=False)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: not an MTCNN ONet state dict: {err}") from err
    return net.eval(), sha256_file(path)


def preprocess_uint8(images: np.ndarray | Tensor, device: str | torch.device = "cpu") -> Tensor:
    """(B, H, W, 3) uint8 RGB crops -> (B, 3, 48, 48) ONet input: area resize (as facenet-pytorch's
    ``imresample``) then ``(x - 127.5) * 0.0078125``."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected (B, H, W, 3) uint8 RGB images, got {tuple(x.shape)} {x.dtype}")
    x = x.to(device).permute(0, 3, 1, 2).float()
    if tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
    return (x - PIXEL_MEAN) * PIXEL_SCALE


def build(layer: str = "mtcnn_onet", weights: str | Path = "pretrained", *, seed: int = 0,
          spec: Any = None) -> MtcnnONet:
    """The ONet backbone (only one feature layer: ``mtcnn_onet``, 256-D)."""
    if layer != "mtcnn_onet":
        raise KeyError(f"unknown mtcnn_onet layer {layer!r}; expected 'mtcnn_onet'")
    net, sha = load_onet(weights, seed=seed)
    return MtcnnONet(net, sha, spec).eval()
