"""Report figures: the data of the paper's Figs. 4-10, the ensembles and the per-AU heatmap, and their drawing.

A figure whose models the configuration does not produce carries a note instead of data (drawn as a short text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..evaluation import MEAN_ROWS
from ..io import atomic_path
from .tables import au_set_label, evaluated_aus, headline, parse_id, per_au_table

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
FORMATS: tuple[str, ...] = ("png", "svg")


@dataclass
class FigureData:
    """What one figure shows: a long table (group, series, value) or a note saying why it is skipped."""

    name: str
    title: str
    data: pd.DataFrame | None = None
    note: str = ""
    per_au: pd.DataFrame | None = None          # optional second panel: rows = series, columns = AU labels
    series_order: list[str] = field(default_factory=list)
    au_label: str = ""                          # the AU set(s) the means average (au_set_label), for the axes


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
    sets = evaluated_aus(metrics, split)
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
        short, _ = au_set_label(sets[m] for m in series if m in sets)
        d = pd.DataFrame({"group": f"mean F1 ({short})", "series": series, "value": [f1[s] for s in series]})
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
    for fd in out:  # the AU set the bars' means average: every model's evaluated AUs on this split
        fd.au_label = au_set_label(sets.values())[1]
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

    subtitle = f"{corpus}, split {split}" + (f"; means over {fig_data.au_label}" if fig_data.au_label else "")
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

