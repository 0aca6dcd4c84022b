"""Evaluation protocol (paper VII): per-AU F1 of the positive class and classification rate on the test frames.

- Metrics use the ``set == "test"`` rows of a predictions table only: every labelled test frame, those without a
  usable face (``face = 0``, predicted absent) included by default; ``invalid_frames = "exclude"``
  (``evaluation.invalid_frames``) scores the frames with a face only. Validation rows are never scored here.
- Coverage: every row also says how many labelled test frames there are (``n_labelled``) and how many of them have
  a usable face (``n_face``), whichever frames are scored (``n_pos + n_neg``), and which rule was used
  (``invalid_frames``).
- Mean rows say what they average (:data:`MEAN_SETS`): ``mean`` is the mean over every evaluated AU (the
  configured ones); ``mean12`` the mean over DISFA's 12 AUs and ``mean8`` over the 8 of the standard protocol
  (1, 2, 4, 6, 9, 12, 25, 26), each written only when all of its AUs are evaluated (an 8-AU run has ``mean`` and
  ``mean8``, never a ``mean12``). Mean rows carry the summed ``n_pos`` and ``n_neg``.
- k-fold protocol: splits named ``<prefix>fold<k>`` (``fold1``, ``fold2``, ``fold3``) with the same prefix form a
  group; :func:`fold_means` adds ``split = "<prefix><K>fold_mean"`` rows (e.g. ``3fold_mean``) holding, per model
  and AU, the mean F1 and accuracy over the folds (the model must exist in every fold) and the summed counts.
- The trivial baseline ``always_present`` predicts "present" on every test frame: :func:`always_present`.
- A mean over AUs leaves out an AU whose metric is NaN (e.g. an empty cell of a metrics table, an ICC without
  variance) and says so: a warning naming the model, split and AUs (:func:`nan_aus`), and in the summary the
  column ``nan_aus`` of each mean row (:data:`NAN_AUS`: the AUs left out of that mean, space-separated; empty when
  none; :func:`add_nan_aus`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import DISFA_AUS, STANDARD_AUS, predictions
from .predictions import INVALID_FRAMES, PRED_COLUMNS

__all__ = ["BASELINE", "COVERAGE_COLUMNS", "FOLD_RE", "INVALID_FRAMES", "MEAN_ROWS", "MEAN_SETS", "METRIC_COLUMNS",
           "NAN_AUS", "PRED_COLUMNS", "SEED_COLUMNS", "EvaluationError", "add_nan_aus", "always_present",
           "au_metrics", "check_predictions", "fold_groups", "fold_means", "headline", "merge_predictions", "nan_aus",
           "over_seeds", "summarize"]

log = logging.getLogger(__name__)

#: Coverage of a metrics row: labelled test frames, of which with a usable face, and the rule for the others.
COVERAGE_COLUMNS: list[str] = ["n_labelled", "n_face", "invalid_frames"]
METRIC_COLUMNS: list[str] = ["model", "split", "au", "f1", "accuracy", "n_pos", "n_neg", *COVERAGE_COLUMNS]
BASELINE = "always_present"
#: The named AU sets that get a mean row when every one of their AUs is evaluated (``mean``: all evaluated AUs).
MEAN_SETS: dict[str, tuple[int, ...]] = {"mean12": tuple(DISFA_AUS), "mean8": tuple(STANDARD_AUS)}
MEAN_ROWS: tuple[str, ...] = ("mean", *MEAN_SETS)
FOLD_RE = re.compile(r"^(?P<prefix>.*?)fold(?P<k>\d+)$")
#: Summary column of a mean row: the AUs whose metric is NaN, left out of that mean ("" when none).
NAN_AUS = "nan_aus"


class EvaluationError(ValueError):
    """A predictions table cannot be scored; the message says which file/model and why."""


def check_predictions(pred: pd.DataFrame, name: str = "predictions") -> pd.DataFrame:
    """Check a predictions table (:func:`au_transfer.predictions.check_predictions`: columns, 0/1 pred and label,
    finite or empty score, set val or test, no duplicate (subject, frame, au, set) row), raising
    :class:`EvaluationError`; returns the checked, normalised copy."""
    return predictions.check_predictions(pred, name, error=EvaluationError)


def rows_to_score(pred: pd.DataFrame, aus: Sequence[int] | None, name: str,
                  error: type[Exception] = EvaluationError, invalid_frames: str = "absent"
                  ) -> list[tuple[int, pd.DataFrame, dict[str, int]]]:
    """The test rows of each AU to score, with the AU's coverage ``{n_labelled, n_face}``: ``aus`` (an AU without
    test rows is an ``error`` naming ``name``) or, by default, every AU present. ``invalid_frames``: ``absent``
    scores every labelled test frame (a frame without a usable face, ``face = 0``, as the table predicts it:
    absent), ``exclude`` only those with a face. Shared by occurrence (:func:`au_metrics`) and intensity metrics."""
    predictions.check_invalid_frames(invalid_frames, error=error)
    test = pred[pred["set"] == "test"]
    if test.empty:
        raise error(f"{name}: no test rows to score")
    present = sorted(int(a) for a in test["au"].unique())
    aus = present if aus is None else [int(a) for a in aus]
    missing = sorted(set(aus) - set(present))
    if missing:
        raise error(f"{name}: no test rows for AU(s) {missing}")
    out = []
    for au in aus:
        t = test[test["au"] == au]
        face = t["face"].to_numpy() == 1 if "face" in t.columns else np.ones(len(t), bool)
        out.append((au, t[face] if invalid_frames == "exclude" else t,
                    {"n_labelled": int(len(t)), "n_face": int(face.sum())}))
    return out


def au_metrics(pred: pd.DataFrame, model: str = "", split: str = "", aus: Sequence[int] | None = None,
               name: str = "predictions", invalid_frames: str = "absent") -> pd.DataFrame:
    """Per-AU F1 and accuracy on the test rows, plus the mean rows (``mean``, and ``mean12`` / ``mean8`` when all of
    their AUs are evaluated; columns ``METRIC_COLUMNS``).

    ``aus`` fixes the AUs to report (an AU absent from the test rows is an error); by default every AU present.
    ``invalid_frames`` (``evaluation.invalid_frames``): ``absent`` scores every labelled test frame, a frame without
    a usable face as the table predicts it (absent); ``exclude`` scores the frames with a face only. Every row
    carries its coverage (``n_labelled``, ``n_face``) and the rule (``invalid_frames``).
    """
    # imported here: scikit-learn (and the SciPy it loads) costs ~1.5 s a process, which the many small jobs that
    # import this module only to merge or read tables (merge_predictions, intensity tables, summary) do not need
    from sklearn.metrics import accuracy_score, f1_score

    pred = check_predictions(pred, name)
    rows = []
    for au, t, cover in rows_to_score(pred, aus, name, invalid_frames=invalid_frames):
        y, p = t["label"].to_numpy(int), t["pred"].to_numpy(int)
        rows.append({"model": model, "split": split, "au": str(au),
                     "f1": float(f1_score(y, p, pos_label=1, zero_division=0)) if len(y) else float("nan"),
                     "accuracy": float(accuracy_score(y, p)) if len(y) else float("nan"), "n_pos": int(y.sum()),
                     "n_neg": int(len(y) - y.sum()), **cover, "invalid_frames": invalid_frames})
    per_au = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    return pd.concat([per_au, _mean_rows(per_au, model, split)], ignore_index=True)


def nan_aus(per_au: pd.DataFrame, columns: Sequence[str] = ("f1", "accuracy"), *, what: str = "",
            warn: bool = True) -> list[int]:
    """The AUs (rows ``au``) of ``per_au`` with a NaN in any of ``columns``: a mean over AUs leaves them out.
    With ``warn``, a warning names them and ``what`` (the model, split and mean)."""
    present = [c for c in columns if c in per_au.columns]
    if per_au.empty or not present:
        return []
    bad = per_au[pd.DataFrame({c: pd.to_numeric(per_au[c], errors="coerce") for c in present}).isna().any(axis=1)]
    out = sorted(int(a) for a in bad["au"].astype(str) if a.isdigit())
    if out and warn:
        log.warning("%s: AU(s) %s have no %s (NaN) and are left out of the mean over AUs", what or "mean",
                    out, "/".join(present))
    return out


def add_nan_aus(summary: pd.DataFrame, columns: Sequence[str] = ("f1", "accuracy")) -> pd.DataFrame:
    """Column :data:`NAN_AUS` on each mean row (``mean``, ``mean12``, ``mean8``) of a summary: the AUs of its set
    whose ``columns`` are NaN among the model's per-AU rows of that split (left out of the mean; warned)."""
    out = summary.copy()
    out[NAN_AUS] = ""
    au = out["au"].astype(str)
    for (model, split), g in out.groupby(["model", "split"], sort=False):
        per_au = g[g["au"].astype(str).str.isdigit()]
        if per_au.empty:
            continue
        aus = per_au["au"].astype(int)
        for label in (m for m in MEAN_ROWS if (g["au"].astype(str) == m).any()):
            group = tuple(aus) if label == "mean" else MEAN_SETS[label]
            bad = nan_aus(per_au[aus.isin(group)], columns, what=f"model {model}, split {split}, {label}")
            out.loc[(out["model"] == model) & (out["split"] == split) & (au == label), NAN_AUS] = \
                " ".join(str(a) for a in bad)
    return out


def _mean_rows(per_au: pd.DataFrame, model: str, split: str) -> pd.DataFrame:
    rows = []
    aus = per_au["au"].astype(int)
    groups = {"mean": tuple(aus)} | {k: v for k, v in MEAN_SETS.items() if set(v) <= set(aus)}
    for label, group in groups.items():
        sel = per_au[aus.isin(group)]
        if sel.empty:
            continue
        nan_aus(sel, what=f"model {model}, split {split}, {label}")
        rows.append({"model": model, "split": split, "au": label, "f1": float(sel["f1"].mean()),
                     "accuracy": float(sel["accuracy"].mean()), **_summed(sel),
                     "invalid_frames": _same(sel["invalid_frames"])})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def _summed(rows: pd.DataFrame) -> dict[str, int]:
    """The counts of a mean row: summed over its rows (AUs or folds); a coverage column that older metrics tables
    lack stays empty."""
    out = {}
    for c in ("n_pos", "n_neg", "n_labelled", "n_face"):
        v = pd.to_numeric(rows[c], errors="coerce") if c in rows else pd.Series(dtype=float)
        out[c] = int(v.sum()) if len(v) and v.notna().all() else np.nan
    return out


def _same(values: pd.Series) -> str:
    """The one value of a column over the rows a mean row averages (``mixed`` when they differ, ``""`` if none)."""
    vals = {str(v) for v in values if isinstance(v, str) and v}
    return vals.pop() if len(vals) == 1 else ("mixed" if vals else "")


def always_present(pred: pd.DataFrame) -> pd.DataFrame:
    """The trivial classifier on the same frames: every frame predicted present (score 1), frames without a usable
    face included (it needs no face: the literature's all-present baseline over every labelled frame)."""
    out = check_predictions(pred)
    out["score"] = 1.0
    out["pred"] = 1
    return out


def merge_predictions(parts: Iterable[pd.DataFrame], aus: Sequence[int] | None = None,
                      name: str = "predictions") -> pd.DataFrame:
    """Concatenate per-AU prediction tables of one model (checked; sorted by set, subject, frame, AU).

    A part without the ``face`` column was written before the test predictions kept the frames without a usable
    face: an error asking to rerun its job (its metrics would silently leave those frames out)."""
    parts = list(parts)
    for part in parts:
        if len(part) and "face" not in part.columns:
            raise EvaluationError(f"{name}: a per-AU prediction table (AU{int(part['au'].iloc[0])}) has no 'face' "
                                  "column: it was written before the test predictions kept the labelled frames "
                                  "without a usable face; rerun its fit job (e.g. snakemake --forcerun of its rule)")
    df = check_predictions(pd.concat(parts, ignore_index=True), name)
    if aus is not None:
        missing = sorted(set(int(a) for a in aus) - set(int(a) for a in df["au"].unique()))
        if missing:
            raise EvaluationError(f"{name}: no rows for AU(s) {missing}")
    order = {"val": 0, "test": 1}
    df = df.sort_values(["set", "subject", "frame", "au"], key=lambda s: s.map(order) if s.name == "set" else s)
    return df[PRED_COLUMNS].reset_index(drop=True)


def fold_groups(splits: Iterable[str]) -> dict[str, list[str]]:
    """Group fold splits by prefix: ``{"3fold_mean": ["fold1", "fold2", "fold3"]}`` (groups of 2 or more)."""
    groups: dict[str, list[str]] = {}
    for s in splits:
        m = FOLD_RE.match(s)
        if m:
            groups.setdefault(m["prefix"], []).append(s)
    return {f"{p}{len(v)}fold_mean": sorted(v, key=lambda s: int(FOLD_RE.match(s)["k"]))
            for p, v in groups.items() if len(v) >= 2}


def fold_means(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows ``split = <K>fold_mean``: per model and AU (and seed, when ``summary`` has a ``seed`` column: one fold
    mean per run), the mean F1/accuracy over the folds; counts summed."""
    out = []
    keys = ["model", "au"] + (["seed"] if "seed" in summary.columns else [])
    for name, folds in fold_groups(summary["split"].unique()).items():
        sub = summary[summary["split"].isin(folds)]
        for key, g in sub.groupby(keys, sort=False):
            if set(g["split"]) != set(folds):
                continue  # the model is not evaluated on every fold: no mean
            missing = g.loc[g[["f1", "accuracy"]].isna().any(axis=1), "split"].tolist()
            row = dict(zip(keys, key, strict=True))
            if missing:
                log.warning("model %s AU %s: no F1/accuracy (NaN) on %s, left out of the %s", row["model"],
                            row["au"], missing, name)
            out.append({**row, "split": name, "f1": float(g["f1"].mean()),
                        "accuracy": float(g["accuracy"].mean()), **_summed(g),
                        "invalid_frames": _same(g.get("invalid_frames", pd.Series(dtype=object)))})
    return pd.DataFrame(out, columns=METRIC_COLUMNS + keys[2:])


def over_seeds(table: pd.DataFrame, values: Sequence[str], counts: Sequence[str] = ()) -> pd.DataFrame:
    """Per (model, split, au): the mean of each of ``values`` over the seeds (column ``seed``: the runs of config
    ``seeds``), its sample standard deviation ``{value}_sd`` (empty for one run) and ``n_seeds``; ``counts``
    (the same test frames in every run) are taken from the first run. Rows keep their first appearance's order."""
    keys = ["model", "split", "au"]
    g = table.groupby(keys, sort=False)
    out = g[list(values)].mean()
    for v in values:
        out[f"{v}_sd"] = g[v].std(ddof=1)
    for c in counts:
        out[c] = g[c].first()
    out["n_seeds"] = g["seed"].nunique()
    return out.reset_index()[keys + list(values) + list(counts) + [f"{v}_sd" for v in values] + ["n_seeds"]]


SEED_COLUMNS: list[str] = ["f1_sd", "accuracy_sd", "n_seeds"]


def summarize(metric_tables: Iterable[pd.DataFrame], seeds: Iterable[int] | None = None) -> pd.DataFrame:
    """One tidy table of every model's metrics on every split, plus the k-fold mean rows; ``seeds`` gives the run
    (seed offset) of each table (default: all run 0). A model with several runs gets the mean F1 and accuracy over
    them, their standard deviations and the number of runs (:data:`SEED_COLUMNS`, after :data:`METRIC_COLUMNS`);
    k-fold means are taken per run first, so their ``_sd`` is the spread of the k-fold mean over the runs. Then
    the column :data:`NAN_AUS` (:func:`add_nan_aus`)."""
    tables = list(metric_tables)
    runs = [0] * len(tables) if seeds is None else [int(s) for s in seeds]
    if len(runs) != len(tables):
        raise EvaluationError(f"summary: {len(runs)} seeds for {len(tables)} metrics tables")
    tables = [t.assign(seed=s) for t, s in zip(tables, runs, strict=True) if not t.empty]
    if not tables:
        return pd.DataFrame(columns=[*METRIC_COLUMNS, *SEED_COLUMNS, NAN_AUS])
    df = pd.concat(tables, ignore_index=True).reindex(columns=METRIC_COLUMNS + ["seed"])  # older tables: no coverage
    df["au"] = df["au"].astype(str)
    df = pd.concat([df, fold_means(df)], ignore_index=True)
    return add_nan_aus(over_seeds(df, ["f1", "accuracy"], ["n_pos", "n_neg", *COVERAGE_COLUMNS]))


#: The summary's corpus columns, from the ``corpora`` mapping (split -> these keys without the ``_corpus``
#: suffix): the corpora a split trains (train + val) and tests on, and each side's definition of "present".
CORPUS_COLUMNS: dict[str, str] = {"train_corpus": "train", "test_corpus": "test", "train_present": "train_present",
                                  "test_present": "test_present"}


def add_corpus_columns(summary: pd.DataFrame, corpora: Mapping[str, Mapping[str, str]] | None) -> pd.DataFrame:
    """The corpus columns (:data:`CORPUS_COLUMNS`): ``train_corpus`` and ``test_corpus``, the corpora a split
    trains (train + val) and tests on (``corpora``: split -> {train, test, train_present, test_present}, e.g.
    ``disfa`` / ``bp4d (bp4d-)``), and ``train_present`` / ``test_present``, their definitions of an AU present
    (``intensity >= 2 (B+)``, ``occurrence codes (A+)``; :meth:`au_transfer.datasets.catalog.Catalog.split_corpora`).
    A k-fold mean row gets its folds' when they agree, else ``mixed``. A split that trains on one corpus and tests
    on another is cross-corpus."""
    out = summary.copy()
    corpora = dict(corpora or {})
    groups = fold_groups(out["split"].unique()) if len(out) else {}
    for column, key in CORPUS_COLUMNS.items():
        def lookup(split: str, key: str = key) -> str:
            if split in corpora:
                return str(corpora[split].get(key, ""))
            values = {str(corpora[f].get(key, "")) for f in groups.get(split, []) if f in corpora}
            return values.pop() if len(values) == 1 else ("mixed" if values else "")
        out[column] = [lookup(s) for s in out["split"]] if len(out) else []
    return out


def headline(summary: pd.DataFrame, au: str = "mean") -> pd.DataFrame:
    """Model x split table of one row kind (default: the mean F1 over the evaluated AUs), best F1 first."""
    sel = summary[summary["au"].astype(str) == au]
    return sel.sort_values(["split", "f1"], ascending=[True, False])[["model", "split", "f1", "accuracy"]]

