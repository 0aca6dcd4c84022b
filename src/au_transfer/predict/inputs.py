"""What the models read, computed for a chunk of aligned faces: region crops, and the features of frozen or
fine-tuned backbones (each network built once, each chunk's features computed once per network and crop).

Fine-tuned networks are shared too: the workflow writes a multilabel network once per AU (the same weights in
every ``AU{n}.pt``), so :meth:`Inputs.load_model` loads each distinct network (by its weights' sha256) once, and
the models of its AUs read their columns of one forward pass per chunk and crop (:class:`SharedNetwork`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbones.weights import file_sha256
from ..config import parse_model_id
from ..faces.regions import REGION_NAMES, cut_region
from ..layout import FT_SUFFIX, Layout
from ..models import AUModel, Needs, load_au_model, model_kind
from .manifest import PredictError

log = logging.getLogger(__name__)


@dataclass
class FaceChunk:
    """Aligned faces of consecutive valid frames of one face track, their region boxes, and per-chunk caches."""

    faces: np.ndarray           # (B, S, S, 3) uint8
    boxes: np.ndarray           # (B, 3, 4) upper, middle, lower
    aspect: str
    _crops: dict = field(default_factory=dict)   # (region, size) -> (B, size, size, 3), e.g. cut by the reader
    features: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.faces)

    def crops(self, region: str, size: int) -> np.ndarray:
        """The faces' ``region`` crops at ``size`` (:func:`au_transfer.faces.regions.cut_region`, as the store)."""
        key = (region, size)
        if key not in self._crops:
            out = np.empty((len(self.faces), size, size, 3), np.uint8)
            for j, face in enumerate(self.faces):
                box = None if region == "face" else self.boxes[j, REGION_NAMES.index(region)]
                out[j] = cut_region(face, box, size, self.aspect)
            self._crops[key] = out
        return self._crops[key]


class FeatureNet:
    """A backbone's feature layer on uint8 crops, batched; float16-rounded like the feature store."""

    def __init__(self, net: Any, device: torch.device, batch_size: int, mean_image: np.ndarray | None = None):
        self.net = net.to(device).eval()
        self.spec = net.spec
        self.device = device
        self.batch_size = batch_size
        self.mean_image = None if mean_image is None else torch.as_tensor(mean_image, device=device)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        out = [self.batch(crops[i:i + self.batch_size]) for i in range(0, len(crops), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.spec.feature_dim), np.float32)

    @torch.inference_mode()
    def batch(self, crops: np.ndarray) -> np.ndarray:
        """The features of one batch (at most ``batch_size`` crops; :meth:`__call__` is these, concatenated)."""
        from ..backbones import preprocess

        x = preprocess(self.spec, crops, self.device, mean_image=self.mean_image)
        return self.net.features(x).float().cpu().numpy().astype(np.float16).astype(np.float32)


class SharedNetwork:
    """A fine-tuned network (:func:`au_transfer.finetune.load_finetuned`) whose output, the "present"
    probability of each of its AUs, is computed once per crop array and read by the models of all its AUs."""

    def __init__(self, path: Path, device: torch.device, batch_size: int):
        from ..finetune import load_finetuned

        self.net, _ = load_finetuned(path, device)
        self.spec = self.net.backbone.spec
        self.device, self.batch_size = device, batch_size
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    @torch.no_grad()
    def probs(self, crops: np.ndarray) -> np.ndarray:
        """(B, n_aus) softmax probabilities of "present" (as ``FinetunedClassifier.decision_function``)."""
        if self._last is not None and self._last[0] is crops:
            return self._last[1]
        out = [self.batch(crops[i:i + self.batch_size]) for i in range(0, len(crops), self.batch_size)]
        probs = np.concatenate(out) if out else np.zeros((0, self.net.n_aus), np.float32)
        self.seed(crops, probs)
        return probs

    @torch.no_grad()
    def batch(self, crops: np.ndarray) -> np.ndarray:
        """The probabilities of one batch (at most ``batch_size`` crops; :meth:`probs` is these, concatenated)."""
        from ..backbones import preprocess

        x = preprocess(self.spec, crops, self.device)
        return torch.softmax(self.net(x).float(), -1)[:, :, 1].cpu().numpy()

    def seed(self, crops: np.ndarray, probs: np.ndarray) -> None:
        """Hand :meth:`probs` its result for ``crops`` (computed batch by batch ahead, :meth:`Inputs.attach`)."""
        self._last = (crops, probs)  # the array is held, so its identity cannot be reused


class _SharedHead:
    """One AU's column of a :class:`SharedNetwork`, in place of a ``FinetunedClassifier`` (same attributes)."""

    def __init__(self, shared: SharedNetwork, bundle: Mapping[str, Any]):
        self.shared, self.bundle = shared, dict(bundle)
        self.au, self.au_index = int(bundle["au"]), int(bundle["au_index"])
        self.crop_region, self.input_size = bundle["crop_region"], int(bundle["input_size"])
        self.batch_size = shared.batch_size
        self.classes_ = np.array([0, 1])

    def decision_function(self, images: np.ndarray) -> np.ndarray:
        if self.bundle.get("status") == "skipped":
            return np.full(len(images), np.nan)
        return self.shared.probs(images)[:, self.au_index]

    def predict(self, images: np.ndarray) -> np.ndarray:
        return (np.nan_to_num(self.decision_function(images), nan=0.0) >= 0.5).astype(int)


def _bundle_header(path: Path) -> dict[str, Any]:
    """A fine-tuned bundle's metadata without reading its weights (memory-mapped)."""
    from ..finetune.bundle import load_bundle
    from ..finetune.config import FinetuneError

    try:  # weights_only: a file that would run code is refused (au_transfer.persist.torch_load)
        bundle = load_bundle(path, mmap=True)
    except FinetuneError as exc:
        raise PredictError(str(exc)) from None
    return {k: v for k, v in bundle.items() if k != "state_dict"}


class Inputs:
    """Builds what a model's :class:`~au_transfer.models.Needs` ask for, from a results folder's networks."""

    def __init__(self, layout: Layout, split: str, manifest: Mapping[str, Any], device: torch.device,
                 batch_size: int):
        self.layout, self.split, self.manifest = layout, split, manifest
        self.device, self.batch_size = device, batch_size
        self._nets: dict[tuple, FeatureNet] = {}
        self._shared: dict[tuple, SharedNetwork] = {}
        # every network output the loaded models read: key -> (network, (region, size) of its crops)
        self._outputs: dict[tuple, tuple[FeatureNet | SharedNetwork, tuple[str, int]]] = {}

    # ------------------------------------------------------------------------------------------ models
    def shared_network(self, path: Path) -> tuple[SharedNetwork, dict[str, Any]]:
        """The fine-tuned network of a bundle, loaded once per distinct weights; with the bundle's metadata."""
        head = _bundle_header(path)
        key = (str(head.get("backbone")), str(head.get("weights_sha256") or path))
        if key not in self._shared:
            self._shared[key] = SharedNetwork(path, self.device, self.batch_size)
        return self._shared[key], head

    def load_model(self, path: Path, model: str, au: int, **kwargs: Any) -> AUModel:
        """The model ``model`` of one AU from its file; a fine-tuned network's model shares its network with the
        other AUs of the same weights (scores equal to those of ``load_au_model``)."""
        from ..ensemble import ENSEMBLE_PREFIX

        if model.startswith(ENSEMBLE_PREFIX) or parse_model_id(model)[2] != "softmax" or not path.is_file():
            return load_au_model(path, model, au, **kwargs)
        shared, head = self.shared_network(path)
        m = model_kind("softmax")(None, au=au, model_id=model, **kwargs)
        m.clf = _SharedHead(shared, head)  # the FinetunedModel's classifier, reading the shared network
        m.path, m.au, m.crop_region = str(path), m.clf.au, m.clf.crop_region
        if head.get("status") != "skipped":
            crop = (m.clf.crop_region, m.clf.input_size)
            self._outputs.setdefault(("probs", id(shared), *crop), (shared, crop))
        return m

    # ------------------------------------------------------------------------------------------ networks
    def _frozen(self, needs: Needs, model: str, au: int) -> tuple[tuple, FeatureNet]:
        backbone, crop = needs.backbone, needs.crop_region
        opts = dict(self.manifest.get("backbones", {}).get(backbone) or {})
        weights, seed = str(opts.get("weights", "pretrained")), int(opts.get("seed", 0))
        mean_image = None
        if opts.get("mean_image"):
            mi = Path(self.layout.mean_image(self.split, backbone, crop))
            if not mi.is_file():
                raise PredictError(f"model {model}: backbone {backbone} subtracts the training mean image, but {mi} "
                                   "does not exist")
            if not needs.mean_image_sha256:
                raise PredictError(f"model {model} AU{au} was trained on {backbone} features without the mean image, "
                                   f"but predictor.json says backbones.{backbone}.mean_image is set; rerun the "
                                   "workflow so that the model and the manifest agree")
            if needs.mean_image_sha256 != file_sha256(mi):
                raise PredictError(f"model {model} AU{au} was trained with another mean image than {mi}; rerun the "
                                   "workflow")
            mean_image = np.load(mi, allow_pickle=False).astype(np.float32)
        elif needs.mean_image_sha256:
            raise PredictError(f"model {model} AU{au} was trained on {backbone} features with the split's mean image "
                               f"subtracted, but predictor.json does not set backbones.{backbone}.mean_image")
        key = ("frozen", backbone, weights, seed, crop if mean_image is not None else "")
        if key not in self._nets:
            from ..backbones import create_backbone

            net = create_backbone(backbone, weights, key_map=opts.get("key_map"), seed=seed)
            self._nets[key] = FeatureNet(net, self.device, self.batch_size, mean_image)
        fnet = self._nets[key]
        have = str(getattr(fnet.net, "weights_sha256", "") or "")
        if needs.weights_sha256 and have and needs.weights_sha256 != have:
            raise PredictError(
                f"model {model} AU{au} was trained on {backbone} features with weights sha256 {needs.weights_sha256}, "
                f"but the backbone built here ({weights}) has {have}; pass the same weights (predictor.json backbones)")
        return key, fnet

    def _finetuned(self, model: str, au: int) -> tuple[tuple, FeatureNet]:
        backbone, region, _ = parse_model_id(model)
        path = Path(self.layout.finetune_net(self.split, backbone.removesuffix(FT_SUFFIX), region, au))
        if not path.is_file():
            raise PredictError(f"model {model}: fine-tuned network {path} does not exist (AU{au})")
        shared, head = self.shared_network(path)
        key = ("ft", str(head.get("backbone")), str(head.get("weights_sha256") or path))
        if key not in self._nets:
            self._nets[key] = FeatureNet(shared.net.backbone, self.device, self.batch_size)
        return key, self._nets[key]

    def check(self, needs: Needs, model: str, au: int) -> tuple[str, int] | None:
        """Build (once) what a model reads, so that a mismatch is an error before any frame is read; returns the
        ``(region, size)`` of the crops it reads (None: none, e.g. an ensemble)."""
        if needs.kind == "features":
            key, net = (self._finetuned(model, au) if needs.backbone.endswith(FT_SUFFIX)
                        else self._frozen(needs, model, au))
            crop = (needs.crop_region, int(net.spec.input_size))
            self._outputs.setdefault((*key, needs.crop_region), (net, crop))
            return crop
        return (needs.crop_region, int(needs.size)) if needs.kind == "crops" else None

    # ------------------------------------------------------------------------------------------ per chunk
    def __call__(self, needs: Needs, model: str, au: int, chunk: FaceChunk) -> np.ndarray:
        """The model's input for the chunk's faces: features (B, D) or crops (B, S, S, 3)."""
        if needs.kind == "crops":
            return chunk.crops(needs.crop_region, needs.size)
        if needs.kind != "features":
            raise PredictError(f"model {model}: cannot build inputs of kind {needs.kind!r} from faces")
        key, net = (self._finetuned(model, au) if needs.backbone.endswith(FT_SUFFIX)
                    else self._frozen(needs, model, au))
        full = (*key, needs.crop_region)
        if full not in chunk.features:
            chunk.features[full] = net(chunk.crops(needs.crop_region, int(net.spec.input_size)))
        return chunk.features[full]

    # ------------------------------------------------------------------------------------------ ahead, by batch
    @property
    def outputs(self) -> tuple[tuple, ...]:
        """The keys of the network outputs the loaded models read (:meth:`batch_outputs`)."""
        return tuple(self._outputs)

    def batch_outputs(self, crops: Mapping[tuple[str, int], np.ndarray]) -> dict[tuple, np.ndarray]:
        """Every network output the loaded models read, on one batch of one face track's crops (``(region, size)``
        -> (B, size, size, 3), B at most ``batch_size``): computed while the rest of a chunk is still being read."""
        return {key: net.batch(crops[crop]) for key, (net, crop) in self._outputs.items()}

    def attach(self, chunk: FaceChunk, parts: list[dict[tuple, np.ndarray]]) -> None:
        """Give ``chunk`` the outputs of its faces computed batch by batch (:meth:`batch_outputs` of consecutive
        ``batch_size`` faces, the last batch possibly shorter): the very batches the chunk would run, so the
        values are the same."""
        for key, (net, crop) in self._outputs.items():
            value = np.concatenate([p[key] for p in parts])
            if len(value) != len(chunk):
                raise ValueError(f"{len(value)} precomputed outputs for a chunk of {len(chunk)} faces")
            if isinstance(net, SharedNetwork):
                net.seed(chunk.crops(*crop), value)
            else:
                chunk.features[key] = value
