"""Ensembles as AU models: their input is the members' scores and votes."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import AUModel, AUModelError, Needs, register_kind


@register_kind("ensemble")
class EnsembleModel(AUModel):
    """A majority-vote (or weighted, or stacked) ensemble of member models for one AU (paper VI)."""

    kind = "ensemble"

    def __init__(self, params: Mapping[str, Any] | None = None, *, au: int = 0, model_id: str = "",
                 name: str = "", members: Sequence[str] = (), method: str = "majority", tie: str = "score",
                 C: float = 1.0, class_weight: str | None = "balanced", **_ignored: Any) -> None:
        self.params = copy.deepcopy(dict(params)) if params else None
        name = self.params["name"] if self.params else name
        super().__init__(au=au, model_id=model_id or f"ens-{name}")
        self.name = name
        self.members = tuple(self.params["members"]) if self.params else tuple(members)
        self.options = {"method": method, "tie": tie, "C": C, "class_weight": class_weight}

    @property
    def needs(self) -> Needs:
        return Needs("members", members=self.members)

    def fit(self, X, y, X_val=None, y_val=None) -> EnsembleModel:
        """Fit the combination on the validation sequences only (the members were fitted on the training ones)."""
        import pandas as pd

        from ..ensemble import Aligned, fit_ensemble

        Xv = np.concatenate(list(X_val)) if X_val else np.zeros((0, len(self.members), 2))
        yv = np.concatenate(list(y_val)) if y_val else np.zeros(0)
        self._check_members(Xv)
        keys = pd.DataFrame({"subject": "val", "frame": np.arange(len(Xv)), "au": self.au, "set": "val",
                             "label": yv.astype(int)})
        aligned = Aligned(list(self.members), keys, Xv[..., 0].astype(np.float64), Xv[..., 1].astype(np.int8))
        self.params = fit_ensemble(aligned, name=self.name, **self.options)
        return self

    def _check_members(self, X: np.ndarray) -> None:
        if X.ndim != 3 or X.shape[1:] != (len(self.members), 2):
            raise AUModelError(f"{self._where()}: got member inputs of shape {X.shape}, expected (frames, "
                               f"{len(self.members)}, 2) for members {list(self.members)}")

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from ..ensemble import apply_au

        if self.params is None:
            raise AUModelError(f"{self._where()}: not fitted")
        X = np.asarray(X, dtype=np.float64)
        self._check_members(X)
        s, p = apply_au(self.params, self.au, X[..., 0], X[..., 1].astype(np.int8))
        return np.asarray(s, np.float64), np.asarray(p, np.int8)

    def save(self, path: str | os.PathLike[str]) -> None:
        import json

        from ..io import write_text_atomic

        write_text_atomic(json.dumps(self.params, indent=1, sort_keys=True), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> EnsembleModel:
        from ..ensemble import load_params

        return cls(load_params(path), **kwargs)



@register_kind("intensity_ensemble")
class IntensityEnsembleModel(AUModel):
    """An ensemble of intensity regressors for one AU (``regressors.ensembles``, docs/intensity.md): the ``mean`` of
    the members' intensities or their ``weighted`` mean, per-AU weights = the members' ICC on the validation frames.
    Input: the members' (intensity, vote) as for any ensemble; score = the combined intensity (a skipped member,
    NaN, does not count), pred = intensity >= the run's threshold (without a recorded threshold: the members'
    majority vote). Saved as the workflow's ``results/intensity/ensembles/{split}/ens-{name}.json``."""

    kind = "intensity_ensemble"

    def __init__(self, params: Mapping[str, Any] | None = None, *, au: int = 0, model_id: str = "", name: str = "",
                 members: Sequence[str] = (), method: str = "mean", threshold: int | None = None,
                 **_ignored: Any) -> None:
        self.params: dict[str, Any] = copy.deepcopy(dict(params)) if params else {
            "name": name, "method": method, "members": list(members), "weights": {}, "threshold": threshold}
        if self.params.get("threshold") is None:
            self.params["threshold"] = threshold
        super().__init__(au=au, model_id=model_id or f"ens-{self.params['name']}")
        self.members = tuple(self.params["members"])

    @property
    def needs(self) -> Needs:
        return Needs("members", members=self.members)

    def _check_members(self, X: np.ndarray) -> None:
        if X.ndim != 3 or X.shape[1:] != (len(self.members), 2):
            raise AUModelError(f"{self._where()}: got member inputs of shape {X.shape}, expected (frames, "
                               f"{len(self.members)}, 2) for members {list(self.members)}")

    def fit(self, X, y, X_val=None, y_val=None) -> IntensityEnsembleModel:
        """Weights from the validation sequences only (the members were fitted on the training ones)."""
        from ..intensity.tables import ensemble_weights

        Xv = np.concatenate(list(X_val)) if X_val else np.zeros((0, len(self.members), 2))
        yv = np.concatenate(list(y_val)).astype(np.float64) if y_val else np.zeros(0)
        self._check_members(Xv)
        w = ensemble_weights(Xv[..., 0].astype(np.float64), yv, str(self.params["method"]))
        self.params["weights"][str(self.au)] = [float(x) for x in w]
        return self

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from ..intensity.tables import combine_intensity

        w = self.params["weights"].get(str(self.au))
        if w is None:
            raise AUModelError(f"{self._where()}: no weights for AU{self.au} (its members share no predicted frame "
                               f"of this AU); the ensemble has AUs {sorted(self.params['weights'], key=int)}")
        X = np.asarray(X, dtype=np.float64)
        self._check_members(X)
        value = combine_intensity(X[..., 0], w)
        threshold = self.params.get("threshold")
        if threshold is None:
            voting = ~np.isnan(X[..., 0])
            pred = 2 * (X[..., 1] * voting).sum(axis=1) > voting.sum(axis=1)
        else:
            pred = np.nan_to_num(value, nan=-1.0) >= float(threshold)
        return value, np.asarray(pred, np.int8)

    def save(self, path: str | os.PathLike[str]) -> None:
        import json

        from ..io import write_text_atomic

        write_text_atomic(json.dumps(self.params, indent=1), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> IntensityEnsembleModel:
        import json

        try:
            params = json.loads(Path(path).read_text())
            missing = {"members", "method", "weights"} - set(params)
        except (OSError, ValueError) as exc:
            raise AUModelError(f"{path}: cannot read the regressor ensemble: {exc}") from None
        if missing:
            raise AUModelError(f"{path}: not a regressor ensemble (no {sorted(missing)})")
        return cls(params, **kwargs)
