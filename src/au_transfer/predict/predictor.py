"""A trained model or ensemble of a workflow's results folder, ready to score aligned faces.

Every model is an :class:`~au_transfer.models.AUModel` loaded by kind from its file; the predictor builds what each
model's :class:`~au_transfer.models.Needs` ask for (:class:`~au_transfer.predict.inputs.Inputs`) and never branches
on the kind. An ensemble's members are models too: its input is their scores and votes. Sequence models (the LSTM)
carry their state per face track, from chunk to chunk (a track is a face of one input: each input starts afresh).

The face front end runs in ``workers`` processes (or threads), each reading one input: several inputs are read side
by side (:func:`au_transfer.predict.batch.predict_many`) while the networks, loaded once, score them all.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..device import resolve_device
from ..ensemble import ENSEMBLE_PREFIX
from ..layout import FT_SUFFIX, LEGACY_MODEL_EXT, Layout
from ..models import AUModel, AUModelError, model_file
from .face_worker import FaceWorker, FaceWorkerError
from .faces import FrameFaces, FrameReader
from .inputs import FaceChunk, Inputs
from .manifest import MANIFEST, PredictError, face_settings, read_manifest

log = logging.getLogger(__name__)

DEMO_CORPUS = "synthetic demo corpus"
#: where the predictor's face front end runs: ``process`` (a worker process: no GIL shared with the networks; the
#: default on POSIX), ``thread`` (a thread of this process), ``auto``
FRONT_ENDS = ("auto", "process", "thread")


@dataclass
class _Node:
    """A loaded model of one AU and, for an ensemble, its members' nodes."""

    model: AUModel
    members: list[_Node] = field(default_factory=list)

    def fresh(self) -> _Node:
        """A copy with its own sequence state (the fitted parameters are shared)."""
        m = copy.copy(self.model)
        m.reset()
        return _Node(m, [c.fresh() for c in self.members])


def resolve_models_dir(results: str | os.PathLike[str] | None, split: str | None,
                       model_dir: str | os.PathLike[str] | None) -> tuple[Path, Path, str]:
    """``(models_dir, results_dir, split)`` from ``--results/--split`` or ``--models results/models/<split>``."""
    if model_dir is not None:
        models_dir = Path(model_dir)
        if (models_dir / "ensemble.json").is_file() or list(models_dir.glob(Layout.model_pattern())):
            models_dir = models_dir.parent  # a model's own folder was given
        return models_dir, models_dir.parent.parent, split or models_dir.name
    if results is None or split is None:
        raise PredictError("name the trained models with --models results/models/<split>, or --results and --split")
    return Path(Layout.of(results).split_models(split)), Path(results), split


def default_split(results: str | os.PathLike[str]) -> str:
    """The split to predict with: the only trained one, or the report's (its headline) when there are several."""
    results = Path(results)
    splits = sorted(p.parent.name for p in Path(Layout.of(results).models_root()).glob(f"*/{MANIFEST}"))
    if not splits:
        raise PredictError(f"{results}: no trained split (no models/*/{MANIFEST}); run the workflow first, or name "
                           "the results folder with --results")
    if len(splits) == 1:
        return splits[0]
    head = results / "report" / "headline.csv"
    if head.is_file():
        split = str(pd.read_csv(head, nrows=1)["split"].iloc[0])
        if split in splits:
            return split
    raise PredictError(f"{results}: several trained splits {splits}; choose one with --split")


def in_sample_models(results: str | os.PathLike[str], split: str) -> dict[str, str]:
    """Models of a split whose **validation** predictions are in sample (fitted on those rows), with the reason:
    those that ``predictor.json`` lists (``val_in_sample``: :func:`au_transfer.plan.validation_in_sample` of the
    run's config) and every ensemble whose ``ensemble.json`` fits calibration, weights or stacking on the
    validation rows (:func:`au_transfer.ensemble.fitted_on_validation`; also for manifests of older versions)."""
    from ..ensemble import fitted_on_validation, load_params

    layout = Layout.of(results)
    path = Path(layout.split_models(split)) / MANIFEST
    out = dict(read_manifest(path.parent).get("val_in_sample") or {}) if path.is_file() else {}
    for params in sorted(Path(layout.split_models(split)).glob(f"{ENSEMBLE_PREFIX}*/ensemble.json")):
        model = params.parent.name
        fitted = fitted_on_validation(**{k: v for k, v in load_params(params).items() if k in ("method", "tie")})
        if fitted and model not in out:
            out[model] = f"fits its {' and '.join(fitted)} on the validation rows"
    return out


def validation_ranking(results: str | os.PathLike[str], split: str) -> pd.DataFrame:
    """Models of a split ranked by their mean F1 over AUs on the **validation** frames (never test), best first;
    columns ``model, val_f1, n_aus, in_sample`` (why its validation predictions are in sample, :func:`in_sample_models`;
    empty when they are out of sample: only those rankings mean anything)."""
    from sklearn.metrics import f1_score

    inside = in_sample_models(results, split)
    rows = []
    for path in sorted(Path(Layout.of(results).split_predictions(split)).glob("*.csv")):
        if path.stem == "always_present":
            continue
        pred = pd.read_csv(path, usecols=["au", "set", "pred", "label"])
        val = pred[pred["set"] == "val"]
        if val.empty:
            continue
        f1 = [f1_score(g["label"], g["pred"], zero_division=0) for _, g in val.groupby("au")]
        rows.append({"model": path.stem, "val_f1": float(np.mean(f1)), "n_aus": len(f1),
                     "in_sample": inside.get(path.stem, "")})
    out = pd.DataFrame(rows, columns=["model", "val_f1", "n_aus", "in_sample"])
    return out.sort_values(["val_f1", "model"], ascending=[False, True], kind="stable").reset_index(drop=True)


def default_model(results: str | os.PathLike[str], split: str) -> tuple[str, float]:
    """The model that did best on validation (:func:`validation_ranking`) among those whose trained files are in
    the results folder and whose validation predictions are **out of sample** (never an ensemble that fitted its
    calibration, weights or stacking on those rows, nor a model refitted on them), with its validation F1."""
    layout = Layout.of(results)
    aus = [int(a) for a in read_manifest(Path(layout.split_models(split))).get("aus") or []]
    ranking = validation_ranking(results, split)
    skipped = []
    for r in ranking.itertuples(index=False):
        if not any(model_file(layout, split, str(r.model), au).is_file() for au in aus):
            continue
        if r.in_sample:
            skipped.append(str(r.model))
            continue
        if skipped:
            log.info("default model: not ranked, their validation predictions are in sample: %s",
                     ", ".join(skipped))
        return str(r.model), float(r.val_f1)
    why = f" (in sample on validation, not ranked: {', '.join(skipped)})" if skipped else ""
    raise PredictError(f"{results}: split {split} has no trained model with out-of-sample validation "
                       f"predictions{why}; name one with --model")


def default_regressor(results: str | os.PathLike[str], split: str) -> str | None:
    """The intensity regressor with the best mean ICC on the **validation** frames among those with trained files,
    or None when the run trained no regressor. Regressor ensembles run only when named (``--regressor ens-...``): a
    weighted one's weights were fitted on those validation frames, so its validation ICC is no fair choice."""
    from ..intensity.metrics import icc31

    layout = Layout.of(results)
    best: tuple[float, str] | None = None
    for path in sorted(Path(layout.intensity_predictions(split, "x")).parent.glob("*.csv")):
        val = pd.read_csv(path, usecols=["au", "set", "value", "label"]).query("set == 'val'")
        folder = Path(layout.model_dir(split, path.stem))
        if val.empty or path.stem.startswith("ens-") or not (any(folder.glob(Layout.model_pattern())) or any(
                folder.glob(Layout.model_pattern(LEGACY_MODEL_EXT)))):
            continue
        icc = float(np.nanmean([icc31(g["value"].fillna(0.0), g["label"]) for _, g in val.groupby("au")]))
        if best is None or icc > best[0]:
            best = (icc, path.stem)
    return None if best is None else best[1]


def trained_models(layout: Layout, split: str) -> list[str]:
    """The model ids with trained files in a split: per-AU model folders, ensembles, fine-tuned networks."""
    models_dir = Path(layout.split_models(split))
    found = {p.name for p in models_dir.iterdir() if p.is_dir() and (
        any(p.glob(Layout.model_pattern())) or any(p.glob(Layout.model_pattern(LEGACY_MODEL_EXT)))
        or (p / "ensemble.json").is_file())} if models_dir.is_dir() else set()
    ft_root = Path(layout.finetune_dir(split, "x", "y")).parent
    if ft_root.is_dir():
        for d in ft_root.iterdir():
            backbone, _, region = d.name.partition("-")
            if d.is_dir() and region and any(d.glob("AU*.pt")):
                found.add(f"{backbone}{FT_SUFFIX}-{region}-softmax")
    return sorted(found)


class Predictor:
    """A trained model or ensemble, ready to score aligned faces; built from a workflow's results folder."""

    def __init__(self, model: str, *, results: str | os.PathLike[str] | None = None, split: str | None = None,
                 model_dir: str | os.PathLike[str] | None = None, device: str = "auto", batch_size: int = 32,
                 aus: Sequence[int] | None = None, detector: str | None = None, regressor: str | None = "auto",
                 front_end: str = "auto", workers: int = 1):
        if front_end not in FRONT_ENDS:
            raise PredictError(f"front_end must be one of {FRONT_ENDS}, not {front_end!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise PredictError(f"workers must be an integer >= 1 (face front ends side by side), not {workers!r}")
        #: face front ends that read inputs side by side (slots of :meth:`read_frames`)
        self.workers = workers
        self._workers: dict[int, FaceWorker] = {}
        self._sources: dict[int, Any] = {}
        self.front_end = ("process" if os.name == "posix" else "thread") if front_end == "auto" else front_end
        self._worker: FaceWorker | None = None
        self._reader: FrameReader | None = None
        self._landmarker: Future | None = None
        self.models_dir, self.results_dir, self.split = resolve_models_dir(results, split, model_dir)
        if not self.models_dir.is_dir():
            raise PredictError(f"models folder {self.models_dir} does not exist; run the workflow first")
        self.model = model
        self.device = resolve_device(device, what="predictor device")
        self.manifest = read_manifest(self.models_dir)
        self.face = face_settings(self.manifest, self.models_dir / MANIFEST)
        if detector is not None:  # --detector hog | cnn at predict time
            self.face = self.face.replace(landmarks={"hog": "dlib", "cnn": "dlib_cnn"}.get(detector, detector))
        # dlib's detector and shape predictor load in the front end's process (or a thread) while the models and
        # networks load here
        if self.front_end == "process":
            try:
                self._worker = self._workers[0] = FaceWorker(self.face)
            except FaceWorkerError as exc:
                if front_end != "auto":
                    raise PredictError(str(exc)) from exc
                log.warning("%s; finding faces in a thread instead", exc)
                self.front_end = "thread"
        if self.front_end == "thread":
            self._load_landmarker()
            # one landmarker in this process, not shared between threads: inputs side by side need processes
            self.workers = 1
        try:
            self._load_models(model, aus, regressor, batch_size)
        except BaseException:
            self.close()
            raise

    def _load_models(self, model: str, aus: Sequence[int] | None, regressor: str | None, batch_size: int) -> None:
        self.corpus = str(self.manifest.get("corpus") or "")
        if self.corpus == DEMO_CORPUS:
            log.warning("model %s was trained on the synthetic demo corpus: its scores say nothing about real faces",
                        model)
        self.layout = Layout.of(self.results_dir)
        self.inputs = Inputs(self.layout, self.split, self.manifest, self.device, batch_size)
        self._kw = {"device": str(self.device), "batch_size": batch_size}
        candidates = [int(a) for a in self.manifest.get("aus") or []] or list(range(1, 65))
        model_aus = [a for a in candidates if self._path(model, a).is_file()]
        if not model_aus:
            raise PredictError(f"model {model}: no trained AU models under {self.results_dir} (split {self.split}; "
                               f"e.g. {self._path(model, candidates[0])} does not exist); {self._known()}")
        unknown = sorted(set(aus or []) - set(model_aus))
        if unknown:
            raise PredictError(f"--aus: model {model} does not predict AU(s) {unknown} (its AUs: {model_aus})")
        self.aus = [a for a in model_aus if aus is None or a in set(aus)]
        #: ``(region, size)`` of every crop the models read (cut per face by the reader thread)
        self.crops: set[tuple[str, int]] = set()
        self._loaded: set[Path] = set()  # every model file loaded (:meth:`files`)
        self._trees = {au: self._load(model, au) for au in self.aus}
        self._tracks: dict[int, dict[int, _Node]] = {}
        # intensity (AUxx_r): "auto" = the best regressor on validation, when the run trained regressors
        self.regressor = default_regressor(self.results_dir, self.split) if regressor == "auto" else regressor
        self.reg_aus = [a for a in self.aus if self.regressor and self._has_regressor(self.regressor, a)]
        if regressor not in (None, "auto") and not self.reg_aus:
            raise PredictError(f"--regressor {regressor}: no trained AU models of it under {self.results_dir} "
                               f"(split {self.split}) for AUs {self.aus}")
        self._reg_trees = {au: self._load(str(self.regressor), au, intensity=True) for au in self.reg_aus}
        self._reg_tracks: dict[int, dict[int, _Node]] = {}
        log.info("predictor %s (split %s): AUs %s, device %s", model, self.split, self.aus, self.device)

    def _load_landmarker(self) -> Future:
        if self._landmarker is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="au-transfer-landmarker")
            self._landmarker = pool.submit(self.face.landmarker)
            pool.shutdown(wait=False)
        return self._landmarker

    def landmarker(self) -> Any:
        """The run's dlib detector and shape predictor (:meth:`FaceSettings.landmarker`) in this process, loaded
        once (with ``front_end="process"`` on first call: the worker process has its own)."""
        return self._load_landmarker().result()

    def start_workers(self, n: int | None = None) -> None:
        """Start the front-end processes of slots ``0 .. n-1`` (default :attr:`workers`) now, so that they load
        dlib's models side by side before the first inputs (with the thread front end: nothing to start)."""
        if self.front_end == "process":
            for slot in range(min(self.workers, n or self.workers)):
                if slot not in self._workers:
                    self._workers[slot] = FaceWorker(self.face)

    def read_frames(self, src: str | os.PathLike[str], *, largest_only: bool, detect_every: int, video: bool,
                    ahead: int = 64, on_frame: Any = None, every: int = 1, fps: float | None = None,
                    slot: int = 0) -> Iterator[FrameFaces]:
        """The faces of every (sampled: ``every``, ``fps``) frame of ``src`` with the crops the models read, found
        ahead of the networks by front end ``slot`` (< :attr:`workers`: :mod:`~au_transfer.predict.face_worker`'s
        process, or :class:`FrameReader`'s thread); inputs of different slots are read side by side."""
        if not 0 <= slot < self.workers:
            raise PredictError(f"front-end slot {slot} of {self.workers}")
        kw = {"largest_only": largest_only, "detect_every": detect_every, "video": video, "ahead": ahead,
              "on_frame": on_frame, "crops": self.crops, "every": every, "fps": fps}
        if self.front_end == "process":
            self.start_workers(slot + 1)
            self._sources[slot] = self._workers[slot]
            return self._workers[slot].frames(src, **kw)
        self._reader = self._sources[slot] = FrameReader(Path(src), self.face, self.landmarker, **kw)
        return iter(self._reader)

    def detections_of(self, slot: int = 0) -> int:
        """Face detections run on the last input read by front end ``slot``."""
        source = self._sources.get(slot)
        return 0 if source is None else int(source.detections)

    @property
    def detections(self) -> int:
        """Face detections run on the last input read (frames between them follow faces from their landmarks)."""
        return self.detections_of(0)

    def forget(self, stream: Any) -> None:
        """Drop the sequence state of the face tracks of one input (its tracks are ``(stream, face)``)."""
        for tracks in (self._tracks, self._reg_tracks):
            for key in [k for k in tracks if isinstance(k, tuple) and k[0] == stream]:
                del tracks[key]

    def files(self) -> list[Path]:
        """The trained files this predictor read: its manifest, every model's file (ensemble members and
        regressors included) and the fine-tuned networks they run (resume compares their sizes and times)."""
        out = {self.models_dir / MANIFEST}

        def walk(node: _Node) -> None:
            if getattr(node.model, "path", None):
                out.add(Path(node.model.path))
            if node.model.needs.network:
                out.add(Path(node.model.needs.network))
            for member in node.members:
                walk(member)

        for trees in (self._trees, self._reg_trees):
            for node in trees.values():
                walk(node)
        out.update(self._loaded)
        return sorted(p for p in out if p.is_file())

    def close(self) -> None:
        """End the front end's worker processes (also done when the predictor is garbage-collected; a later input
        starts a new one)."""
        for worker in self._workers.values():
            worker.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _path(self, model: str, au: int, intensity: bool = False) -> Path:
        try:
            return model_file(self.layout, self.split, model, au, intensity=intensity)
        except ValueError as exc:
            raise PredictError(f"--{'regressor' if intensity else 'model'}: {exc}; {self._known()}") from None

    def _known(self) -> str:
        """The models that exist, for an error about one that does not."""
        known = trained_models(self.layout, self.split)
        return f"the trained models of split {self.split} are: {', '.join(known)}" if known else (
            f"split {self.split} has no trained models; run the workflow first")

    def _has_regressor(self, model: str, au: int) -> bool:
        """Whether the regressor (or regressor ensemble: its file has the AU's weights and its members' files
        exist) predicts ``au``."""
        path = self._path(model, au, intensity=True)
        if not path.is_file() or not model.startswith(ENSEMBLE_PREFIX):
            return path.is_file()
        params = json.loads(path.read_text())
        return str(au) in params.get("weights", {}) and all(self._path(m, au).is_file() for m in params["members"])

    def _load(self, model: str, au: int, intensity: bool = False) -> _Node:
        """``intensity``: ``ens-...`` is a regressor ensemble (its members are regressors)."""
        extra = {"intensity": True, "threshold": self.manifest.get("threshold")} if intensity else {}
        self._loaded.add(self._path(model, au, intensity))
        try:
            m = self.inputs.load_model(self._path(model, au, intensity), model, au, **self._kw, **extra)
        except AUModelError as exc:
            raise PredictError(str(exc)) from None
        crop = self.inputs.check(m.needs, model, au)
        if crop is not None:
            self.crops.add(crop)
        return _Node(m, [self._load(member, au) for member in m.needs.members])

    def _score(self, node: _Node, chunk: FaceChunk) -> tuple[np.ndarray, np.ndarray]:
        m = node.model
        if node.members:
            parts = [self._score(c, chunk) for c in node.members]
            X = np.stack([np.column_stack([p[0] for p in parts]), np.column_stack([p[1] for p in parts])], axis=-1)
        else:
            X = self.inputs(m.needs, m.model_id, m.au, chunk)
        return m.score(X)

    def score_chunk(self, chunk: FaceChunk, track: int = 0) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per AU, ``(score, pred)`` of the chunk's faces, which continue face track ``track``'s sequence."""
        trees = self._tracks.get(track)
        if trees is None:
            trees = self._tracks[track] = {au: t.fresh() for au, t in self._trees.items()}
        out = {}
        for au, node in trees.items():
            s, p = self._score(node, chunk)
            out[au] = (np.asarray(s, np.float64), np.asarray(p, np.int8))
        return out

    def score_intensity(self, chunk: FaceChunk, track: int = 0) -> dict[int, np.ndarray]:
        """Per AU of :attr:`reg_aus`, the regressor's intensity (0..5) of the chunk's faces (state per track: a
        median-normalised regressor's running median)."""
        trees = self._reg_tracks.get(track)
        if trees is None:
            trees = self._reg_tracks[track] = {au: t.fresh() for au, t in self._reg_trees.items()}
        return {au: np.asarray(self._score(node, chunk)[0], np.float64) for au, node in trees.items()}
