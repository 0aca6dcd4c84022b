"""The labels stage: ``results/labels/{recording}.csv`` and its frame report, from any corpus adapter.

The table holds the recording's labelled frames that its source has (a video's frames 1..n as its header counts
them, an image folder's images); the JSON report says how the label, source and landmark frame sets line up, and
how many labels are unknown per AU. DISFA's table and report are those of :func:`au_transfer.datasets.disfa.export_labels`
(same columns, same frames).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import write_csv_atomic, write_text_atomic
from .base import CorpusError, Recording
from .catalog import corpus_from_spec

log = logging.getLogger(__name__)


def label_columns(table: pd.DataFrame) -> list[str]:
    """The label columns of a table (``AU{n}`` intensities and ``AU{n}_c`` occurrences)."""
    return [c for c in table.columns if c.startswith("AU")]


def export_recording_labels(spec: Mapping[str, Any], recording_id: str, aus: Iterable[int], out_csv: str | Path,
                            out_json: str | Path | None = None) -> dict:
    """Write the label table of one recording of the corpus ``spec`` (:func:`~.catalog.corpus_specs`) and its report.

    DISFA goes through its own reader (:func:`au_transfer.datasets.disfa.export_labels`: identical files). Other
    corpora: labelled frames beyond the source's frame count are dropped with one warning naming them.
    """
    from ..faces.video import video_info
    from .disfa import _ranges, export_labels

    corpus = corpus_from_spec(spec)
    rec: Recording = corpus.recording(recording_id)
    aus = [int(a) for a in aus]
    if corpus.name == "disfa":
        out = export_labels(corpus.root, corpus.own_id(rec.subject), aus, out_csv, out_json,
                            camera=corpus.options.get("camera", "left"))
        return out.to_dict()
    table = corpus.labels(rec, aus)
    try:
        n_source = video_info(rec.source, rec.id).n_frames
    except Exception as exc:  # VideoError: a missing or unreadable source names the file
        raise CorpusError(f"recording {rec.id} ({corpus.name}): {exc}") from exc
    beyond = table["frame"] > n_source
    dropped = _ranges(table.loc[beyond, "frame"].tolist())
    if beyond.any():
        log.warning("recording %s: %d labelled frame(s) beyond the %d frames of %s are dropped (%s)", rec.id,
                    int(beyond.sum()), n_source, rec.source, dropped)
    table = table[~beyond].reset_index(drop=True)
    write_csv_atomic(table, out_csv)
    report = {
        "recording": rec.id, "subject": rec.subject, "sequence": rec.sequence, "corpus": corpus.name,
        "source": str(rec.source), "n_source_frames": int(n_source), "n_labels": int(len(table)),
        "frames": _ranges(table["frame"].tolist()),
        "n_labels_beyond_source": int(beyond.sum()), "labels_beyond_source": dropped,
        "unknown": {c: int(table[c].isna().sum()) for c in label_columns(table)},
        "aus": aus,
    }
    if "source_frame" in table:
        report["source_frames"] = _ranges(table["source_frame"].tolist())
    log.info("recording %s: %d labelled frames of %d in %s; unknown labels: %s", rec.id, len(table), n_source,
             rec.source, {k: v for k, v in report["unknown"].items() if v} or "none")
    if out_json is not None:
        write_text_atomic(json.dumps(report, indent=2) + "\n", out_json)
    return report
