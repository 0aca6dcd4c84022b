"""The published state of the art beside ours, for the standard subject-exclusive 3-fold protocols.

:data:`PROTOCOLS` defines them: BP4D (12 AUs 1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24; BP4D's occurrence codes)
and DISFA (8 AUs 1, 2, 4, 6, 9, 12, 25, 26; present = intensity >= 2), each three subject parts
(:data:`au_transfer.datasets.bp4d.PARTS`, :data:`au_transfer.datasets.disfa.PARTS`, the lists of JAA-Net's and
ME-GraphAU's tools); a fold tests on one part and trains on the other two. The published numbers (mean F1 and F1
per AU, percent) are in ``au_transfer/data/sota_results.csv``, each row with its source (paper, venue, year,
table), backbone and how it was checked against that source (column ``verified``).

:func:`sota_comparison` puts them beside our models' k-fold mean (``3fold_mean``) only when our configuration
runs the same protocol (:func:`match_protocol`): three folds (``fold1..fold3``, any names of one k-fold group)
whose test subjects are exactly the protocol's parts and whose training (+ validation) subjects are the other two
parts, on the protocol's corpus, with exactly its AU set (and DISFA's threshold 2). Otherwise the table holds one
row per protocol whose note says why nothing is compared. Per-fold numbers are never compared: the papers report
the mean over the three folds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from .. import STANDARD_AUS
from ..datasets import bp4d as _bp4d
from ..datasets import disfa as _disfa
from ..evaluation import fold_groups, nan_aus
from .tables import parse_id


@dataclass(frozen=True)
class Protocol:
    """A published evaluation protocol: corpus, AU set, subject parts, and what "present" means."""

    name: str
    corpus: str
    aus: tuple[int, ...]
    parts: tuple[tuple[str, ...], ...]
    present: str
    threshold: int | None = None  # intensity threshold of "present" (DISFA); None: the corpus's occurrence codes


PROTOCOLS: dict[str, Protocol] = {
    "bp4d_3fold": Protocol("bp4d_3fold", "bp4d", tuple(_bp4d.BP4D_AUS), _bp4d.PARTS,
                           "BP4D's occurrence codes (9 = unknown)"),
    "disfa_3fold": Protocol("disfa_3fold", "disfa", tuple(STANDARD_AUS), _disfa.PARTS, "intensity >= 2", 2),
}
SOTA_COLUMNS: tuple[str, ...] = ("protocol", "who", "method", "backbone", "venue", "year", "split")
TAIL_COLUMNS: tuple[str, ...] = ("mean", "source", "verified", "note")
_CORPUS_RE = re.compile(r"^(?P<name>\S+)(?: \((?P<prefix>.*)\))?$")


def sota_results() -> pd.DataFrame:
    """The published numbers (``au_transfer/data/sota_results.csv``): one row per method, corpus and backbone."""
    with resources.files("au_transfer").joinpath("data/sota_results.csv").open() as fh:
        return pd.read_csv(fh, keep_default_na=False, na_values=[""], dtype={"aus": str, "year": str})


def _strip(subjects: Iterable[str], prefix: str) -> frozenset[str]:
    return frozenset(s[len(prefix):] if prefix and s.startswith(prefix) else s for s in subjects)


def match_protocol(protocol: Protocol, splits: Mapping[str, Mapping[str, Sequence[str]]] | None,
                   corpora: Mapping[str, Mapping[str, str]] | None, aus: Sequence[int] | None,
                   threshold: int | None = None) -> tuple[str | None, str]:
    """``(fold-mean split, "")`` when our splits run ``protocol`` (module docstring), else ``(None, why not)``."""
    want = sorted(protocol.aus)
    have = sorted(int(a) for a in (aus or ()))
    if have != want:
        return None, f"our AUs {have} are not the protocol's {len(want)} AUs {want}"
    if protocol.threshold is not None and threshold is not None and int(threshold) != protocol.threshold:
        return None, f"present is intensity >= {protocol.threshold} in the protocol, >= {threshold} here"
    splits, corpora = dict(splits or {}), dict(corpora or {})
    groups = {name: folds for name, folds in fold_groups(splits).items() if len(folds) == len(protocol.parts)}
    if not groups:
        return None, (f"no group of {len(protocol.parts)} fold splits (fold1..fold{len(protocol.parts)}); "
                      f"splits here: {sorted(splits)}")
    parts = [frozenset(p) for p in protocol.parts]
    why = ""
    for name, folds in groups.items():
        why = _check_group(protocol, folds, splits, corpora, parts)
        if not why:
            return name, ""
    return None, why


def _check_group(protocol: Protocol, folds: Sequence[str], splits: Mapping[str, Mapping[str, Sequence[str]]],
                 corpora: Mapping[str, Mapping[str, str]], parts: Sequence[frozenset[str]]) -> str:
    """Why the fold splits ``folds`` are not ``protocol`` ("" when they are)."""
    tested: set[int] = set()
    for fold in folds:
        if fold not in corpora:
            return f"split {fold}: its corpora are unknown"
        labels = {w: _CORPUS_RE.match(str(corpora[fold][w])) for w in ("train", "test")}
        bad = [str(corpora[fold][w]) for w, m in labels.items() if m is None or m["name"] != protocol.corpus]
        if bad:
            return f"split {fold} uses corpus {bad[0]!r}, the protocol {protocol.corpus!r}"
        prefix = labels["test"]["prefix"] or ""
        sp = splits[fold]
        test = _strip(sp.get("test", ()), prefix)
        train = _strip([*sp.get("train", ()), *sp.get("val", ())], prefix)
        k = next((i for i, p in enumerate(parts) if p == test), None)
        if k is None:
            return f"split {fold} tests on {len(test)} subjects that are not one of the protocol's parts"
        others = frozenset().union(*(p for i, p in enumerate(parts) if i != k))
        if train != others:
            diff = sorted(train ^ others)
            return (f"split {fold} trains (train + val) on other subjects than the protocol's other two parts "
                    f"(differing: {diff[:6]}{' ...' if len(diff) > 6 else ''})")
        tested.add(k)
    if len(tested) != len(parts):
        return "the fold splits do not test each of the protocol's parts once"
    return ""


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _au_columns(aus: Sequence[int]) -> list[str]:
    return [f"AU{a}" for a in sorted(aus)]


def sota_comparison(metrics: pd.DataFrame, *, splits: Mapping[str, Mapping[str, Sequence[str]]] | None,
                    corpora: Mapping[str, Mapping[str, str]] | None, aus: Sequence[int] | None,
                    threshold: int | None = None) -> pd.DataFrame:
    """Published F1 (percent, per AU and mean) beside each of our models' k-fold mean, for the protocol our
    configuration runs (:func:`match_protocol`), best mean first; ``who`` says ``published`` or ``ours``. Without
    such a protocol, one row per protocol whose ``note`` says why nothing is compared."""
    published = sota_results()
    for name, protocol in PROTOCOLS.items():
        split, _ = match_protocol(protocol, splits, corpora, aus, threshold)
        if split is not None:
            return _compare(metrics, published[published["protocol"] == name], protocol, split)
    rows = []
    for name, protocol in PROTOCOLS.items():
        _, why = match_protocol(protocol, splits, corpora, aus, threshold)
        methods = published.loc[published["protocol"] == name, "method"].unique().tolist()
        rows.append({**dict.fromkeys((*SOTA_COLUMNS, *TAIL_COLUMNS), ""), "protocol": name, "who": "published",
                     "method": ", ".join(methods), "note": f"not compared: {why}"})
    return pd.DataFrame(rows, columns=[*SOTA_COLUMNS, *TAIL_COLUMNS])


def _compare(metrics: pd.DataFrame, published: pd.DataFrame, protocol: Protocol, split: str) -> pd.DataFrame:
    cols = _au_columns(protocol.aus)
    rows: list[dict[str, Any]] = []
    for r in published.itertuples(index=False):
        row = r._asdict()
        rows.append({"protocol": protocol.name, "who": "published", "method": r.method, "backbone": r.backbone,
                     "venue": r.venue, "year": r.year, "split": "3-fold mean",
                     **{c: float(row[c]) for c in cols}, "mean": float(r.f1), "source": r.source,
                     "verified": r.verified, "note": _text(row.get("protocol_note"))})
    m = metrics[metrics["split"] == split] if not metrics.empty else metrics
    for model, g in m.groupby("model", sort=False):
        by_au = g.assign(au=g["au"].astype(str)).set_index("au")
        per_au = by_au.loc[[a for a in by_au.index if a.isdigit()]]
        skipped = nan_aus(per_au.reset_index(), ("f1",), warn=False)
        mean = by_au["f1"].get("mean", np.nan)
        note = "validation subjects held out of the two training parts"
        if skipped:
            note += f"; AU {' '.join(map(str, skipped))} without F1 (NaN) left out of the mean"
        rows.append({"protocol": protocol.name, "who": "ours", "method": model,
                     "backbone": parse_id(str(model))["backbone"], "venue": "", "year": "", "split": split,
                     **{c: round(100 * float(by_au["f1"].get(c[2:], np.nan)), 1) for c in cols},
                     "mean": round(100 * float(mean), 1), "source": "", "verified": "", "note": note})
    out = pd.DataFrame(rows, columns=[*SOTA_COLUMNS, *cols, *TAIL_COLUMNS])
    return out.sort_values("mean", ascending=False, na_position="last").reset_index(drop=True)
