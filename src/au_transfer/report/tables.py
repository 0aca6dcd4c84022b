"""Report tables: reading metrics, per-AU tables, the headline, the paper comparison, Markdown, the summary text.

Metrics tables have columns ``model, split, au, f1, accuracy, n_pos, n_neg`` (:data:`METRIC_COLUMNS`), and the
summary's spread over the seeded runs ``f1_sd, accuracy_sd, n_seeds`` (:data:`SEED_COLUMNS`, config ``seeds``; a
table without them reads as one run); see :mod:`au_transfer.report` for the whole report.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import DISFA_AUS
from ..config import MODEL_RE
from ..evaluation import MEAN_ROWS, MEAN_SETS, SEED_COLUMNS, nan_aus

METRIC_COLUMNS: tuple[str, ...] = ("model", "split", "au", "f1", "accuracy", "n_pos", "n_neg")
#: Read when present (metrics written before them lack them): labelled test frames, of which with a face, the rule.
COVERAGE_COLUMNS: tuple[str, ...] = ("n_labelled", "n_face", "invalid_frames")
PAPER_CORPUS = "Lim et al., DISFA, 12 AUs, 12/6/9 split"
TABLES: tuple[str, ...] = ("f1_per_au", "rate_per_au", "headline", "coverage", "paper_comparison", "sota_comparison",
                           "corpora")


class ReportError(ValueError):
    """Bad report input; the message names the file and what is wrong."""


# ------------------------------------------------------------------------------------------------ reading
def read_metrics(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Concatenate metrics tables (duplicate model/split/au rows keep the last file's); errors name the file."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ReportError(f"{path}: metrics file does not exist")
        df = pd.read_csv(path, dtype={"au": str, "model": str, "split": str})
        missing = [c for c in METRIC_COLUMNS if c not in df.columns]
        if missing:
            raise ReportError(f"{path}: missing column(s) {missing}; expected {list(METRIC_COLUMNS)}")
        for col in ("f1", "accuracy"):
            v = pd.to_numeric(df[col], errors="coerce")
            bad = v.notna() & ((v < 0) | (v > 1))
            if bad.any():
                r = df[bad].iloc[0]
                raise ReportError(f"{path}: model {r.model} AU {r.au}: {col} {r[col]} is not a fraction in [0, 1]")
            df[col] = v
        frames.append(with_seed_columns(df).reindex(columns=[*METRIC_COLUMNS, *COVERAGE_COLUMNS, *SEED_COLUMNS]))
    if not frames:
        return pd.DataFrame(columns=[*METRIC_COLUMNS, *COVERAGE_COLUMNS, *SEED_COLUMNS])
    out = pd.concat(frames, ignore_index=True)
    out["au"] = out["au"].astype(str).str.replace(r"^AU", "", regex=True)
    return out.drop_duplicates(["model", "split", "au"], keep="last").reset_index(drop=True)


def with_seed_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with numeric :data:`SEED_COLUMNS`; a table without them (a per-model metrics file, an older summary)
    is one run: ``n_seeds`` 1, no standard deviation."""
    df = df.copy()
    for col in SEED_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else np.nan
    df["n_seeds"] = df["n_seeds"].fillna(1).astype(int)
    return df


def paper_results() -> pd.DataFrame:
    """The paper's published mean F1 values (``au_transfer/data/paper_results.csv``), labelled with their source."""
    with resources.files("au_transfer").joinpath("data/paper_results.csv").open() as fh:
        return pd.read_csv(fh, keep_default_na=False, dtype={"note": str})


def parse_id(model: str) -> dict[str, str]:
    """``{backbone, region, classifier, kind}`` of a model id; ensembles (``ens-…``) have kind ``ensemble``."""
    if model.startswith("ens-"):
        return {"backbone": "", "region": "", "classifier": "ensemble", "kind": "ensemble"}
    if model == "always_present":
        return {"backbone": "", "region": "", "classifier": "", "kind": "baseline"}
    m = MODEL_RE.match(model)
    if not m:
        return {"backbone": model, "region": "", "classifier": "", "kind": "other"}
    kind = "finetuned" if m["backbone"].endswith("_ft") else "feature extraction"
    return {"backbone": m["backbone"], "region": m["region"], "classifier": m["classifier"], "kind": kind}


def choose_split(metrics: pd.DataFrame, split: str | None = None) -> str:
    """The split whose numbers the figures and headline show: ``split`` if given, else a fold mean, else the first."""
    splits = list(dict.fromkeys(metrics["split"].astype(str)))
    if split:
        if split not in splits:
            raise ReportError(f"report.split: {split!r} has no metrics; splits with metrics: {splits}")
        return split
    for s in splits:
        if s.endswith("_mean"):
            return s
    if not splits:
        raise ReportError("no metrics to report")
    return splits[0]


# ------------------------------------------------------------------------------------------------- tables
def _au_label(au: str) -> str:
    return f"AU{au}" if str(au).isdigit() else str(au)


def per_au_table(metrics: pd.DataFrame, value: str = "f1") -> pd.DataFrame:
    """Per-AU table in percent: one row per (split, model), columns AU1 … AU26, then the mean rows present."""
    if metrics.empty:
        return pd.DataFrame(columns=["split", "model"])
    wide = metrics.pivot_table(index=["split", "model"], columns="au", values=value, aggfunc="first") * 100.0
    aus = [str(a) for a in DISFA_AUS if str(a) in wide.columns]
    others = [c for c in wide.columns if c not in aus and c not in MEAN_ROWS]
    cols = aus + others + [c for c in MEAN_ROWS if c in wide.columns]
    wide = wide[cols].round(1)
    wide.columns = [_au_label(c) for c in cols]
    sort_col = "mean" if "mean" in wide.columns else wide.columns[-1]
    wide = wide.reset_index().sort_values(["split", sort_col], ascending=[True, False], na_position="last")
    return wide.reset_index(drop=True)


HEADLINE_COLUMNS: tuple[str, ...] = ("rank", "model", "kind", "split", "n_aus", "f1_mean", "rate_mean", "f1_mean12",
                                     "f1_mean8", "nan_aus", "n_seeds", "f1_mean_sd", "rate_mean_sd", "f1_mean12_sd",
                                     "f1_mean8_sd")


def evaluated_aus(metrics: pd.DataFrame, split: str) -> dict[str, tuple[int, ...]]:
    """The AUs each model is evaluated on (its per-AU rows) on ``split``."""
    m = metrics[(metrics["split"] == split) & metrics["au"].astype(str).str.isdigit()]
    return {str(model): tuple(sorted(int(a) for a in g["au"])) for model, g in m.groupby("model", sort=False)}


def au_set_label(sets: Iterable[tuple[int, ...]]) -> tuple[str, str]:
    """``(short, long)`` labels of the AU set(s) that means average: ``("8 AUs", "the 8 AUs 1, 2, ..."))`` when
    every model has the same set, else ``("each model's AUs", "each model's evaluated AUs (N-M AUs)")``."""
    sets = sorted(set(sets), key=lambda s: (len(s), s))
    if not sets:
        return "AUs", "the evaluated AUs"
    if len(sets) == 1:
        aus = sets[0]
        return f"{len(aus)} AUs", f"the {len(aus)} AUs {', '.join(str(a) for a in aus)}"
    lo, hi = len(sets[0]), len(sets[-1])
    return "each model's AUs", f"each model's evaluated AUs ({lo}-{hi} AUs; the sets differ)"


def headline(metrics: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """Mean F1 and classification rate (percent) over the evaluated AUs (``n_aus`` of them) per model and ensemble
    of one split, best first; beside them the means over DISFA's 12 and the 8 standard AUs where all of those AUs
    are evaluated (empty otherwise). ``nan_aus``: the AUs whose F1 or rate is NaN, left out of the means. A model
    run over several seeds (``n_seeds`` > 1, config ``seeds``) shows the mean over its runs, and each AU set's
    standard deviation over the runs in the ``*_sd`` columns (empty for one run)."""
    if metrics.empty:
        return pd.DataFrame(columns=list(HEADLINE_COLUMNS))
    split = choose_split(metrics, split)
    m = with_seed_columns(metrics[metrics["split"] == split])
    rows = []
    for model, g in m.groupby("model", sort=False):
        by_au = g.set_index("au")
        aus = by_au.loc[[a for a in by_au.index if str(a).isdigit()]]
        f1 = by_au["f1"].get("mean", np.nan)
        rate = by_au["accuracy"].get("mean", np.nan)
        sd = {"f1_mean_sd": by_au["f1_sd"].get("mean", np.nan), "rate_mean_sd": by_au["accuracy_sd"].get("mean", np.nan)}
        if pd.isna(f1):  # a table without mean rows: average the AU rows (no spread of that mean is known)
            f1, rate = aus["f1"].mean(), aus["accuracy"].mean()
        seeds = int(by_au["n_seeds"].max())
        rows.append({"model": model, "kind": parse_id(model)["kind"], "split": split, "n_aus": len(aus),
                     "f1_mean": round(100 * f1, 1), "rate_mean": round(100 * rate, 1),
                     **{f"f1_{k}": round(100 * by_au["f1"].get(k, np.nan), 1) for k in MEAN_SETS},
                     "nan_aus": " ".join(str(a) for a in nan_aus(aus.reset_index(), warn=False)),
                     "n_seeds": seeds, **{k: round(100 * v, 1) for k, v in sd.items()},
                     **{f"f1_{k}_sd": round(100 * by_au["f1_sd"].get(k, np.nan), 1) for k in MEAN_SETS}})
    out = pd.DataFrame(rows).sort_values(["f1_mean", "rate_mean"], ascending=False, na_position="last")
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)[list(HEADLINE_COLUMNS)]


def seeds_note(head: pd.DataFrame) -> str:
    """What the headline's numbers of the stochastic models are: a mean over seeded runs with its spread, or one
    run's value (config ``seeds``)."""
    n = head["n_seeds"] if "n_seeds" in head.columns else pd.Series(dtype=int)
    if len(n) and int(n.max()) > 1:
        many = head[n > 1]
        return (f"{len(many)} model(s) ran over {int(many['n_seeds'].min())}-{int(many['n_seeds'].max())} seeds "
                "(config `seeds`; `n_seeds`): their numbers are the mean over the runs and the `*_sd` columns the "
                "standard deviation over the runs; the ensembles and the predictor use run 0 (the configured seeds).")
    return ("Every model ran once (config `seeds`: [0]): the numbers of the stochastic models (fine-tuned networks, "
            "LSTMs) are one run's, whose spread over seeds is not measured here; set e.g. `seeds: [0, 1, 2]` for "
            "their mean and standard deviation.")


COVERAGE_TABLE_COLUMNS: tuple[str, ...] = ("split", "invalid_frames", "labelled", "with_face", "with_face_pct",
                                           "without_face", "note")


def coverage(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per split: the labelled test frames (summed over the evaluated AUs: frame x AU pairs, from the ``mean`` rows),
    how many of them have a usable face, and how the others were scored (``invalid_frames``: ``absent`` = predicted
    absent, ``exclude`` = left out). Every model of a split scores the same frames; the baseline and models whose
    metrics lack the coverage columns (written before them) are not counted, and a split whose models disagree
    says so in ``note``."""
    cols = list(COVERAGE_TABLE_COLUMNS)
    if metrics.empty or "n_labelled" not in metrics:
        return pd.DataFrame(columns=cols)
    m = metrics[(metrics["au"].astype(str) == "mean") & (metrics["model"] != "always_present")]
    m = m[pd.to_numeric(m["n_labelled"], errors="coerce").notna()]
    rows = []
    for split, g in m.groupby("split", sort=False):
        pairs = g[["n_labelled", "n_face"]].astype(int).value_counts()
        (n_lab, n_face), n_models = pairs.index[0], int(pairs.iloc[0])
        rules = sorted({str(r) for r in g["invalid_frames"].dropna()})
        note = "" if len(pairs) == 1 else (f"{len(g) - n_models} of {len(g)} models score other frames "
                                           f"(counts {sorted(tuple(int(v) for v in k) for k in pairs.index)})")
        rows.append({"split": split, "invalid_frames": "/".join(rules), "labelled": int(n_lab),
                     "with_face": int(n_face), "with_face_pct": round(100.0 * n_face / n_lab, 1) if n_lab else np.nan,
                     "without_face": int(n_lab - n_face), "note": note})
    return pd.DataFrame(rows, columns=cols)


def coverage_note(cov: pd.DataFrame, split: str) -> str:
    """One sentence for the headline: how many labelled test frames of ``split`` have a usable face, and how the
    others are scored; empty when the metrics have no coverage."""
    row = cov[cov["split"] == split] if len(cov) else cov
    if row.empty:
        return ""
    r = row.iloc[0]
    how = {"absent": "are scored as predicted absent (`evaluation.invalid_frames: absent`)",
           "exclude": "are left out of the scores (`evaluation.invalid_frames: exclude`)"}.get(
        str(r.invalid_frames), f"are scored by rule {r.invalid_frames!r}")
    return (f"Coverage of split `{split}`: {r.with_face} of {r.labelled} labelled test frames x AUs "
            f"({r.with_face_pct:.1f} %) have a usable face; the other {r.without_face} {how}.")


def corpora_table(metrics: pd.DataFrame, corpora: Mapping[str, Mapping[str, str]] | None) -> pd.DataFrame:
    """Within- and cross-corpus results side by side: mean F1 (%) of each model (rows) on each split (columns
    ``{split}: {train corpus} -> {test corpus}``), within-corpus splits first; ``corpora``: split -> {train, test}."""
    corpora = dict(corpora or {})
    m = metrics[metrics["au"].astype(str) == "mean"]
    if m.empty or not corpora:
        return pd.DataFrame(columns=["model"])
    splits = [s for s in corpora if s in set(m["split"])]
    splits.sort(key=lambda s: (corpora[s]["train"] != corpora[s]["test"], s))
    wide = m.pivot_table(index="model", columns="split", values="f1", aggfunc="first")[splits] * 100.0
    labels = {s: f"{s}: {corpora[s]['train']} -> {corpora[s]['test']}"
                 + (" (cross-corpus)" if corpora[s]["train"] != corpora[s]["test"] else "") for s in splits}
    wide = wide.rename(columns=labels).round(1)
    return wide.sort_values(list(wide.columns), ascending=False, na_position="last").reset_index()


def present_notes(corpora: Mapping[str, Mapping[str, str]] | None) -> list[str]:
    """What "present" means on each side of each split (``corpora``: split -> {train, test, train_present,
    test_present}, :func:`au_transfer.evaluation.add_corpus_columns`), one line per split in markdown; a split whose
    train and test corpora differ is a warning, and says when their definitions of present differ too (e.g. a
    DISFA detector of intensity >= 2 (B+) scored against BP4D's occurrence codes, where level A counts)."""
    out = []
    for split, c in dict(corpora or {}).items():
        train, test = str(c.get("train", "")), str(c.get("test", ""))
        tp, sp = str(c.get("train_present") or "not recorded"), str(c.get("test_present") or "not recorded")
        if train == test:
            out.append(f"Split `{split}` trains and tests on {train}: present = {tp}.")
            continue
        line = (f"**Warning**: split `{split}` is cross-corpus: it trains on {train} (present = {tp}) and tests on "
                f"{test} (present = {sp}).")
        line += (" The definitions of present differ: its models learn one and are scored against the other."
                 if tp != sp else " Both sides define present the same way; the people, recordings and coders differ.")
        out.append(line)
    return out


def _paper_aus(row: Any) -> tuple[int, ...]:
    return tuple(int(a) for a in str(row.aus).split())


def paper_comparison(metrics: pd.DataFrame, paper_models: Mapping[str, str] | None, corpus: str,
                     split: str | None = None) -> pd.DataFrame:
    """The paper's published numbers beside ours: one row per paper result, our model (from ``paper_models``:
    paper key -> our model id) and its mean F1 on ``split``, each labelled with the corpus it comes from.

    Our number stands beside a published one only when it averages the same AUs (the paper's are means over
    DISFA's 12): a model evaluated on other AUs gets no number, and the note says why."""
    paper = paper_results()
    paper_models = dict(paper_models or {})
    unknown = sorted(set(paper_models) - set(paper["key"]))
    if unknown:
        raise ReportError(f"report.paper_models: unknown paper result key(s) {unknown}; "
                          f"choose from {paper['key'].tolist()}")
    split = choose_split(metrics, split) if not metrics.empty else split
    m = metrics[metrics["split"] == split] if not metrics.empty else metrics
    rows = []
    for r in paper.itertuples(index=False):
        ours, f1, note = paper_models.get(r.key, ""), np.nan, r.note or ""
        want = _paper_aus(r)
        if ours and not m.empty:
            g = m[m["model"] == ours]
            have = tuple(sorted(int(a) for a in g["au"] if str(a).isdigit()))
            label = next((k for k, v in MEAN_SETS.items() if tuple(sorted(v)) == tuple(sorted(want))), None)
            if g.empty:
                note = f"{ours} has no metrics on split {split}"
            elif label is None or not set(want) <= set(have):
                missing = sorted(set(want) - set(have))
                note = (f"not compared: the paper averages AUs {list(want)}; {ours} is evaluated on "
                        f"{len(have)} AUs {list(have)} (missing {missing})")
            else:
                f1 = round(100 * float(g.set_index("au")["f1"][label]), 1)
        rows.append({"key": r.key, "result": r.description, "figure": r.figure, "paper_f1": r.f1,
                     "paper_corpus": r.source, "paper_aus": len(want), "our_model": ours, "our_f1": f1,
                     "our_corpus": corpus if ours else "", "note": note})
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, floatfmt: str = "{:.1f}") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else floatfmt.format(v)
        return str(v).replace("|", "\\|")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ summary
def find_metrics(results_dir: str | os.PathLike[str]) -> list[Path]:
    """Every per-model metrics file under ``results_dir/metrics/{split}/`` (summary.csv when there are none)."""
    root = Path(results_dir) / "metrics"
    files = sorted(p for p in root.glob("*/*.csv"))
    if not files and (root / "summary.csv").is_file():
        files = [root / "summary.csv"]
    return files


def summary_text(results_dir: str | os.PathLike[str], split: str | None = None, top: int | None = None) -> str:
    """Where the report is, and the headline table (best first) as text; used by ``au-transfer summary``."""
    results = Path(results_dir)
    head_csv = results / "report" / "headline.csv"
    if head_csv.is_file() and split is None:
        head = pd.read_csv(head_csv)
    else:  # the summary (with the seeded runs' means and the k-fold means) when there is one
        summary = results / "metrics" / "summary.csv"
        files = [summary] if summary.is_file() else find_metrics(results)
        if not files:
            raise ReportError(f"{results}: no metrics found under {results / 'metrics'}; run the workflow first")
        head = headline(read_metrics(files), split)
    if top:
        head = head.head(top)
    lines = []
    report = results / "report"
    if (report / "report.html").is_file():
        lines.append(f"Report: {report / 'report.html'} (tables, figures; Markdown: {report / 'index.md'})")
    else:
        lines.append(f"No report yet under {report}; headline computed from {results / 'metrics'}")
    s = str(head["split"].iloc[0]) if len(head) else "?"
    lines.append(f"Headline (split {s}; mean over AUs, percent; best first):")
    cols = ["rank", "model", "kind", "f1_mean", "rate_mean"]
    if "n_seeds" in head.columns and (head["n_seeds"] > 1).any():  # a seeded run: its mean over seeds, +- sd
        cols += ["f1_mean_sd", "n_seeds"]
    show = head[cols].rename(columns={"f1_mean": "F1", "rate_mean": "rate", "f1_mean_sd": "F1 sd"})
    lines.append(show.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if "nan_aus" in head.columns:
        bad = head[head["nan_aus"].astype(object).fillna("").astype(str) != ""]
        if len(bad):
            lines.append("Note: means leave out the AUs without F1 or rate (NaN): "
                         + "; ".join(f"{r.model}: AU {r.nan_aus}" for r in bad.itertuples()))
    return "\n".join(lines)
