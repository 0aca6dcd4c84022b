"""The intensity part of the report (docs/intensity.md): a per-AU table of ICC(3,1), PCC and MAE for every
regressor and regressor ensemble, and a per-AU figure of the report split, beside the occurrence tables.

Input: ``results/intensity/summary.csv`` (columns ``model, split, au, icc, pcc, mae, mse, n``, and the spread over
seeded runs ``icc_sd, pcc_sd, mae_sd, mse_sd, n_seeds``: config ``seeds``). Output files:
:data:`INTENSITY_TABLE` ``.csv/.md`` and :data:`INTENSITY_FIGURE` ``.png/.svg``; the caller puts the returned
Markdown and HTML fragments into ``index.md`` and ``report.html``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path, write_csv_atomic, write_text_atomic
from .tables import to_markdown

INTENSITY_TABLE = "intensity_per_au"
INTENSITY_FIGURE = "fig_intensity_per_au"
METRICS = {"icc": "ICC(3,1)", "pcc": "PCC", "mae": "MAE"}
TITLE = "AU intensity (0-5): ICC(3,1), PCC and MAE per AU on the test subjects"
NOTE = ("ICC(3,1): consistency of predicted and coded intensity (0 = a constant prediction, 1 = perfect up to an "
        "offset); PCC: Pearson correlation; MAE in intensity units. Models ending in _med subtract each "
        "sequence's median feature vector first (person-specific normalisation); ens-* are regressor ensembles. A model "
        "with n_seeds > 1 (the LSTM regressors, config seeds) shows the mean over its runs, mean_sd the standard "
        "deviation of its mean over the runs.")


def intensity_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows = (model, split, metric) with ICC, PCC and MAE; columns AU1 ... then ``mean``, its standard deviation
    over seeded runs ``mean_sd`` (empty for one run) and ``n_seeds``; best mean ICC first."""
    if summary.empty:
        return pd.DataFrame(columns=["model", "split", "metric", "mean"])
    s = summary.assign(au=summary["au"].astype(str))
    aus = sorted((a for a in s["au"].unique() if a != "mean"), key=int)
    order = (s[s["au"] == "mean"].sort_values(["split", "icc"], ascending=[True, False])[["model", "split"]]
             .drop_duplicates())
    rows = []
    for r in order.itertuples(index=False):
        g = s[(s["model"] == r.model) & (s["split"] == r.split)].set_index("au")
        for metric, label in METRICS.items():
            rows.append({"model": r.model, "split": r.split, "metric": label,
                         **{f"AU{a}": float(g.loc[a, metric]) if a in g.index else np.nan for a in aus},
                         "mean": float(g.loc["mean", metric]),
                         "mean_sd": float(g.loc["mean", f"{metric}_sd"]) if f"{metric}_sd" in g.columns else np.nan,
                         "n_seeds": int(g.loc["mean", "n_seeds"]) if "n_seeds" in g.columns else 1})
    return pd.DataFrame(rows)


def draw_intensity(summary: pd.DataFrame, split: str, out_stem: Path, *, corpus: str,
                   formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Three panels (ICC, PCC, MAE) of grouped bars per AU, one bar per model of ``split``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary[(summary["split"] == split) & (summary["au"].astype(str) != "mean")]
    s = s.assign(au=s["au"].astype(int))
    models = list(dict.fromkeys(s["model"]))
    aus = sorted(s["au"].unique())
    fig, axes = plt.subplots(3, 1, figsize=(max(7.0, 1.2 + 0.45 * len(aus) * max(1, len(models)) ** 0.7), 8.5),
                             sharex=True)
    colors = plt.get_cmap("tab10")
    w = 0.8 / max(1, len(models))
    for ax, (metric, label) in zip(axes, METRICS.items(), strict=True):
        for k, m in enumerate(models):
            g = s[s["model"] == m].set_index("au")
            vals = [float(g.loc[a, metric]) if a in g.index else np.nan for a in aus]
            ax.bar(np.arange(len(aus)) + (k - (len(models) - 1) / 2) * w, vals, w, label=m, color=colors(k % 10))
        ax.set_ylabel(label)
        ax.axhline(0, color="0.3", lw=0.8)
        if metric != "mae":
            ax.set_ylim(min(-0.1, float(np.nanmin(s[metric])) - 0.05) if len(s) else -0.1, 1.0)
    axes[0].set_title(f"{TITLE}\n{corpus}, split {split}", fontsize=9)
    axes[-1].set_xticks(np.arange(len(aus)), [f"AU{a}" for a in aus], fontsize=8)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    out = []
    for fmt in formats:
        path = Path(out_stem).with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight")
        out.append(path)
    plt.close(fig)
    return out


def intensity_report(summary_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, split: str,
                     corpus: str, formats: Sequence[str] = ("png", "svg")) -> dict[str, str]:
    """Write the intensity table and figure into ``out_dir``; returns the ``md`` and ``html`` fragments."""
    out = Path(out_dir)
    summary = pd.read_csv(summary_path, dtype={"au": str})
    table = intensity_table(summary)
    write_csv_atomic(table, out / f"{INTENSITY_TABLE}.csv")
    write_text_atomic(to_markdown(table, "{:.2f}"), out / f"{INTENSITY_TABLE}.md")
    if split not in set(summary["split"]):
        split = str(summary["split"].iloc[0]) if len(summary) else split
    draw_intensity(summary, split, out / INTENSITY_FIGURE, corpus=corpus, formats=formats)
    md = "\n".join([f"## {TITLE}", "", NOTE, "", to_markdown(table, "{:.2f}"), f"([CSV]({INTENSITY_TABLE}.csv))",
                    "", f"![{TITLE}]({INTENSITY_FIGURE}.png)", ""])
    frag = "\n".join([f"<h2>{html.escape(TITLE)}</h2>", f"<p class='note'>{html.escape(NOTE)}</p>",
                      table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.2f}"),
                      f"<img src='{INTENSITY_FIGURE}.png' alt='{html.escape(TITLE)}'>"])
    return {"md": md, "html": frag}
