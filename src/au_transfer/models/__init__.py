"""One interface for every per-AU model: frame classifiers (LDA, SVM), the LSTM, intensity regressors, fine-tuned
networks and ensembles (of classifiers or of regressors).

An :class:`AUModel` scores one AU. It declares what it reads per frame (:class:`Needs`: a backbone's features of a
crop region, a fine-tuned network's crops, or its members' scores), fits from inputs and labels, scores the next
frames of a sequence (sequence models carry their state until :meth:`AUModel.reset`), and saves and loads itself.
The kinds register by classifier name (:data:`MODEL_KINDS`), so the predictor and the workflow's jobs build any
model through :func:`model_kind` / :func:`load_au_model` and never branch on the kind.

Inputs (``X``) per kind, always in frame order, one array per sequence for :meth:`AUModel.fit`:
- ``features`` (LDA, SVM, LSTM): (T, D) float features of the model's backbone and crop region;
- ``crops`` (fine-tuned networks): (T, S, S, 3) uint8 crops of the model's region at its input size;
- ``members`` (ensembles): (T, M, 2) the members' score (``[..., 0]``) and 0/1 vote (``[..., 1]``).
``score`` returns ``(score, pred)``: higher score = more present, pred 0/1; a skipped AU (no positive or no negative
training frame) scores NaN with pred 0. ``*_med`` frame classifiers and regressors normalise their features by the
recording's median (person-specific normalisation; a running median in the predictor, :class:`RunningMedian`).

Modules: :mod:`.base` (the interface, the registry, the running median), :mod:`.features` (array-bundle models:
LDA/SVM, LSTM, regressors), :mod:`.finetuned`, :mod:`.ensembles`; loading by id here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import MODEL_KINDS, AUModel, AUModelError, Needs, RunningMedian, model_kind, register_kind
from .ensembles import EnsembleModel, IntensityEnsembleModel
from .features import FrameModel, LSTMModel, RegressorModel, model_from_bundle
from .finetuned import FinetunedModel

__all__ = ["MODEL_KINDS", "AUModel", "AUModelError", "EnsembleModel", "FinetunedModel", "FrameModel",
           "IntensityEnsembleModel", "LSTMModel", "Needs", "RegressorModel", "RunningMedian", "load_au_model",
           "model_file", "model_from_bundle", "model_kind", "register_kind"]


def model_file(layout: Any, split: str, model: str, au: int, *, intensity: bool = False) -> Path:
    """Where the trained model ``model`` (a model id or ``ens-{name}``) of one AU lives in a results folder
    (``layout``: :class:`au_transfer.layout.Layout`); ``intensity``: ``ens-{name}`` is a regressor ensemble. A
    results folder written before models were stored as arrays + JSON gives its pickle (``AU{au}.joblib``), which
    loads only when the user trusts it (:func:`au_transfer.persist.trust_legacy_pickles`)."""
    from ..config import parse_model_id
    from ..ensemble import ENSEMBLE_PREFIX
    from ..layout import FT_SUFFIX, LEGACY_MODEL_EXT

    if model.startswith(ENSEMBLE_PREFIX):
        return Path(layout.intensity_ensemble_params(split, model) if intensity else layout.ensemble_params(split, model))
    backbone, region, classifier = parse_model_id(model)
    if classifier == "softmax":
        return Path(layout.finetune_net(split, backbone.removesuffix(FT_SUFFIX), region, au))
    path = Path(layout.model_file(split, model, au))
    legacy = Path(layout.model_file(split, model, au, ext=LEGACY_MODEL_EXT))
    # results written before models were arrays + JSON: the pickle, which loads only when trusted
    return legacy if not path.is_file() and legacy.is_file() else path


def load_au_model(path: str | os.PathLike[str], model: str, au: int, *, intensity: bool = False,
                  **kwargs: Any) -> AUModel:
    """Load the model ``model`` (a model id or ``ens-{name}``; ``intensity``: a regressor ensemble) of one AU from
    its file."""
    from ..config import parse_model_id
    from ..ensemble import ENSEMBLE_PREFIX

    if model.startswith(ENSEMBLE_PREFIX):
        classifier = "intensity_ensemble" if intensity else "ensemble"
    else:
        classifier = parse_model_id(model)[2]
    path = Path(path)
    if not path.is_file():
        raise AUModelError(f"model {model} AU{au}: {path} does not exist; train it with the workflow")
    m = model_kind(classifier).load(path, au=au, model_id=model, **kwargs)
    m.model_id = model
    return m
