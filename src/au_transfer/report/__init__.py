"""The paper-style report: per-AU F1 and classification-rate tables, figures like the paper's Figs. 4-10, the
paper's published numbers beside ours, and the headline table that ``au-transfer summary`` prints.

Input: metrics tables (``results/metrics/{split}/{model}.csv`` or ``results/metrics/summary.csv``) with columns
``model, split, au, f1, accuracy, n_pos, n_neg``; ``au`` is an AU number or a mean row (``mean`` over the evaluated
AUs; ``mean12`` / ``mean8`` when all of those AUs are evaluated: :data:`au_transfer.evaluation.MEAN_SETS`). F1 and
accuracy are fractions in [0, 1]; the report shows percentages, like the paper.

Output, in one folder (``results/report/``), always the same file names so that a workflow can declare them:
tables ``{f1_per_au,rate_per_au,headline,paper_comparison,sota_comparison,corpora}.{csv,md}``, ``report.html`` (every table and figure) and
``index.md``; figures ``{name}.png`` and ``{name}.svg`` for every name in :data:`FIGURES`. A figure whose models the
configuration does not produce is *skipped*: its file holds a short note instead of a chart, and the note is listed
in ``index.md`` and ``report.html``; it never stops the report.

The package is split by what each part makes: :mod:`.tables` (reading metrics, tables, the summary text),
:mod:`.sota` (the published state of the art of the standard 3-fold protocols beside ours),
:mod:`.figures` (figure data and drawing) and :mod:`.build` (:func:`build_report`: the folder, ``index.md``,
``report.html``); every public name is importable from ``au_transfer.report``.
"""

from .build import build_report
from .figures import FIGURES, FORMATS, FigureData, draw_figure, figure_data
from .sota import PROTOCOLS, Protocol, match_protocol, sota_comparison, sota_results
from .tables import (
    HEADLINE_COLUMNS,
    METRIC_COLUMNS,
    PAPER_CORPUS,
    TABLES,
    ReportError,
    choose_split,
    coverage,
    coverage_note,
    find_metrics,
    headline,
    paper_comparison,
    paper_results,
    parse_id,
    per_au_table,
    read_metrics,
    summary_text,
    to_markdown,
)

__all__ = [
    "FIGURES", "FORMATS", "HEADLINE_COLUMNS", "METRIC_COLUMNS", "PAPER_CORPUS", "PROTOCOLS", "TABLES", "FigureData",
    "Protocol", "ReportError", "build_report", "choose_split", "coverage", "coverage_note", "draw_figure",
    "figure_data", "find_metrics", "headline", "match_protocol", "paper_comparison", "paper_results", "parse_id",
    "per_au_table", "read_metrics", "sota_comparison", "sota_results", "summary_text", "to_markdown",
]
