"""The predictor for new inputs: AU occurrence per frame of a video, an image or a folder of images.

It runs the chain the workflow trained: dlib landmarks and alignment (no DISFA file is needed), the region crops,
the features of every member model's backbone (frozen, or a fine-tuned network), the per-AU models, and for an
ensemble its fitted combination (:mod:`au_transfer.ensemble`). The output has one row per frame in the manner of
OpenFace: ``frame, timestamp, success, confidence``, then ``AU01_p …`` (the model's score: an SVM/LDA decision
value, a probability for LSTM and fine-tuned networks, the fraction of votes or the stacked probability for an
ensemble; higher = more present) and ``AU01_c …`` (0/1 occurrence), and a last column ``file``. A frame without a
usable face has ``success = 0`` and empty AU values.

Trained models are found in a workflow's results folder: ``results/models/{split}/{model}/AU{au}.joblib``
(classifier bundles), ``results/models/{split}/ens-{name}/ensemble.json`` (ensembles),
``results/finetune/{split}/{backbone}-{region}/AU{au}.pt`` (fine-tuned networks), and
``results/models/{split}/predictor.json`` (face and backbone settings of the run, written by the workflow).

Frames are streamed in chunks (``chunk_size``), and the backbone sees batches of ``batch_size`` crops, so memory
stays flat however long the video is; an LSTM member carries its hidden state from chunk to chunk, which equals
running it over the whole sequence of valid frames as the workflow does on test subjects.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .backbones.weights import file_sha256
from .config import ConfigError, parse_model_id, region_for
from .device import resolve_device
from .ensemble import ENSEMBLE_PREFIX, apply_au, load_params
from .faces.pipeline import process_frame
from .faces.regions import REGION_NAMES, cut_region
from .faces.settings import FaceSettings
from .faces.video import IMAGE_EXTENSIONS, iter_frames, video_info
from .io import atomic_path
from .layout import Layout

log = logging.getLogger(__name__)

BASE_COLUMNS: tuple[str, ...] = ("frame", "timestamp", "success", "confidence")
MANIFEST = "predictor.json"
#: Face keys of manifests written before the manifest stored the ``faces`` section itself, and the section keys
#: they stand for (``detector`` hog | cnn is ``landmarks`` dlib | dlib_cnn). Read by :func:`face_settings` only.
LEGACY_FACE_KEYS: dict[str, str] = {"detector": "landmarks", "upsample": "dlib_upsample",
                                    "detect_width": "dlib_detect_width", "aspect": "crop_aspect"}


class PredictError(ValueError):
    """The predictor cannot run: a model file is missing or does not fit; the message names it."""


def au_columns(aus: Sequence[int]) -> list[str]:
    """``AU01_p … AU26_p`` then ``AU01_c … AU26_c`` (OpenFace groups the scores, then the classes)."""
    return [f"AU{au:02d}_p" for au in aus] + [f"AU{au:02d}_c" for au in aus]


# --------------------------------------------------------------------------------------------- the manifest
def write_manifest(path: str | os.PathLike[str], *, split: str, aus: Sequence[int], faces: Mapping[str, Any],
                   backbones: Mapping[str, Any], au_region: Mapping[Any, str] | None = None,
                   threshold: int | None = None) -> dict[str, Any]:
    """Write ``predictor.json``: the face and backbone settings a predictor needs to reproduce the run's inputs.

    ``faces`` is the run's ``faces`` section; the manifest stores it whole, as
    :meth:`~au_transfer.faces.settings.FaceSettings.to_dict` (schema defaults filled in).
    """
    manifest = {"split": split, "aus": [int(a) for a in aus], "faces": FaceSettings.from_config(faces).to_dict(),
                "backbones": {k: dict(v or {}) for k, v in backbones.items()},
                "au_region": {str(k): v for k, v in (au_region or {}).items()}, "threshold": threshold}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def read_manifest(models_dir: Path) -> dict[str, Any]:
    """``predictor.json`` of a models folder, or defaults (with a warning) when the folder has none."""
    path = models_dir / MANIFEST
    if not path.is_file():
        log.warning("%s not found: using the default face settings (faces schema) and pretrained backbone weights",
                    path)
        return {"faces": {}, "backbones": {}, "au_region": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PredictError(f"{path}: not valid JSON: {exc}") from exc


def face_settings(manifest: Mapping[str, Any], path: str | os.PathLike[str] = MANIFEST) -> FaceSettings:
    """The run's :class:`~au_transfer.faces.settings.FaceSettings` from a manifest (``path`` for messages).

    A manifest of an older version (face keys :data:`LEGACY_FACE_KEYS`) is read with those keys mapped, with a
    warning to rerun the ``predictor_manifest`` rule; anything else the ``faces`` schema rejects is an error.
    """
    face = dict(manifest.get("faces") or {})
    legacy = sorted(set(face) & set(LEGACY_FACE_KEYS))
    if legacy:
        log.warning("%s has the face keys of an older version (%s); read with their current names. Rerun the "
                    "predictor_manifest rule (snakemake --forcerun predictor_manifest) to update it", path,
                    ", ".join(legacy))
        for key in legacy:
            value = face.pop(key)
            face[LEGACY_FACE_KEYS[key]] = ("dlib_cnn" if value == "cnn" else "dlib") if key == "detector" else value
    try:
        return FaceSettings.from_config(face)
    except ConfigError as exc:
        raise PredictError(f"{path}: the face settings do not fit this version ({exc}); rerun the "
                           "predictor_manifest rule (snakemake --forcerun predictor_manifest)") from exc


# ------------------------------------------------------------------------------------------- per-chunk data
@dataclass
class _Chunk:
    """Aligned faces of the valid frames of one chunk, their region boxes, and per-chunk caches."""

    faces: np.ndarray           # (B, S, S, 3) uint8
    boxes: np.ndarray           # (B, 3, 4) upper, middle, lower
    aspect: str
    _crops: dict = field(default_factory=dict)
    _features: dict = field(default_factory=dict)

    def crops(self, region: str, size: int) -> np.ndarray:
        key = (region, size)
        if key not in self._crops:
            out = np.empty((len(self.faces), size, size, 3), np.uint8)
            for j, face in enumerate(self.faces):
                box = None if region == "face" else self.boxes[j, REGION_NAMES.index(region)]
                out[j] = cut_region(face, box, size, self.aspect)
            self._crops[key] = out
        return self._crops[key]


class _FeatureNet:
    """A backbone's feature layer on uint8 crops, batched; float16-rounded like the feature store."""

    def __init__(self, net: Any, device: torch.device, batch_size: int, mean_image: np.ndarray | None = None):
        self.net = net.to(device).eval()
        self.spec = net.spec
        self.device = device
        self.batch_size = batch_size
        self.mean_image = None if mean_image is None else torch.as_tensor(mean_image, device=device)

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        from .backbones import preprocess

        out = []
        for i in range(0, len(crops), self.batch_size):
            x = preprocess(self.spec, crops[i:i + self.batch_size], self.device, mean_image=self.mean_image)
            out.append(self.net.features(x).float().cpu().numpy())
        feats = np.concatenate(out) if out else np.zeros((0, self.spec.feature_dim), np.float32)
        return feats.astype(np.float16).astype(np.float32)


class _LSTMState:
    """Runs a fitted LSTMClassifier frame chunk by frame chunk, carrying its hidden state."""

    def __init__(self, est: Any, device: torch.device):
        self.est = est
        self.net = est._net(device)
        self.device = device
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.inference_mode()
    def __call__(self, X: np.ndarray) -> np.ndarray:
        x = self.est._scale([X])[0]
        h, self.state = self.net.lstm(torch.from_numpy(x[None]).to(self.device), self.state)
        logits = self.net.out(h).squeeze(-1)[0].double().cpu().numpy()
        return 1.0 / (1.0 + np.exp(-logits))


# ------------------------------------------------------------------------------------------------ members
class _Member:
    """One member model: per-AU scoring of the valid frames of a chunk."""

    def __init__(self, model: str, aus: Sequence[int], loader: _Loader):
        self.model = model
        self.backbone, self.region, self.classifier = parse_model_id(model)
        self.aus = list(aus)
        self.loader = loader
        self.units: dict[int, dict[str, Any]] = {}
        for au in self.aus:
            self.units[au] = self._load_au(au)

    def _load_au(self, au: int) -> dict[str, Any]:
        ld = self.loader
        if self.classifier == "softmax":
            path = ld.finetune_path(self.backbone, self.region, au, self.model)
            from .finetune import FinetunedClassifier

            clf = FinetunedClassifier(path, device=str(ld.device), batch_size=ld.batch_size)
            return {"kind": "softmax", "clf": clf, "crop_region": clf.crop_region, "size": clf.input_size}
        from .classifiers.frame import load_model

        path = ld.models_dir / self.model / f"AU{au}.joblib"
        if not path.is_file():
            raise PredictError(f"model {self.model}: {path} does not exist (AU{au}); train it with the workflow")
        bundle = load_model(path)
        crop = bundle.get("crop_region") or region_for(self.region, au, ld.au_region)
        if self.backbone.endswith("_ft"):
            ft_path = ld.finetune_path(self.backbone, self.region, au, self.model)
            key: tuple = ("ft", str(ft_path))
            net = ld.ft_feature_net(ft_path)
        else:
            key = ("frozen", self.backbone, crop)
            net = ld.frozen_net(self.backbone, crop, bundle, self.model, au)
        unit = {"kind": "frame", "bundle": bundle, "crop_region": crop, "key": key, "net": net}
        if bundle.get("classifier") == "lstm" and bundle.get("estimator") is not None:
            unit["kind"] = "lstm"
            unit["lstm"] = _LSTMState(bundle["estimator"], ld.device)
        return unit

    def score(self, au: int, chunk: _Chunk) -> tuple[np.ndarray, np.ndarray]:
        """``(score, pred)`` of one AU on the chunk's valid frames."""
        u = self.units[au]
        if u["kind"] == "softmax":
            s = np.asarray(u["clf"].decision_function(chunk.crops(u["crop_region"], u["size"])), np.float64)
            return s, (s >= 0.5).astype(np.int8)
        net: _FeatureNet = u["net"]
        if u["key"] not in chunk._features:
            chunk._features[u["key"]] = net(chunk.crops(u["crop_region"], net.spec.input_size))
        X = chunk._features[u["key"]]
        if u["kind"] == "lstm":
            s = u["lstm"](X) if len(X) else np.zeros(0)
            return s, (s > 0.5).astype(np.int8)
        from .classifiers.jobs import predict_bundle

        score, pred = predict_bundle(u["bundle"], X)
        return np.asarray(score, np.float64), np.asarray(pred, np.int8)


class _Loader:
    """Finds and loads what a model needs from a results folder; caches backbones."""

    def __init__(self, models_dir: Path, finetune_dir: Path, results_dir: Path, split: str,
                 manifest: Mapping[str, Any], device: torch.device, batch_size: int):
        self.models_dir, self.finetune_dir, self.results_dir = models_dir, finetune_dir, results_dir
        self.split = split
        self.manifest = manifest
        self.au_region = {int(k): v for k, v in (manifest.get("au_region") or {}).items()} or None
        self.device, self.batch_size = device, batch_size
        self._nets: dict[tuple, _FeatureNet] = {}

    def finetune_path(self, backbone: str, region: str, au: int, model: str) -> Path:
        base = backbone[: -len("_ft")] if backbone.endswith("_ft") else backbone
        path = self.finetune_dir / f"{base}-{region}" / f"AU{au}.pt"
        if not path.is_file():
            raise PredictError(f"model {model}: fine-tuned network {path} does not exist (AU{au})")
        return path

    def frozen_net(self, backbone: str, crop: str, bundle: Mapping[str, Any], model: str, au: int) -> _FeatureNet:
        opts = dict(self.manifest.get("backbones", {}).get(backbone) or {})
        weights = str(opts.get("weights", "pretrained"))
        seed = int(opts.get("seed", 0))
        mean_image = None
        trained = bundle.get("feature_attrs") or {}
        if opts.get("mean_image"):
            mi = Path(Layout.of(self.results_dir).mean_image(self.split, backbone, crop))
            if not mi.is_file():
                raise PredictError(f"model {model}: backbone {backbone} subtracts the training mean image, but {mi} "
                                   "does not exist")
            want_mi = str(trained.get("mean_image_sha256") or "")
            if not want_mi:
                raise PredictError(f"model {model} AU{au} was trained on {backbone} features without the mean image, "
                                   f"but predictor.json says backbones.{backbone}.mean_image is set; rerun the "
                                   "workflow so that the model and the manifest agree")
            if want_mi != file_sha256(mi):
                raise PredictError(f"model {model} AU{au} was trained with another mean image than {mi}; rerun the "
                                   "workflow")
            mean_image = np.load(mi).astype(np.float32)
        elif trained.get("mean_image_sha256"):
            raise PredictError(f"model {model} AU{au} was trained on {backbone} features with the split's mean image "
                               f"subtracted, but predictor.json does not set backbones.{backbone}.mean_image")
        key = ("frozen", backbone, weights, seed, crop if mean_image is not None else "")
        if key not in self._nets:
            from .backbones import create_backbone

            net = create_backbone(backbone, weights, key_map=opts.get("key_map"), seed=seed)
            self._nets[key] = _FeatureNet(net, self.device, self.batch_size, mean_image)
        fnet = self._nets[key]
        want = str((bundle.get("feature_attrs") or {}).get("weights_sha256") or "")
        have = str(getattr(fnet.net, "weights_sha256", "") or "")
        if want and have and want != have:
            raise PredictError(
                f"model {model} AU{au} was trained on {backbone} features with weights sha256 {want}, but the "
                f"backbone built here ({weights}) has {have}; pass the same weights (predictor.json backbones)")
        return fnet

    def ft_feature_net(self, path: Path) -> _FeatureNet:
        key = ("ft", str(path))
        if key not in self._nets:
            from .finetune import load_finetuned

            net, _bundle = load_finetuned(path, "cpu")
            self._nets[key] = _FeatureNet(net.backbone, self.device, self.batch_size)
        return self._nets[key]


# ---------------------------------------------------------------------------------------------- the model
def resolve_models_dir(results: str | os.PathLike[str] | None, split: str | None,
                       model_dir: str | os.PathLike[str] | None) -> tuple[Path, Path, str]:
    """``(models_dir, results_dir, split)`` from ``--results/--split`` or ``--models results/models/<split>``."""
    if model_dir is not None:
        models_dir = Path(model_dir)
        if (models_dir / "ensemble.json").is_file() or list(models_dir.glob("AU*.joblib")):
            models_dir = models_dir.parent  # a model's own folder was given
        return models_dir, models_dir.parent.parent, split or models_dir.name
    if results is None or split is None:
        raise PredictError("name the trained models with --models results/models/<split>, or --results and --split")
    return Path(results) / "models" / split, Path(results), split


class Predictor:
    """A trained model or ensemble, ready to score aligned faces; built from a workflow's results folder."""

    def __init__(self, model: str, *, results: str | os.PathLike[str] | None = None, split: str | None = None,
                 model_dir: str | os.PathLike[str] | None = None, device: str = "auto", batch_size: int = 32,
                 aus: Sequence[int] | None = None):
        self.models_dir, self.results_dir, self.split = resolve_models_dir(results, split, model_dir)
        if not self.models_dir.is_dir():
            raise PredictError(f"models folder {self.models_dir} does not exist; run the workflow first")
        self.model = model
        self.device = resolve_device(device, what="predictor device")
        self.manifest = read_manifest(self.models_dir)
        self.face = face_settings(self.manifest, self.models_dir / MANIFEST)
        loader = _Loader(self.models_dir, self.results_dir / "finetune" / self.split, self.results_dir, self.split,
                         self.manifest, self.device, batch_size)
        self.ensemble: dict[str, Any] | None = None
        if model.startswith(ENSEMBLE_PREFIX):
            path = self.models_dir / model / "ensemble.json"
            if not path.is_file():
                raise PredictError(f"ensemble {model}: {path} does not exist; run the workflow first")
            self.ensemble = load_params(path)
            members = list(self.ensemble["members"])
            model_aus = sorted(int(a) for a in self.ensemble["aus"])
        else:
            parse_model_id(model)
            members = [model]
            model_aus = self._model_aus(model)
        self.aus = [a for a in model_aus if aus is None or a in set(aus)]
        if not self.aus:
            raise PredictError(f"model {model}: no AU to predict (model AUs {model_aus}, asked {list(aus or [])})")
        self.members = [_Member(m, self.aus, loader) for m in members]
        log.info("predictor %s (split %s): members %s, AUs %s, device %s", model, self.split, members, self.aus,
                 self.device)

    def _model_aus(self, model: str) -> list[int]:
        _bb, _region, clf = parse_model_id(model)
        if clf == "softmax":
            base = _bb[: -len("_ft")] if _bb.endswith("_ft") else _bb
            folder = self.results_dir / "finetune" / self.split / f"{base}-{_region}"
        else:
            folder = self.models_dir / model
        aus = sorted(int(p.stem[2:]) for p in folder.glob("AU*.*") if p.stem[2:].isdigit() and p.suffix in (".pt", ".joblib"))
        if not aus:
            raise PredictError(f"model {model}: no trained AU models in {folder}")
        return aus

    def score_chunk(self, chunk: _Chunk) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per AU, ``(score, pred)`` of the chunk's valid frames (the ensemble's when the model is one)."""
        out = {}
        for au in self.aus:
            parts = [m.score(au, chunk) for m in self.members]
            if self.ensemble is None:
                out[au] = parts[0]
            else:
                scores = np.column_stack([p[0] for p in parts]) if parts else np.zeros((0, 0))
                votes = np.column_stack([p[1] for p in parts]).astype(np.int8)
                out[au] = apply_au(self.ensemble, au, scores, votes)
        return out


# ------------------------------------------------------------------------------------------------ frames
def _chunks(source: str | os.PathLike[str], size: int) -> Iterator[list[tuple[int, str, np.ndarray]]]:
    buf: list[tuple[int, str, np.ndarray]] = []
    for item in iter_frames(source):
        buf.append(item)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def iter_predictions(input_path: str | os.PathLike[str], predictor: Predictor, *, chunk_size: int = 128,
                     progress: bool = True) -> Iterator[pd.DataFrame]:
    """Yield the per-frame table chunk by chunk (memory stays flat however long the video).

    Every frame goes through :func:`au_transfer.faces.pipeline.process_frame` with the run's face settings and a
    dlib landmarker, so the models see faces aligned, encoded and cut as the face store holds them.
    """
    from tqdm.auto import tqdm

    src = Path(input_path)
    if not src.exists():
        raise PredictError(f"input {src} does not exist")
    is_video = src.is_file() and src.suffix.lower() not in IMAGE_EXTENSIONS
    fps, total = (np.nan, None)
    if is_video:
        info = video_info(src)
        fps, total = (info.fps if info.fps > 0 else np.nan), (info.n_frames or None)
    settings = predictor.face
    landmarker = settings.landmarker()
    cols = au_columns(predictor.aus)
    bar = tqdm(total=total, desc=f"predict {src.name}", unit="frame", disable=not progress, mininterval=2.0)
    for frames in _chunks(src, chunk_size):
        n = len(frames)
        faces, boxes, ok, conf = [], [], np.zeros(n, bool), np.zeros(n)
        for i, (_no, _name, rgb) in enumerate(frames):
            face = process_frame(rgb, settings, landmarker)
            conf[i] = face.confidence
            if face.valid:
                ok[i] = True
                faces.append(face.image)
                boxes.append(face.boxes)
        table = pd.DataFrame({
            "frame": [fr[0] for fr in frames],
            "timestamp": [(fr[0] - 1) / fps if is_video and np.isfinite(fps) else np.nan for fr in frames],
            "success": ok.astype(np.int8), "confidence": np.round(conf, 4)})
        values = {c: np.full(n, np.nan) for c in cols}
        if ok.any():
            chunk = _Chunk(np.stack(faces), np.stack(boxes), settings.crop_aspect)
            for au, (score, pred) in predictor.score_chunk(chunk).items():
                values[f"AU{au:02d}_p"][ok] = score
                values[f"AU{au:02d}_c"][ok] = pred
        for c in cols:
            table[c] = values[c] if c.endswith("_p") else pd.array(values[c], dtype="Int8")
        table["file"] = [src.name if is_video else fr[1] for fr in frames]
        bar.update(n)
        yield table
    bar.close()


def predict(input_path: str | os.PathLike[str], model_dir: str | os.PathLike[str] | None = None, *, model: str,
            results: str | os.PathLike[str] | None = None, split: str | None = None, device: str = "auto",
            batch_size: int = 32, chunk_size: int = 128, aus: Sequence[int] | None = None,
            progress: bool = True) -> pd.DataFrame:
    """AU occurrence per frame of a video, an image or a folder of images, as an OpenFace-style DataFrame.

    ``model`` is a model id (``dlib_resnet-face-svm``) or an ensemble (``ens-paper3``); the trained files come from
    ``model_dir`` (``results/models/<split>``) or from ``results`` and ``split``.
    """
    predictor = Predictor(model, results=results, split=split, model_dir=model_dir, device=device,
                          batch_size=batch_size, aus=aus)
    parts = list(iter_predictions(input_path, predictor, chunk_size=chunk_size, progress=progress))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*BASE_COLUMNS, *au_columns(predictor.aus), "file"])


def predict_to_csv(input_path: str | os.PathLike[str], out_csv: str | os.PathLike[str], *, model: str,
                   model_dir: str | os.PathLike[str] | None = None, results: str | os.PathLike[str] | None = None,
                   split: str | None = None, device: str = "auto", batch_size: int = 32, chunk_size: int = 128,
                   aus: Sequence[int] | None = None, progress: bool = True) -> dict[str, int]:
    """Stream the per-frame table into ``out_csv`` (written atomically); returns ``{frames, faces}``."""
    predictor = Predictor(model, results=results, split=split, model_dir=model_dir, device=device,
                          batch_size=batch_size, aus=aus)
    n = faces = 0
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        for i, part in enumerate(iter_predictions(input_path, predictor, chunk_size=chunk_size, progress=progress)):
            part.to_csv(fh, header=i == 0, index=False, float_format="%.6g")
            n += len(part)
            faces += int(part["success"].sum())
        if n == 0:
            fh.write(",".join([*BASE_COLUMNS, *au_columns(predictor.aus), "file"]) + "\n")
    log.info("%s: %d frames, %d with a face -> %s", input_path, n, faces, out_csv)
    return {"frames": n, "faces": faces}
