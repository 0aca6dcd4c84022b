"""MTCNN's output network (ONet, facenet-pytorch) as a backbone: the 256-D ``dense5`` + PReLU layer.

The network and its weights come from facenet-pytorch (its ``facenet_pytorch.models.mtcnn.ONet``, mirrored
here as :class:`ONet` so that the package is not imported; weights ``facenet_pytorch/data/onet.pt`` loaded by
path). Input: 48x48 RGB face crops, as facenet-pytorch's
``detect_face`` feeds ONet: NCHW RGB in the image's own orientation (the original MTCNN's transposed-image
convention is folded into facenet-pytorch's converted weights and into the ``permute(0, 3, 2, 1)`` before
``dense5``), resized with area interpolation, scaled as ``(x - 127.5) * 0.0078125`` (i.e. ``/ 128``).

Backbone view (docs/DESIGN.md): ``body`` = conv1..prelu4 then the (N, W, H, C) flatten to 1152; ``fc`` =
``dense5`` + ``prelu5`` (the 256-D feature); ``tail`` = ``dense6_1``, the face / non-face logits.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Backbone, BackboneError, BackboneSpec, register_backbone
from .weights import (
    DOCS,
    KeyMap,
    WeightsError,
    apply_key_map,
    file_sha256,
    load_into,
    load_state_dict_file,
    random_tag,
)

log = logging.getLogger(__name__)

INPUT_SIZE = 48
FEATURE_DIM = 256
#: facenet-pytorch's input scaling on 0-255 pixels: ``(x - 127.5) * 0.0078125``.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125
#: The same normalisation on images scaled to [0, 1]: ``(x - mean) / std``.
MEAN = (PIXEL_MEAN / 255.0,) * 3
STD = (1.0 / (PIXEL_SCALE * 255.0),) * 3


class ONet(nn.Module):
    """facenet-pytorch's ``facenet_pytorch.models.mtcnn.ONet`` (MIT licence), layer for layer: the same modules
    under the same names, built in the same order (so the same seeded initialisation), the same forward. Defined
    here because importing facenet-pytorch imports torchvision and with it ``torch._dynamo`` (~1.5 s of the
    predictor's start-up); ``tests/test_mtcnn_onet.py`` checks it against the package's class."""

    def __init__(self, pretrained: bool = False):
        super().__init__()
        if pretrained:
            raise ValueError("ONet(pretrained=True): load onet.pt with load_onet('pretrained')")
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)
        self.training = False

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


def _onet_class() -> type[nn.Module]:
    """:class:`ONet`, when facenet-pytorch (whose network and weights it is) is installed."""
    if importlib.util.find_spec("facenet_pytorch") is None:
        raise ImportError("mtcnn_onet needs the pip package facenet-pytorch (pip install --no-deps "
                          "facenet-pytorch): No module named 'facenet_pytorch'")
    return ONet


def default_weights_path() -> Path:
    """``onet.pt`` shipped inside the facenet-pytorch package, found by path."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("no pretrained weights for mtcnn_onet: the pip package facenet-pytorch is not "
                           "installed; install it (--no-deps) or set backbones.mtcnn_onet.weights to a "
                           f"path to onet.pt (see {DOCS})")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "onet.pt"
    if not path.is_file():
        raise WeightsError(f"no pretrained weights for mtcnn_onet: {path} is missing; reinstall "
                           "facenet-pytorch or give a path to onet.pt")
    return path


class _FlattenWHC(nn.Module):
    """facenet-pytorch's ``permute(0, 3, 2, 1)`` then flatten (the TF/caffe element order dense5 expects)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


SPEC = BackboneSpec(
    name="mtcnn_onet", family="mtcnn", layer="dense5 + PReLU (256-D) of MTCNN's ONet", feature_dim=FEATURE_DIM,
    input_size=INPUT_SIZE, mean=MEAN, std=STD, pretrained="package",
    notes="facenet-pytorch's ONet (facenet_pytorch/data/onet.pt); input: 48x48 RGB face crops, "
          "(pixel - 127.5) / 128; facenet-pytorch resizes with area interpolation",
)


class MtcnnONet(Backbone):
    """ONet with the Backbone interface; the parameters are those of the wrapped facenet-pytorch ``ONet``
    (``self.onet``; its state dict keys under ``onet.`` are the facenet-pytorch names)."""

    feature_dim = FEATURE_DIM

    def __init__(self, onet: nn.Module, *, weights: str = "random", weights_sha256: str | None = None,
                 spec: BackboneSpec | None = None):
        o = onet
        body = nn.Sequential(o.conv1, o.prelu1, o.pool1, o.conv2, o.prelu2, o.pool2, o.conv3, o.prelu3,
                             o.pool3, o.conv4, o.prelu4, _FlattenWHC())
        super().__init__(spec or SPEC, body, nn.Sequential(o.dense5, o.prelu5), nn.Sequential(o.dense6_1),
                         weights=weights, weights_sha256=weights_sha256)
        self._onet = (onet,)  # a plain reference: its modules are registered through body/fc/tail

    @property
    def onet(self) -> nn.Module:
        """The wrapped facenet-pytorch ONet (all three heads)."""
        return self._onet[0]


def load_onet(weights: str | Path = "pretrained", *, seed: int = 0,
              key_map: KeyMap | None = None) -> tuple[nn.Module, str, str]:
    """facenet-pytorch's ONet with ``weights``, a tag naming where they came from, and their sha256.

    ``weights``: ``pretrained`` (the package's onet.pt), ``random`` (PyTorch's default init, seeded) or a path to a
    state dict (.pt/.pth/.safetensors with ONet's keys, e.g. ``dense5.weight``; ``key_map`` renames others).
    """
    ONet = _onet_class()
    if str(weights) == "random":
        with torch.random.fork_rng(devices=[]):  # ONet initialises in its constructor
            torch.manual_seed(seed)
            net = ONet(pretrained=False)
        return net.eval(), "random", random_tag(seed)
    pretrained = str(weights) == "pretrained"
    path = default_weights_path() if pretrained else Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"mtcnn_onet weights file {path} does not exist (weights: {str(weights)!r}; use "
                           f"'pretrained', 'random' or a path to onet.pt; see {DOCS})")
    sd = apply_key_map(load_state_dict_file(path), key_map)
    sd = {k.removeprefix("onet."): v for k, v in sd.items()}
    net = ONet(pretrained=False)
    load_into(net, sd, name="mtcnn_onet (MTCNN ONet)", source=f"file {path}")
    tag = "pretrained:facenet_pytorch:onet.pt" if pretrained else str(path)
    return net.eval(), tag, file_sha256(path)


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
          key_map: KeyMap | None = None) -> MtcnnONet:
    """The ONet backbone (one feature layer: ``mtcnn_onet``, 256-D). A state dict of the Backbone itself (keys
    ``body.``/``fc.``/``tail.``, e.g. after fine-tuning) loads too."""
    if layer != "mtcnn_onet":
        raise BackboneError(f"unknown mtcnn_onet layer {layer!r}; expected 'mtcnn_onet'")
    w = str(weights)
    if w not in ("pretrained", "random"):
        sd = load_state_dict_file(w)
        if any(k.startswith("body.") for k in sd):
            model = MtcnnONet(_onet_class()(pretrained=False), weights=w, weights_sha256=file_sha256(w))
            load_into(model, sd, name=layer, source=f"file {w}")
            return model.eval()
    net, tag, sha = load_onet(weights, seed=seed, key_map=key_map)
    return MtcnnONet(net, weights=tag, weights_sha256=sha).eval()


def _builder(weights: str, *, key_map: KeyMap | str | None = None, seed: int = 0) -> MtcnnONet:
    if isinstance(key_map, str):
        raise WeightsError(f"mtcnn_onet: no built-in key map {key_map!r}; give a {{regex: replacement}} mapping")
    return build("mtcnn_onet", weights, seed=seed, key_map=key_map)


register_backbone("mtcnn_onet", SPEC, _builder, overwrite=True)
