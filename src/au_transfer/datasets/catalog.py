"""The corpora of one workflow config: the adapter of ``data.corpus`` (reading ``data_root``) and the extra corpora
of ``data.corpora`` (each with a subject prefix), and which corpus each subject and recording belongs to.

The workflow (``common.smk``), :func:`au_transfer.plan.check_workflow` and the labels stage ask this catalog, never a
corpus module directly. A split's subjects are expanded here into recordings, the unit of the per-frame stages and
of the classifiers' files; a split may mix corpora (cross-corpus evaluation: e.g. train on DISFA, test on BP4D over
the AUs both code).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .base import Corpus, CorpusError, Recording, get_corpus, subject_of


def corpus_specs(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{corpus, root, prefix, options, key}`` of every configured corpus, the primary one first. The DISFA
    adapter's camera is ``data.camera``."""
    data = cfg["data"]
    specs = [{"corpus": data.get("corpus", "disfa"), "root": cfg["data_root"], "prefix": "",
              "options": dict(data.get("options") or {}), "key": "data.corpus"}]
    for i, extra in enumerate(data.get("corpora") or []):
        specs.append({"corpus": extra["corpus"], "root": extra["root"], "prefix": extra["prefix"],
                      "options": dict(extra.get("options") or {}), "key": f"data.corpora[{i}]"})
    for spec in specs:
        if spec["corpus"] == "disfa":
            spec["options"].setdefault("camera", data.get("camera", "left"))
    return specs


def corpus_from_spec(spec: Mapping[str, Any]) -> Corpus:
    """The adapter of one spec (:func:`corpus_specs`); also what the labels job rebuilds from its params."""
    return get_corpus(spec["corpus"], spec["root"], prefix=spec.get("prefix", ""), options=spec.get("options"),
                      key=spec.get("key", "data.corpus"))


class Catalog:
    """The configured corpora and the subject -> corpus / recordings lookups of a workflow."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.specs = corpus_specs(cfg)
        prefixes = [s["prefix"] for s in self.specs]
        if len(set(prefixes)) != len(prefixes):
            raise CorpusError(f"data.corpora: two corpora share a subject prefix ({prefixes}); give each its own")
        self.corpora = [corpus_from_spec(s) for s in self.specs]
        data = cfg["data"]
        default = int(data.get("threshold", 2))
        #: each corpus's threshold of "present" (intensity corpora): data.threshold, or its data.corpora entry's
        self.thresholds = [default] + [int(e["threshold"]) if e.get("threshold") is not None else default
                                       for e in data.get("corpora") or []]
        self._recordings: dict[str, list[Recording]] = {}  # subject -> its recordings, listed once

    @property
    def primary(self) -> Corpus:
        return self.corpora[0]

    def corpus_of(self, subject: str) -> Corpus:
        """The corpus a subject id belongs to: the extra corpus whose prefix it carries, else the primary one."""
        subject = subject_of(subject)
        for c in self.corpora[1:]:
            if subject.startswith(c.prefix):
                return c
        return self.primary

    def spec_of(self, subject: str) -> dict[str, Any]:
        """The spec (:func:`corpus_specs`) of a subject's corpus (the labels job rebuilds its adapter from it)."""
        return self.specs[self.corpora.index(self.corpus_of(subject))]

    def check_subjects(self, subjects: Iterable[str], key: str = "splits") -> None:
        """Every subject belongs to its corpus (named by its prefix); the error lists a few known ids."""
        by_corpus: dict[int, list[str]] = {}
        for s in subjects:
            by_corpus.setdefault(self.corpora.index(self.corpus_of(s)), []).append(s)
        for i, subs in by_corpus.items():
            c = self.corpora[i]
            known = set(c.subjects())
            bad = [s for s in subs if s not in known]
            if bad:
                sample = ", ".join(sorted(known)[:4]) + (" ..." if len(known) > 4 else "")
                raise CorpusError(f"{key}: subject(s) {bad} are not in corpus {c.name} ({self.specs[i]['key']}, "
                                  f"{c.root}); its subjects are {sample or 'none found'}")

    def check_aus(self, aus: Sequence[int], subjects: Iterable[str]) -> None:
        """Every configured AU is coded by every corpus that a split reads."""
        used = {self.corpora.index(self.corpus_of(s)) for s in subjects}
        for i in sorted(used):
            self.corpora[i].check_aus(aus, key=f"data.aus ({self.specs[i]['key']} = {self.corpora[i].name})")

    def recordings(self, subject: str) -> list[Recording]:
        """The recordings of a subject (its corpus's adapter; listed once per catalog)."""
        if subject not in self._recordings:
            recs = self.corpus_of(subject).recordings(subject)
            if not recs:
                raise CorpusError(f"subject {subject}: corpus {self.corpus_of(subject).name} has no recording of it")
            self._recordings[subject] = recs
        return self._recordings[subject]

    def recording_ids(self, subjects: Iterable[str]) -> list[str]:
        """Recording ids of subjects, subject by subject in the given order."""
        return [r.id for s in subjects for r in self.recordings(s)]

    def recording(self, recording_id: str) -> Recording:
        """The :class:`Recording` of an id."""
        for r in self.recordings(subject_of(recording_id)):
            if r.id == recording_id:
                return r
        raise CorpusError(f"no recording {recording_id!r} in corpus {self.corpus_of(recording_id).name}")

    def corpus_name(self, subject: str) -> str:
        """The label of a subject's corpus in reports: its adapter name (with the prefix for extra corpora)."""
        c = self.corpus_of(subject)
        return c.name if not c.prefix else f"{c.name} ({c.prefix})"

    # ------------------------------------------------------------------------------------ who, and what present is
    def person_of(self, subject: str) -> str:
        """Who a subject (or recording) is across corpora (:meth:`~.base.Corpus.person_id`): the id the
        subject-exclusive check compares, so that DISFA's ``SN001`` and DISFA+'s ``dplus-SN001`` count once."""
        subject = subject_of(subject)
        return self.corpus_of(subject).person_id(subject)

    def threshold_of(self, subject: str) -> int:
        """The threshold of "present" of a subject's (or recording's) corpus (used where it codes intensity)."""
        return self.thresholds[self.corpora.index(self.corpus_of(subject))]

    def present_of(self, subject: str) -> str:
        """The definition of "present" of a subject's corpus, in words (:meth:`~.base.Corpus.present`)."""
        return self.corpus_of(subject).present(self.threshold_of(subject))

    def threshold_param(self, recordings: Iterable[str]) -> int | dict[str, int]:
        """The ``threshold`` a job reading these recordings' labels gets: one number when their corpora share it
        (always with one corpus), else ``{recording: threshold}`` (:func:`au_transfer.labels.threshold_for`)."""
        by_rec = {r: self.threshold_of(r) for r in recordings}
        values = set(by_rec.values())
        return values.pop() if len(values) == 1 else by_rec

    def split_corpora(self, train: Iterable[str], test: Iterable[str]) -> dict[str, str]:
        """The corpora a split trains (``train``: its train + val subjects) and tests on, and their definitions
        of "present": ``{train, test, train_present, test_present}`` (the summary's corpus columns; several
        corpora joined with ``+``, definitions given per corpus when they differ)."""
        out = {}
        for which, subjects in (("train", list(train)), ("test", list(test))):
            names = sorted({self.corpus_name(s) for s in subjects})
            defs = {self.corpus_name(s): self.present_of(s) for s in subjects}
            out[which] = "+".join(names)
            distinct = set(defs.values())
            out[f"{which}_present"] = (distinct.pop() if len(distinct) == 1 else
                                       "; ".join(f"{n}: {defs[n]}" for n in names))
        return out
