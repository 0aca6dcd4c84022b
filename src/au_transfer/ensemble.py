"""Classifier ensembles (paper VI): majority vote, plus F1-weighted voting and stacking beside it.

Every ensemble combines the per-frame predictions of its member models (``results/predictions/{split}/{model}.csv``:
``subject, frame, au, set, score, pred, label``) into a prediction table with exactly the same columns, so that an
ensemble is scored exactly like a model.

The combination is *fitted* on the validation rows only (``set == "val"``) and then *applied* to every row; test
rows never influence it. A test frame without a usable face (``face = 0``: every member predicts it absent) stays
predicted absent with an empty score, whatever the combination would say (a stacked one would otherwise score the
members' empty scores as their validation means). What is fitted depends on the method:

- ``majority``: nothing, except for the tie rule ``score``: a Platt calibration (logistic regression of the label on
  the score) per member and AU, so that members' scores (SVM margins, LDA scores, probabilities) are comparable.
- ``weighted``: each member's vote is weighted, per AU, by its F1 on the validation rows.
- ``stacked``: a logistic regression per AU on the members' standardised validation scores.

Tie rule (``majority`` and ``weighted``): a frame on which exactly half the (weighted) votes say "present" is
``absent`` (tie -> 0), ``present`` (tie -> 1) or decided by ``score``: the mean of the members' calibrated
probabilities, present when > 0.5 (a tie it cannot break, e.g. when a member could not be calibrated because its
validation rows hold one class only, counts as absent).

The fitted parameters are a JSON-able dict (:func:`fit_ensemble`) that :func:`apply_ensemble` uses both in the
workflow and in :mod:`au_transfer.predict` on new videos, where there are no labels.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import predictions
from .config import ConfigError
from .predictions import KEYS, prediction_rows

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("majority", "weighted", "stacked")
TIES: tuple[str, ...] = ("absent", "present", "score")
ENSEMBLE_PREFIX = "ens-"


class EnsembleError(ValueError):
    """Ensemble inputs are inconsistent; the message names the ensemble, member, subject, frame and AU."""


# --------------------------------------------------------------------------------------------------- inputs
def ensemble_id(name: str) -> str:
    """The model id of an ensemble: ``ens-{name}``."""
    return f"{ENSEMBLE_PREFIX}{name}"


def check_ensembles(ensembles: Mapping[str, Mapping[str, Any]], produced: Iterable[str]) -> None:
    """Check that every member of every configured ensemble is a model id that the config produces.

    Raises :class:`ConfigError` naming the ensemble and the unknown member id.
    """
    produced = set(produced)
    for name, spec in ensembles.items():
        members = list(spec.get("members", []))
        if len(members) < 2:
            raise ConfigError(f"ensembles.{name}.members: an ensemble needs at least 2 members, got {members}")
        if len(set(members)) != len(members):
            raise ConfigError(f"ensembles.{name}.members: a member is listed twice in {members}")
        for m in members:
            if m not in produced:
                raise ConfigError(
                    f"ensembles.{name}: member {m!r} is not a model that this configuration produces "
                    f"(produced: {sorted(produced) or 'none'})")


def fitted_on_validation(method: str = "majority", tie: str = "score") -> list[str]:
    """What an ensemble fits on the validation rows (module docstring): ``calibration`` (tie rule ``score``, not
    stacked), ``weights`` (weighted), ``stacking`` (stacked); empty for a majority vote with a fixed tie rule, whose
    validation predictions are as out of sample as its members'."""
    out = []
    if tie == "score" and method != "stacked":
        out.append("calibration")
    if method == "weighted":
        out.append("weights")
    if method == "stacked":
        out.append("stacking")
    return out


def read_predictions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read one prediction table and check its columns and values (:func:`au_transfer.predictions.read_predictions`),
    raising :class:`EnsembleError` naming the file."""
    return predictions.read_predictions(path, error=EnsembleError)


def check_predictions(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Validate a prediction table (:func:`au_transfer.predictions.check_predictions`), raising
    :class:`EnsembleError`; returns the normalised copy.

    An empty (NaN) score is allowed: the classifiers write it, with ``pred = 0``, for an AU that a model skipped
    (no positive training frame). Such a member votes "absent" and has no calibrated or stacked opinion.
    """
    return predictions.check_predictions(df, where, error=EnsembleError)


@dataclass
class Aligned:
    """Members' predictions aligned on (subject, frame, au, set): one row per frame and AU, one column per member."""

    members: list[str]
    keys: pd.DataFrame          # subject, frame, au, set, label (and face: 1, or 0 for a frame without a usable face)
    scores: np.ndarray          # (N, M) float64
    preds: np.ndarray           # (N, M) int8


def align(preds: Mapping[str, pd.DataFrame] | Sequence[pd.DataFrame], name: str = "ensemble") -> Aligned:
    """Align members' prediction tables on (subject, frame, au, set).

    A frame present in one member and missing from another is an error (never a silent drop), as is a label or a
    ``face`` flag that differs between members (every member sees the same face store).
    """
    if not isinstance(preds, Mapping):
        preds = {f"member{i}": p for i, p in enumerate(preds)}
    if len(preds) < 1:
        raise EnsembleError(f"ensemble {name}: no members")
    members = list(preds)
    tables = {m: check_predictions(df, f"ensemble {name}, member {m}").sort_values(list(KEYS), kind="stable")
              .reset_index(drop=True) for m, df in preds.items()}
    ref_name = members[0]
    ref = tables[ref_name]
    for m in members[1:]:
        t = tables[m]
        same = len(t) == len(ref) and all((t[k].to_numpy() == ref[k].to_numpy()).all() for k in KEYS)
        if not same:
            merged = ref[list(KEYS)].merge(t[list(KEYS)], how="outer", on=list(KEYS), indicator=True)
            for side, has, lacks in (("left_only", ref_name, m), ("right_only", m, ref_name)):
                rows = merged[merged["_merge"] == side]
                if len(rows):
                    r = rows.iloc[0]
                    raise EnsembleError(
                        f"ensemble {name}: member {lacks} has no prediction for subject {r.subject} frame {r.frame} "
                        f"AU{r.au} ({r.set}) that member {has} has ({len(rows)} such row(s)); members must predict "
                        f"the same frames")
        for col, what in (("label", "the label of"), ("face", "whether there is a usable face on")):
            diff = t[col].to_numpy() != ref[col].to_numpy()
            if diff.any():
                r = ref[diff].iloc[0]
                raise EnsembleError(f"ensemble {name}: members {ref_name} and {m} disagree on {what} subject "
                                    f"{r.subject} frame {r.frame} AU{r.au}" + (" (face column)" if col == "face" else ""))
    keys = ref[[*KEYS, "label", "face"]].copy()
    scores = np.column_stack([tables[m]["score"].to_numpy(dtype=np.float64) for m in members])
    votes = np.column_stack([tables[m]["pred"].to_numpy(dtype=np.int8) for m in members])
    return Aligned(members, keys, scores, votes)


# --------------------------------------------------------------------------------------------------- fitting
def _platt(score: np.ndarray, label: np.ndarray) -> list[float] | None:
    """Logistic calibration p = sigmoid(a * score + b) on validation rows; None when one class only."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(label)) < 2 or not np.isfinite(score).all():
        return None
    lr = LogisticRegression(C=1e4, solver="lbfgs", max_iter=1000)
    lr.fit(score.reshape(-1, 1), label)
    return [float(lr.coef_[0, 0]), float(lr.intercept_[0])]


def _f1(label: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(label, pred, zero_division=0))


def fit_ensemble(aligned: Aligned, *, name: str, method: str = "majority", tie: str = "score", C: float = 1.0,
                 class_weight: str | None = "balanced") -> dict[str, Any]:
    """Fit an ensemble's parameters on the validation rows of ``aligned`` only; returns a JSON-able dict."""
    if method not in METHODS:
        raise ConfigError(f"ensembles.{name}.method: {method!r} is not one of {list(METHODS)}")
    if tie not in TIES:
        raise ConfigError(f"ensembles.{name}.tie: {tie!r} is not one of {list(TIES)}")
    val = (aligned.keys["set"] == "val").to_numpy()
    params: dict[str, Any] = {"name": name, "id": ensemble_id(name), "method": method, "tie": tie,
                              "members": list(aligned.members), "aus": {}}
    if method == "stacked":
        params.update(C=C, class_weight=class_weight)
    aus = sorted(aligned.keys["au"].unique().tolist())
    for au in aus:
        rows = val & (aligned.keys["au"] == au).to_numpy()
        label = aligned.keys["label"].to_numpy()[rows]
        s, v = aligned.scores[rows], aligned.preds[rows]
        p: dict[str, Any] = {"n_val": int(rows.sum()), "n_val_pos": int(label.sum())}
        if rows.sum() == 0:
            log.warning("ensemble %s AU%d: no validation rows; nothing is fitted (weights equal, no calibration)",
                        name, au)
        if tie == "score" and method != "stacked":
            p["calibration"] = {m: (_platt(s[:, j], label) if rows.any() else None)
                                for j, m in enumerate(aligned.members)}
        if method == "weighted":
            w = [(_f1(label, v[:, j]) if rows.any() else 1.0) for j in range(len(aligned.members))]
            if sum(w) <= 0:
                log.warning("ensemble %s AU%d: every member has validation F1 0; equal weights", name, au)
                w = [1.0] * len(w)
            p["weights"] = dict(zip(aligned.members, w, strict=True))
        if method == "stacked":
            p["stack"] = _fit_stack(s, label, C=C, class_weight=class_weight, where=f"ensemble {name} AU{au}")
        params["aus"][str(au)] = p
    return params


def _fit_stack(scores: np.ndarray, label: np.ndarray, *, C: float, class_weight: str | None,
               where: str) -> dict[str, Any] | None:
    """Logistic regression on standardised member scores; None (majority fallback) when one class only."""
    from sklearn.linear_model import LogisticRegression

    if len(label) == 0 or len(np.unique(label)) < 2:
        log.warning("%s: validation rows hold one class only; stacking falls back to majority vote", where)
        return None
    finite = np.isfinite(scores)
    n = finite.sum(axis=0)
    mean = np.where(n > 0, np.where(finite, scores, 0).sum(axis=0) / np.maximum(n, 1), 0.0)
    std = np.sqrt(np.where(finite, (scores - mean) ** 2, 0).sum(axis=0) / np.maximum(n, 1))
    std[~(std > 0)] = 1.0
    lr = LogisticRegression(C=C, class_weight=class_weight, solver="lbfgs", max_iter=1000)
    lr.fit(_standardise(scores, mean, std), label)
    return {"mean": mean.tolist(), "std": std.tolist(), "coef": lr.coef_[0].tolist(),
            "intercept": float(lr.intercept_[0])}


# -------------------------------------------------------------------------------------------------- applying
def _standardise(scores: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(scores - mean) / std, with an empty score (skipped AU) at 0, the member's validation mean."""
    z = (scores - np.asarray(mean)) / np.asarray(std)
    return np.where(np.isfinite(z), z, 0.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))


def _calibrated_mean(p: Mapping[str, Any], members: Sequence[str], scores: np.ndarray,
                     votes: np.ndarray) -> np.ndarray:
    """Mean calibrated probability of "present"; an uncalibrated member contributes 0.5 (no opinion)."""
    cal = p.get("calibration") or {}
    probs = []
    for j, m in enumerate(members):
        ab = cal.get(m)
        prob = np.full(len(scores), 0.5) if ab is None else _sigmoid(ab[0] * scores[:, j] + ab[1])
        probs.append(np.where(np.isfinite(prob), prob, 0.5))
    return np.mean(probs, axis=0)


def apply_au(params: Mapping[str, Any], au: int, scores: np.ndarray, votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Combine members' (N, M) scores and 0/1 votes of one AU; returns (score, pred).

    ``score`` is the fraction of (weighted) votes for "present" (majority, weighted) or the stacked probability.
    """
    members = params["members"]
    if scores.shape[1] != len(members) or votes.shape[1] != len(members):
        raise EnsembleError(f"ensemble {params['name']}: got {scores.shape[1]} member columns, expected "
                            f"{len(members)} ({members})")
    p = params["aus"].get(str(au))
    if p is None:
        raise EnsembleError(f"ensemble {params['name']}: no fitted parameters for AU{au}")
    method, tie = params["method"], params["tie"]
    if method == "stacked" and p.get("stack"):
        st = p["stack"]
        z = _standardise(scores, st["mean"], st["std"])
        prob = _sigmoid(z @ np.asarray(st["coef"]) + st["intercept"])
        return prob, (prob >= 0.5).astype(np.int8)
    if method == "weighted":
        w = np.asarray([p["weights"][m] for m in members], dtype=np.float64)
    else:
        w = np.ones(len(members))
    frac = votes.astype(np.float64) @ w / w.sum()
    pred = (frac > 0.5).astype(np.int8)
    is_tie = np.isclose(frac, 0.5)
    if is_tie.any():
        if tie == "present":
            pred[is_tie] = 1
        elif tie == "score" and method != "stacked":
            mean = _calibrated_mean(p, members, scores[is_tie], votes[is_tie])
            pred[is_tie] = (mean > 0.5).astype(np.int8)
        else:  # absent, or a stacked AU that fell back to majority
            pred[is_tie] = 0
    return frac, pred


def apply_ensemble(params: Mapping[str, Any], aligned: Aligned) -> pd.DataFrame:
    """Apply fitted parameters to every row of ``aligned``; returns a prediction table (``PRED_COLUMNS``)."""
    if list(aligned.members) != list(params["members"]):
        raise EnsembleError(f"ensemble {params['name']}: members {aligned.members} differ from the fitted "
                            f"members {params['members']}")
    score = np.zeros(len(aligned.keys))
    pred = np.zeros(len(aligned.keys), dtype=np.int8)
    au_col = aligned.keys["au"].to_numpy()
    for au in np.unique(au_col):
        rows = au_col == au
        score[rows], pred[rows] = apply_au(params, int(au), aligned.scores[rows], aligned.preds[rows])
    k = aligned.keys
    face = k["face"].to_numpy() if "face" in k else np.ones(len(k), np.int8)
    score[face == 0], pred[face == 0] = np.nan, 0  # no usable face: predicted absent, as by every member
    return prediction_rows(k["subject"].to_numpy(), k["frame"].to_numpy(), k["au"].to_numpy(), k["set"].to_numpy(),
                           score, pred, k["label"].to_numpy(), face)


def combine(preds: Mapping[str, pd.DataFrame], *, name: str, method: str = "majority", tie: str = "score",
            C: float = 1.0, class_weight: str | None = "balanced") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Align members, fit on their validation rows, apply to all rows; returns (predictions, fitted params)."""
    aligned = align(preds, name=name)
    params = fit_ensemble(aligned, name=name, method=method, tie=tie, C=C, class_weight=class_weight)
    return apply_ensemble(params, aligned), params


def majority_vote(preds: Mapping[str, pd.DataFrame] | Sequence[pd.DataFrame], tie: str = "score") -> pd.DataFrame:
    """Majority vote of members' predictions (paper VI) with the given tie rule; returns a prediction table."""
    if not isinstance(preds, Mapping):
        preds = {f"member{i}": p for i, p in enumerate(preds)}
    out, _ = combine(preds, name="majority", method="majority", tie=tie)
    return out


# ------------------------------------------------------------------------------------------------------ files
def run_ensemble(member_files: Mapping[str, str | os.PathLike[str]], out_predictions: str | os.PathLike[str],
                 out_params: str | os.PathLike[str], *, name: str, method: str = "majority", tie: str = "score",
                 C: float = 1.0, class_weight: str | None = "balanced") -> pd.DataFrame:
    """Read members' prediction CSVs, combine them, write the ensemble's predictions and its fitted params."""
    from .io import write_csv_atomic, write_text_atomic

    preds = {m: read_predictions(p) for m, p in member_files.items()}
    out, params = combine(preds, name=name, method=method, tie=tie, C=C, class_weight=class_weight)
    test = out[out["set"] == "test"]
    log.info("ensemble %s (%s, tie=%s) of %s: %d rows, %d test rows", name, method, tie, list(member_files),
             len(out), len(test))
    write_csv_atomic(out, out_predictions)
    write_text_atomic(json.dumps(params, indent=1, sort_keys=True), out_params)
    return out


def load_params(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ensemble's fitted parameters (``ensemble.json``)."""
    path = Path(path)
    try:
        params = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EnsembleError(f"{path}: cannot read ensemble parameters ({exc}: empty or cut off?); delete it and rerun "
                            f"the workflow job that writes it (snakemake {path})") from exc
    for key in ("name", "method", "tie", "members", "aus"):
        if key not in params:
            raise EnsembleError(f"{path}: ensemble parameters lack key {key!r}")
    return params
