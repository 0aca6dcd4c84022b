"""The whole report in one folder: every table (CSV, Markdown), every figure, ``index.md`` and ``report.html``."""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import write_csv_atomic, write_text_atomic
from .figures import FORMATS, FigureData, draw_figure, figure_data
from .sota import sota_comparison
from .tables import (
    ReportError,
    choose_split,
    corpora_table,
    coverage,
    coverage_note,
    headline,
    paper_comparison,
    per_au_table,
    present_notes,
    read_metrics,
    seeds_note,
    to_markdown,
)

log = logging.getLogger(__name__)


def build_report(metrics_files: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *,
                 corpus: str, split: str | None = None, paper_models: Mapping[str, str] | None = None,
                 ensembles: Mapping[str, Mapping[str, Any]] | None = None, paper_ensembles: Sequence[str] = (),
                 formats: Sequence[str] = FORMATS, corpora: Mapping[str, Mapping[str, str]] | None = None,
                 intensity_summary: str | os.PathLike[str] | None = None,
                 splits: Mapping[str, Mapping[str, Sequence[str]]] | None = None, aus: Sequence[int] | None = None,
                 threshold: int | None = None) -> dict[str, Any]:
    """Write every table and figure into ``out_dir``; returns ``{split, notes, headline}``. ``corpora`` (split ->
    {train, test} corpus) gives the within- and cross-corpus table; with ``splits`` (split -> {train, val, test}
    subjects), ``aus`` (the configured AUs) and ``threshold`` (``data.threshold``), the published state of the art
    beside ours when they run a standard 3-fold protocol (:mod:`.sota`). With ``intensity_summary``
    (``results/intensity/summary.csv``), the intensity table and figure too (:mod:`.intensity`)."""
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
        "coverage": coverage(metrics),
        "paper_comparison": paper_comparison(metrics, paper_models, corpus, split),
        "sota_comparison": sota_comparison(metrics, splits=splits, corpora=corpora, aus=aus, threshold=threshold),
        "corpora": corpora_table(metrics, corpora),
    }
    nan_note = _nan_note(tables["headline"])
    if nan_note:
        log.warning("report: %s", nan_note)
    for name, df in tables.items():
        write_csv_atomic(df, out / f"{name}.csv")
        write_text_atomic(to_markdown(_shown(df)), out / f"{name}.md")
    notes_present = present_notes(corpora)
    for line in notes_present:
        if line.startswith("**Warning**"):
            log.warning("%s", line.replace("**", ""))
    figs = figure_data(metrics, split, ensembles, paper_ensembles)
    notes = {}
    for fd in figs:
        draw_figure(fd, out / fd.name, corpus=corpus, split=split, formats=formats)
        if fd.note:
            notes[fd.name] = fd.note
            log.info("figure %s: %s", fd.name, fd.note)
    extra = {"md": "", "html": ""}
    if intensity_summary is not None:
        from .intensity import intensity_report

        extra = intensity_report(intensity_summary, out, split=split, corpus=corpus, formats=formats)
    write_text_atomic(_index_md(tables, figs, corpus, split, notes_present) + extra["md"], out / "index.md")
    write_text_atomic(_html(tables, figs, corpus, split, notes_present).replace(
        "</body></html>", extra["html"] + "\n</body></html>"), out / "report.html")
    log.info("report of %d models/ensembles (split %s) written to %s", len(tables["headline"]), split, out)
    return {"split": split, "notes": notes, "headline": tables["headline"], "present": notes_present}


_TABLE_TITLES = {
    "headline": "Headline: mean F1 and classification rate per model and ensemble, best first",
    "f1_per_au": "F1 (%) per AU",
    "rate_per_au": "Classification rate (%) per AU",
    "coverage": "Coverage per split: labelled test frames (x AUs), of which with a usable face, and how the others "
                "are scored",
    "paper_comparison": "The paper's published numbers beside ours",
    "sota_comparison": "The published state of the art beside ours (standard 3-fold protocols; F1 %, mean of 3 folds)",
    "corpora": "Within- and cross-corpus: mean F1 (%) per split, with the corpora it trains and tests on",
}


def _nan_note(head: pd.DataFrame) -> str:
    """What the means leave out: the models whose F1 or rate is NaN on some AUs (headline column ``nan_aus``)."""
    if "nan_aus" not in head.columns:
        return ""
    bad = head[head["nan_aus"].astype(object).fillna("").astype(str) != ""]
    if bad.empty:
        return ""
    return ("means over AUs leave out the AUs without F1 or classification rate (NaN): "
            + "; ".join(f"{r.model}: AU {r.nan_aus}" for r in bad.itertuples()))


def _shown(df: pd.DataFrame) -> pd.DataFrame:
    """A table as the pages show it: the headline's seed columns only when some model ran over several seeds (the
    CSV keeps them always)."""
    if "n_seeds" in df.columns and not (df["n_seeds"] > 1).any():
        return df.drop(columns=[c for c in df.columns if c == "n_seeds" or c.endswith("_sd")])
    return df


def _index_md(tables: Mapping[str, pd.DataFrame], figs: Sequence[FigureData], corpus: str, split: str,
              present: Sequence[str] = ()) -> str:
    lines = [f"# AU recognition report ({corpus})", "",
             f"Figures and the headline show split `{split}`; the per-AU tables show every split. "
             "F1 and classification rate in percent; `mean` averages the evaluated AUs, `mean12` / `mean8` the "
             "12 DISFA AUs / the 8 standard ones (only where all of them are evaluated).",
             ""]
    lines += [seeds_note(tables["headline"]), ""]
    nan_note = _nan_note(tables["headline"])
    if nan_note:
        lines += [f"**Note**: {nan_note} (headline column `nan_aus`).", ""]
    if corpus.lower().startswith("synthetic"):
        lines += ["**The corpus is synthetic**: these numbers show that the chain runs; they say nothing about "
                  "performance on real faces and are not comparable with the paper's.", ""]
    for name in ("headline", "coverage", "corpora", "paper_comparison", "sota_comparison", "f1_per_au",
                 "rate_per_au"):
        lines += [f"## {_TABLE_TITLES[name]}", ""]
        if name == "headline" and coverage_note(tables["coverage"], split):
            lines += [coverage_note(tables["coverage"], split), ""]
        lines += [to_markdown(_shown(tables[name])), f"([CSV]({name}.csv))", ""]
        if name == "corpora" and present:
            lines += ["What *present* means on each side (the summary's `train_present` / `test_present`):", "",
                      *[f"- {line}" for line in present], ""]
    lines += ["## Figures", ""]
    for fd in figs:
        lines.append(f"- [{fd.title}]({fd.name}.png) ([SVG]({fd.name}.svg))" + (f": {fd.note}" if fd.note else ""))
    return "\n".join(lines) + "\n"


def _html(tables: Mapping[str, pd.DataFrame], figs: Sequence[FigureData], corpus: str, split: str,
          present: Sequence[str] = ()) -> str:
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>AU recognition report ({html.escape(corpus)})</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#666}</style></head><body>",
             f"<h1>AU recognition report</h1><p>Corpus: <b>{html.escape(corpus)}</b>; figures and headline: split "
             f"<code>{html.escape(split)}</code>. F1 and classification rate in percent.</p>",
             f"<p>{html.escape(seeds_note(tables['headline']))}</p>"]
    nan_note = _nan_note(tables["headline"])
    if nan_note:
        parts.append(f"<p><b>Note</b>: {html.escape(nan_note)} (headline column <code>nan_aus</code>).</p>")
    if corpus.lower().startswith("synthetic"):
        parts.append("<p><b>The corpus is synthetic</b>: these numbers show that the chain runs; they say nothing "
                     "about performance on real faces and are not comparable with the paper's.</p>")
    for name in ("headline", "coverage", "corpora", "paper_comparison", "sota_comparison", "f1_per_au",
                 "rate_per_au"):
        parts.append(f"<h2>{html.escape(_TABLE_TITLES[name])}</h2>")
        if name == "headline" and coverage_note(tables["coverage"], split):
            parts.append(f"<p>{html.escape(coverage_note(tables['coverage'], split).replace('`', ''))}</p>")
        parts.append(_shown(tables[name]).to_html(index=False, na_rep="", float_format=lambda v: f"{v:.1f}"))
        if name == "corpora" and present:
            items = "".join("<li>" + re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", re.sub(r"`(.+?)`", r"<code>\1</code>",
                                                                                   html.escape(line))) + "</li>"
                            for line in present)
            parts.append(f"<p>What <i>present</i> means on each side:</p><ul>{items}</ul>")
    parts.append("<h2>Figures</h2>")
    for fd in figs:
        parts.append(f"<h3>{html.escape(fd.title)}</h3>")
        if fd.note:
            parts.append(f"<p class='note'>{html.escape(fd.note)}</p>")
        else:
            parts.append(f"<img src='{fd.name}.png' alt='{html.escape(fd.title)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)

