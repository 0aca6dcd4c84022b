"""The paper-style report: per-AU F1 and classification-rate tables, figures like the paper's Figs. 4-10, the
paper's published numbers beside ours, and the headline table that ``au-transfer summary`` prints.

Input: metrics tables (``results/metrics/{split}/{model}.csv`` or ``results/metrics/summary.csv``) with columns
``model, split, au, f1, accuracy, n_pos, n_neg``; ``au`` is an AU number or a mean row (``mean`` over the evaluated
AUs; ``mean12`` / ``mean8`` when all of those AUs are evaluated: :data:`au_transfer.evaluation.MEAN_SETS`). F1 and
accuracy are fractions in [0, 1]; the report shows percentages, like the paper.

Output, in one folder (``results/report/``), always the same file names so that a workflow can declare them:
tables ``{f1_per_au,rate_per_au,headline,paper_comparison}.{csv,md}``, ``report.html`` (every table and figure) and
``index.md``; figures ``{name}.png`` and ``{name}.svg`` for every name in :data:`FIGURES`. A figure whose models the
configuration does not produce is *skipped*: its file holds a short note instead of a chart, and the note is listed
in ``index.md`` and ``report.html``; it never stops the report.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import DISFA_AUS
from .config import MODEL_RE
from .evaluation import MEAN_ROWS, MEAN_SETS
from .io import atomic_path, write_csv_atomic, write_text_atomic

log = logging.getLogger(__name__)

METRIC_COLUMNS: tuple[str, ...] = ("model", "split", "au", "f1", "accuracy", "n_pos", "n_neg")
PAPER_CORPUS = "Lim et al., DISFA, 12 AUs, 12/6/9 split"
#: Figure names (file stems) and what they show; paper figure numbers in the names.
FIGURES: dict[str, str] = {
    "fig4_backbones": "Fig. 4: mean F1 of LDA and SVM on the features of each backbone (whole face)",
    "fig5_lstm": "Fig. 5: classifiers on the features of the LSTM's backbone",
    "fig6_finetune": "Fig. 6: fine-tuning: SVM before/after fine-tuning, and the fine-tuned network",
    "fig7_regions": "Fig. 7: whole face vs the AU's region (Table VI)",
    "fig8_ensemble1": "Fig. 8: ensemble 1, models from feature extraction only",
    "fig9_ensemble2": "Fig. 9: ensemble 2, with a fine-tuned CNN",
    "fig10_ensemble3": "Fig. 10: ensemble 3, with fine-tuned CNNs and region-based models",
    "ensembles": "Every ensemble (majority, weighted, stacked) beside its best member",
    "per_au_f1": "Per-AU F1 of every model and ensemble",
}
TABLES: tuple[str, ...] = ("f1_per_au", "rate_per_au", "headline", "paper_comparison")
FORMATS: tuple[str, ...] = ("png", "svg")


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
        frames.append(df[list(METRIC_COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(METRIC_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    out["au"] = out["au"].astype(str).str.replace(r"^AU", "", regex=True)
    return out.drop_duplicates(["model", "split", "au"], keep="last").reset_index(drop=True)


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
                                     "f1_mean8")


def headline(metrics: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """Mean F1 and classification rate (percent) over the evaluated AUs (``n_aus`` of them) per model and ensemble
    of one split, best first; beside them the means over DISFA's 12 and the 8 standard AUs where all of those AUs
    are evaluated (empty otherwise)."""
    if metrics.empty:
        return pd.DataFrame(columns=list(HEADLINE_COLUMNS))
    split = choose_split(metrics, split)
    m = metrics[metrics["split"] == split]
    rows = []
    for model, g in m.groupby("model", sort=False):
        by_au = g.set_index("au")
        aus = by_au.loc[[a for a in by_au.index if str(a).isdigit()]]
        f1 = by_au["f1"].get("mean", np.nan)
        rate = by_au["accuracy"].get("mean", np.nan)
        if pd.isna(f1):  # a table without mean rows: average the AU rows
            f1, rate = aus["f1"].mean(), aus["accuracy"].mean()
        rows.append({"model": model, "kind": parse_id(model)["kind"], "split": split, "n_aus": len(aus),
                     "f1_mean": round(100 * f1, 1), "rate_mean": round(100 * rate, 1),
                     **{f"f1_{k}": round(100 * by_au["f1"].get(k, np.nan), 1) for k in MEAN_SETS}})
    out = pd.DataFrame(rows).sort_values(["f1_mean", "rate_mean"], ascending=False, na_position="last")
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)[list(HEADLINE_COLUMNS)]


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


# ------------------------------------------------------------------------------------------------ figures
@dataclass
class FigureData:
    """What one figure shows: a long table (group, series, value) or a note saying why it is skipped."""

    name: str
    title: str
    data: pd.DataFrame | None = None
    note: str = ""
    per_au: pd.DataFrame | None = None          # optional second panel: rows = series, columns = AU labels
    series_order: list[str] = field(default_factory=list)


def _mean_f1(metrics: pd.DataFrame, split: str) -> dict[str, float]:
    h = headline(metrics, split)
    return dict(zip(h["model"], h["f1_mean"], strict=True))


def _ids(f1: Mapping[str, float]) -> pd.DataFrame:
    rows = [{"model": m, **parse_id(m), "f1": v} for m, v in f1.items()]
    return pd.DataFrame(rows, columns=["model", "backbone", "region", "classifier", "kind", "f1"])


def figure_data(metrics: pd.DataFrame, split: str, ensembles: Mapping[str, Mapping[str, Any]] | None = None,
                paper_ensembles: Sequence[str] = ()) -> list[FigureData]:
    """The data of every figure in :data:`FIGURES` (skipped ones carry a note)."""
    f1 = _mean_f1(metrics, split)
    ids = _ids(f1)
    fe = ids[ids["kind"] == "feature extraction"]
    out: list[FigureData] = []

    # Fig. 4: LDA and SVM per backbone, whole face
    d = fe[(fe["region"] == "face") & fe["classifier"].isin(["lda", "svm"])]
    out.append(_fig("fig4_backbones", d.assign(group=d["backbone"], series=d["classifier"].str.upper()),
                    "no LDA or SVM model on whole-face features of a pretrained backbone"))

    # Fig. 5: classifiers on the LSTM's backbone
    lstm_bb = fe.loc[fe["classifier"] == "lstm", "backbone"].unique().tolist()
    d = fe[fe["backbone"].isin(lstm_bb) & (fe["region"] == "face")]
    out.append(_fig("fig5_lstm", d.assign(group=d["backbone"], series=d["classifier"].str.upper()),
                    "no LSTM model in this configuration"))

    # Fig. 6: fine-tuning, per fine-tuned backbone: SVM before, SVM on fine-tuned features, the fine-tuned net
    rows = []
    best_fe = fe[(fe["region"] == "face") & (fe["classifier"] != "lstm")].sort_values("f1", ascending=False)
    for bb_ft in sorted(ids.loc[ids["kind"] == "finetuned", "backbone"].unique()):
        bb = bb_ft[: -len("_ft")]
        ft = ids[(ids["backbone"] == bb_ft) & (ids["region"] == "face")]
        if ft.empty:
            continue
        if len(best_fe):
            b = best_fe.iloc[0]
            rows.append({"group": bb, "series": f"best feature extraction ({b.model})", "value": b.f1})
        before = fe[(fe["backbone"] == bb) & (fe["region"] == "face") & (fe["classifier"] == "svm")]
        for r in before.itertuples():
            rows.append({"group": bb, "series": "SVM, features before fine-tuning", "value": r.f1})
        nets = ("softmax", "ft", "cnn")
        for r in sorted(ft.itertuples(), key=lambda r: (r.classifier in nets, r.classifier)):
            label = ("SVM, features after fine-tuning" if r.classifier == "svm" else
                     "fine-tuned network" if r.classifier in nets else f"{r.classifier.upper()}, fine-tuned features")
            rows.append({"group": bb, "series": label, "value": r.f1})
    out.append(_fig("fig6_finetune", pd.DataFrame(rows, columns=["group", "series", "value"]),
                    "no fine-tuned model (backbone *_ft) on the whole face in this configuration", value_col="value"))

    # Fig. 7: whole face vs the AU's region, for every (backbone, classifier) that has both
    rows = []
    for (bb, clf), g in ids[ids["kind"] != "ensemble"].groupby(["backbone", "classifier"]):
        regions = dict(zip(g["region"], g["f1"], strict=True))
        if "face" in regions and "au_region" in regions:
            for reg in ("face", "au_region"):
                rows.append({"group": f"{bb} {clf.upper()}", "series": reg, "value": regions[reg]})
    out.append(_fig("fig7_regions", pd.DataFrame(rows, columns=["group", "series", "value"]),
                    "no model exists both on the whole face and on the AU's region", value_col="value"))

    # Figs. 8-10: the paper's three ensembles, each beside its members (mean and per AU)
    ensembles = dict(ensembles or {})
    for i, fig in enumerate(("fig8_ensemble1", "fig9_ensemble2", "fig10_ensemble3")):
        name = paper_ensembles[i] if i < len(paper_ensembles) else None
        if name is None:
            out.append(FigureData(fig, FIGURES[fig], note=f"report.paper_ensembles names no ensemble {i + 1}"))
            continue
        eid = f"ens-{name}"
        members = list(ensembles.get(name, {}).get("members", []))
        series = [m for m in members if m in f1] + ([eid] if eid in f1 else [])
        if eid not in f1:
            out.append(FigureData(fig, FIGURES[fig], note=f"ensemble {eid} has no metrics"))
            continue
        d = pd.DataFrame({"group": "mean F1 (12 AUs)", "series": series, "value": [f1[s] for s in series]})
        per_au = per_au_table(metrics[(metrics["split"] == split) & metrics["model"].isin(series)])
        per_au = per_au.set_index("model").drop(columns=["split", *MEAN_ROWS], errors="ignore").reindex(series)
        out.append(FigureData(fig, f"{FIGURES[fig]} ({eid})", data=d, per_au=per_au, series_order=series))

    # Every ensemble beside its best member
    rows = []
    for name, spec in ensembles.items():
        eid = f"ens-{name}"
        if eid not in f1:
            continue
        members = [m for m in spec.get("members", []) if m in f1]
        if members:
            best = max(members, key=lambda m: f1[m])
            rows.append({"group": eid, "series": "best member", "value": f1[best]})
        rows.append({"group": eid, "series": f"ensemble ({spec.get('method', 'majority')})", "value": f1[eid]})
    out.append(_fig("ensembles", pd.DataFrame(rows, columns=["group", "series", "value"]),
                    "no ensemble in this configuration", value_col="value"))

    # Per-AU heatmap of everything
    table = per_au_table(metrics[metrics["split"] == split])
    if table.empty:
        out.append(FigureData("per_au_f1", FIGURES["per_au_f1"], note="no metrics"))
    else:
        heat = table.set_index("model").drop(columns=["split"])
        out.append(FigureData("per_au_f1", FIGURES["per_au_f1"], per_au=heat))
    return out


def _fig(name: str, d: pd.DataFrame, why: str, value_col: str = "f1") -> FigureData:
    if d.empty:
        return FigureData(name, FIGURES[name], note=f"skipped: {why}")
    d = d.rename(columns={value_col: "value"})[["group", "series", "value"]]
    return FigureData(name, FIGURES[name], data=d.reset_index(drop=True))


def _wrap(text: str, width: int = 18) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def draw_figure(fig_data: FigureData, out_stem: Path, *, corpus: str, split: str,
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """Draw one figure (grouped bars, optional per-AU panel, or a note) and save it in every format."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subtitle = f"{corpus}, split {split}"
    if fig_data.data is None and fig_data.per_au is None:
        fig, ax = plt.subplots(figsize=(7, 2.2))
        ax.axis("off")
        ax.text(0.5, 0.62, fig_data.title, ha="center", va="center", fontsize=10, weight="bold", wrap=True)
        ax.text(0.5, 0.3, fig_data.note, ha="center", va="center", fontsize=10, color="0.35", wrap=True)
    elif fig_data.data is None:  # heatmap
        heat = fig_data.per_au
        fig, ax = plt.subplots(figsize=(1.0 + 0.62 * heat.shape[1], 1.2 + 0.38 * len(heat)))
        im = ax.imshow(heat.to_numpy(dtype=float), vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(heat.shape[1]), heat.columns, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(heat)), heat.index, fontsize=8)
        for (i, j), v in np.ndenumerate(heat.to_numpy(dtype=float)):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 50 else "black")
        fig.colorbar(im, ax=ax, label="F1 (%)")
        ax.set_title(f"{fig_data.title}\n{subtitle}", fontsize=10)
    else:
        d = fig_data.data
        groups = list(dict.fromkeys(d["group"]))
        series = fig_data.series_order or list(dict.fromkeys(d["series"]))
        ncols = 2 if fig_data.per_au is not None else 1
        width = max(5.5, 1.1 + 0.5 * len(groups) * max(1, len(series)) ** 0.8)
        fig, axes = plt.subplots(1, ncols, figsize=(width + (7 if ncols == 2 else 0), 4.2), squeeze=False,
                                 gridspec_kw={"width_ratios": [1, 1.6]} if ncols == 2 else None)
        ax = axes[0, 0]
        bar_w = 0.8 / max(1, len(series))
        colors = plt.get_cmap("tab10")
        for k, s in enumerate(series):
            vals = [d.loc[(d["group"] == g) & (d["series"] == s), "value"] for g in groups]
            vals = [float(v.iloc[0]) if len(v) else np.nan for v in vals]
            x = np.arange(len(groups)) + (k - (len(series) - 1) / 2) * bar_w
            bars = ax.bar(x, vals, bar_w, label=s, color=colors(k % 10))
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        ax.set_xticks(np.arange(len(groups)), [_wrap(g) for g in groups], fontsize=8)
        ax.set_ylabel("mean F1 over AUs (%)")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.12), ncol=1 if len(series) < 4 else 2,
                  frameon=False)
        ax.set_title(f"{fig_data.title}\n{subtitle}", fontsize=9)
        if fig_data.per_au is not None:
            ax2 = axes[0, 1]
            pa = fig_data.per_au
            x = np.arange(pa.shape[1])
            for k, (model, row) in enumerate(pa.iterrows()):
                is_ens = str(model).startswith("ens-")
                ax2.plot(x, row.to_numpy(dtype=float), marker="o", lw=2.5 if is_ens else 1, color=colors(k % 10),
                         label=model, zorder=3 if is_ens else 2)
            ax2.set_xticks(x, pa.columns, rotation=45, fontsize=8)
            ax2.set_ylabel("F1 (%)")
            ax2.set_ylim(0, 105)
            ax2.set_title("per AU", fontsize=9)
            ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    written = []
    for fmt in formats:
        path = out_stem.with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight")
        written.append(path)
    plt.close(fig)
    return written


# ------------------------------------------------------------------------------------------------- report
def build_report(metrics_files: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *,
                 corpus: str, split: str | None = None, paper_models: Mapping[str, str] | None = None,
                 ensembles: Mapping[str, Mapping[str, Any]] | None = None, paper_ensembles: Sequence[str] = (),
                 formats: Sequence[str] = FORMATS) -> dict[str, Any]:
    """Write every table and figure into ``out_dir``; returns ``{split, notes, headline}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = read_metrics(metrics_files)
    if metrics.empty:
        raise ReportError("no metrics to report: every metrics file is empty")
    split = choose_split(metrics, split)
    tables = {
        "f1_per_au": per_au_table(metrics, "f1"),
        "rate_per_au": per_au_table(metrics, "accuracy"),
        "headline": headline(metrics, split),
        "paper_comparison": paper_comparison(metrics, paper_models, corpus, split),
    }
    for name, df in tables.items():
        write_csv_atomic(df, out / f"{name}.csv")
        write_text_atomic(to_markdown(df), out / f"{name}.md")
    figs = figure_data(metrics, split, ensembles, paper_ensembles)
    notes = {}
    for fd in figs:
        draw_figure(fd, out / fd.name, corpus=corpus, split=split, formats=formats)
        if fd.note:
            notes[fd.name] = fd.note
            log.info("figure %s: %s", fd.name, fd.note)
    write_text_atomic(_index_md(tables, figs, corpus, split), out / "index.md")
    write_text_atomic(_html(tables, figs, corpus, split), out / "report.html")
    log.info("report of %d models/ensembles (split %s) written to %s", len(tables["headline"]), split, out)
    return {"split": split, "notes": notes, "headline": tables["headline"]}


_TABLE_TITLES = {
    "headline": "Headline: mean F1 and classification rate per model and ensemble, best first",
    "f1_per_au": "F1 (%) per AU",
    "rate_per_au": "Classification rate (%) per AU",
    "paper_comparison": "The paper's published numbers beside ours",
}


def _index_md(tables: Mapping[str, pd.DataFrame], figs: Sequence[FigureData], corpus: str, split: str) -> str:
    lines = [f"# AU recognition report ({corpus})", "",
             f"Figures and the headline show split `{split}`; the per-AU tables show every split. "
             "F1 and classification rate in percent; `mean` averages the evaluated AUs, `mean12` / `mean8` the "
             "12 DISFA AUs / the 8 standard ones (only where all of them are evaluated).",
             ""]
    if corpus.lower().startswith("synthetic"):
        lines += ["**The corpus is synthetic**: these numbers show that the chain runs; they say nothing about "
                  "performance on real faces and are not comparable with the paper's.", ""]
    for name in ("headline", "paper_comparison", "f1_per_au", "rate_per_au"):
        lines += [f"## {_TABLE_TITLES[name]}", "", to_markdown(tables[name]), f"([CSV]({name}.csv))", ""]
    lines += ["## Figures", ""]
    for fd in figs:
        lines.append(f"- [{fd.title}]({fd.name}.png) ([SVG]({fd.name}.svg))" + (f": {fd.note}" if fd.note else ""))
    return "\n".join(lines) + "\n"


def _html(tables: Mapping[str, pd.DataFrame], figs: Sequence[FigureData], corpus: str, split: str) -> str:
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>AU recognition report ({html.escape(corpus)})</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#666}</style></head><body>",
             f"<h1>AU recognition report</h1><p>Corpus: <b>{html.escape(corpus)}</b>; figures and headline: split "
             f"<code>{html.escape(split)}</code>. F1 and classification rate in percent.</p>"]
    if corpus.lower().startswith("synthetic"):
        parts.append("<p><b>The corpus is synthetic</b>: these numbers show that the chain runs; they say nothing "
                     "about performance on real faces and are not comparable with the paper's.</p>")
    for name in ("headline", "paper_comparison", "f1_per_au", "rate_per_au"):
        parts.append(f"<h2>{html.escape(_TABLE_TITLES[name])}</h2>")
        parts.append(tables[name].to_html(index=False, na_rep="", float_format=lambda v: f"{v:.1f}"))
    parts.append("<h2>Figures</h2>")
    for fd in figs:
        parts.append(f"<h3>{html.escape(fd.title)}</h3>")
        if fd.note:
            parts.append(f"<p class='note'>{html.escape(fd.note)}</p>")
        else:
            parts.append(f"<img src='{fd.name}.png' alt='{html.escape(fd.title)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


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
    else:
        files = find_metrics(results)
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
    show = head[["rank", "model", "kind", "f1_mean", "rate_mean"]].rename(
        columns={"f1_mean": "F1", "rate_mean": "rate"})
    lines.append(show.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    return "\n".join(lines)
