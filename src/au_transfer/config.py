"""Configuration helpers that do not need Snakemake: splits, subjects, AU lists and model ids.

Schema validation (with defaults) happens in the Snakefile through ``snakemake.utils.validate`` and the schema
files in ``au_transfer/schemas/`` (:data:`SCHEMA_DIR`, the one source of defaults for the workflow and the
library); :func:`check_splits` adds the checks a JSON schema cannot express.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import AU_REGION, CROP_REGIONS, DISFA_AUS

#: All 27 DISFA subjects.
DISFA_SUBJECTS: tuple[str, ...] = tuple(
    [f"SN{i:03d}" for i in range(1, 14)]
    + [f"SN{i:03d}" for i in (16, 17, 18, 21)]
    + [f"SN{i:03d}" for i in range(23, 33)]
)
#: A subject id in a split: letters, digits, '_' and '-' (DISFA SN001, BP4D F001, a prefixed bp4d-F001).
SUBJECT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
SETS: tuple[str, ...] = ("train", "val", "test")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


@dataclass(frozen=True)
class Split:
    """One subject-exclusive split."""

    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def subjects(self, which: str) -> tuple[str, ...]:
        """Subjects of one set (``train``, ``val`` or ``test``)."""
        if which not in SETS:
            raise ConfigError(f"unknown set {which!r} of split {self.name!r}; expected one of {SETS}")
        return getattr(self, which)

    @property
    def all(self) -> tuple[str, ...]:
        return self.train + self.val + self.test

    def set_of(self, subject: str) -> str:
        """Which set a subject belongs to."""
        for which in SETS:
            if subject in getattr(self, which):
                return which
        raise ConfigError(f"subject {subject} is not in split {self.name!r}")


def check_splits(splits: Mapping[str, Mapping[str, Iterable[str]]]) -> dict[str, Split]:
    """Validate the ``splits`` section and return :class:`Split` objects.

    Errors name the key: a subject in two sets of one split, a subject listed twice, an empty train or test set,
    or a malformed subject id.
    """
    out: dict[str, Split] = {}
    if not splits:
        raise ConfigError("config key 'splits' is empty: define at least one split with train, val and test")
    for name, sets in splits.items():
        if not re.fullmatch(r"[A-Za-z0-9_]+", str(name)):
            raise ConfigError(f"splits.{name}: a split name may hold only letters, digits and '_'")
        unknown = set(sets) - set(SETS)
        if unknown:
            raise ConfigError(f"splits.{name}: unknown key(s) {sorted(unknown)}; expected {list(SETS)}")
        seen: dict[str, str] = {}
        lists: dict[str, tuple[str, ...]] = {}
        for which in SETS:
            subjects = tuple(sets.get(which, []) or [])
            for s in subjects:
                if not SUBJECT_RE.match(str(s)):
                    raise ConfigError(f"splits.{name}.{which}: {s!r} is not a subject id (letters, digits, '_' and "
                                      "'-', like SN001 or F001)")
                if s in seen:
                    where = "twice in" if seen[s] == which else f"in both {seen[s]} and"
                    raise ConfigError(f"splits.{name}: subject {s} is {where} {which}; splits must be subject-exclusive")
                seen[s] = which
            lists[which] = subjects
        for which in ("train", "test"):
            if not lists[which]:
                raise ConfigError(f"splits.{name}.{which} is empty")
        out[str(name)] = Split(str(name), lists["train"], lists["val"], lists["test"])
    return out


def check_subject_exclusive(train: Iterable[str], val: Iterable[str], test: Iterable[str], *, split: str = "",
                            error: type[Exception] = ConfigError,
                            person_of: Callable[[str], str] | None = None) -> None:
    """Refuse overlapping train/val/test subject lists (a subject in two sets leaks identity into evaluation).

    The one check of a job's sets (classifiers, LSTM, fine-tuning) and of a config's splits across corpora; raises
    ``error`` naming the subjects, both sets and, when given, the split. (:func:`check_splits` checks the config's
    ``splits`` section itself.) The sets may list recordings (``F001.T1``): two recordings of one subject in two
    sets are refused too (:func:`subject_of`). ``person_of`` maps a subject to who it is across corpora
    (:meth:`au_transfer.datasets.catalog.Catalog.person_of`: DISFA's ``SN001`` and DISFA+'s ``dplus-SN001`` are one
    person), so that one person under two corpus ids in two sets is refused as well.
    """
    who = person_of or (lambda s: s)
    sets: dict[str, dict[str, set[str]]] = {}  # set -> person -> its subject ids there
    for which, items in (("train", train), ("val", val), ("test", test)):
        sets[which] = {}
        for x in items:
            s = subject_of(x)
            sets[which].setdefault(who(s), set()).add(s)
    names = list(sets)
    where = f"split {split!r}: " if split else ""
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(set(sets[a]) & set(sets[b]))
            if not both:
                continue
            if all(sets[a][p] == sets[b][p] == {p} for p in both):
                raise error(f"{where}subject(s) {both} in both {a} and {b}: splits must be subject-exclusive")
            named = "; ".join(f"{p}: {', '.join(sorted(sets[a][p]))} in {a}, {', '.join(sorted(sets[b][p]))} in {b}"
                              for p in both)
            raise error(f"{where}person(s) {both} in both {a} and {b} ({named}): splits must be "
                        "subject-exclusive, and one person recorded in two corpora is one subject")


def subject_of(recording: str) -> str:
    """The subject of a recording id: ``F001.T1`` -> ``F001``; a subject id (``SN001``) is its own recording
    (:mod:`au_transfer.datasets.base`)."""
    return str(recording).split(".", 1)[0]


def split_subjects(splits: Mapping[str, Split]) -> list[str]:
    """All subjects used by any split, sorted."""
    return sorted({s for sp in splits.values() for s in sp.all})


def check_aus(aus: Iterable[int], coded: Iterable[int] | None = DISFA_AUS, corpus: str = "DISFA") -> tuple[int, ...]:
    """Validate an AU list against the AUs a corpus codes (default DISFA's 12; ``coded=None``: any AU 1-99), in
    increasing order (DISFA's and BP4D's order)."""
    aus = [int(a) for a in aus]
    known = list(coded) if coded is not None else list(range(1, 100))
    bad = [a for a in aus if a not in known]
    if bad:
        raise ConfigError(f"data.aus: AU(s) {bad} are not annotated in {corpus}; choose from {known}")
    if len(set(aus)) != len(aus):
        raise ConfigError(f"data.aus: duplicate AU in {aus}")
    return tuple(sorted(aus))


def region_for(region: str, au: int, au_region: Mapping[int | str, str] | None = None) -> str:
    """Resolve a model's region for one AU: ``au_region`` becomes the crop region of paper Table VI."""
    if region != "au_region":
        if region not in CROP_REGIONS:
            raise ConfigError(f"unknown region {region!r}; expected one of {CROP_REGIONS} or 'au_region'")
        return region
    table = {int(k): v for k, v in (au_region or AU_REGION).items()}
    if au not in table:
        raise ConfigError(f"regions.au_region has no region for AU{au}")
    return table[au]


MODEL_RE = re.compile(r"^(?P<backbone>[A-Za-z0-9_.]+)-(?P<region>face|upper|middle|lower|au_region)-(?P<classifier>[a-z0-9_]+)$")


def model_id(backbone: str, region: str, classifier: str) -> str:
    """The model id of CONVENTIONS: ``{backbone}-{region}-{classifier}``."""
    mid = f"{backbone}-{region}-{classifier}"
    if not MODEL_RE.match(mid):
        raise ConfigError(f"invalid model id {mid!r}")
    return mid


def parse_model_id(mid: str) -> tuple[str, str, str]:
    """Split a model id into (backbone, region, classifier)."""
    m = MODEL_RE.match(mid)
    if not m:
        raise ConfigError(f"{mid!r} is not a model id of the form backbone-region-classifier")
    return m["backbone"], m["region"], m["classifier"]


# ------------------------------------------------------------------------------------------- schema validation
def _with_defaults(validator_cls):
    """Extend a jsonschema validator so that it fills in ``default`` values of missing properties."""
    from jsonschema import validators

    validate_properties = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    import copy

                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_cls, {"properties": set_defaults})


def validate_section(data: dict, schema_file: str, section: str | None = None) -> dict:
    """Validate ``data`` against a YAML/JSON schema file, filling defaults in place.

    Raises :class:`ConfigError` naming the offending key as a dotted path (``faces.size``), so that a wrong key or
    value stops a run before any job starts.
    """
    import yaml
    from jsonschema import Draft202012Validator

    with open(schema_file) as fh:
        schema = yaml.safe_load(fh)
    validator = _with_defaults(Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        msgs = []
        for err in errors:
            path = ".".join(str(p) for p in ([section] if section else []) + list(err.absolute_path))
            msgs.append(f"config key '{path or '<top level>'}': {err.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(msgs))
    return data


SECTIONS: tuple[str, ...] = (
    "data", "faces", "backbones", "features", "regions", "classifiers", "regressors", "finetune", "ensembles",
    "evaluation", "report", "predict",
)


SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def schema_defaults(section: str) -> dict:
    """The defaults of one config section, as its schema states them (what an empty section validates to)."""
    return validate_section({}, str(SCHEMA_DIR / f"{section}.schema.yaml"), section)


def validate_config(cfg: dict, schema_dir: str | os.PathLike[str] = SCHEMA_DIR) -> dict:
    """Validate a whole config (top level, then each section's schema file in ``schema_dir``), filling defaults."""
    validate_section(cfg, str(Path(schema_dir) / "config.schema.yaml"))
    for section in SECTIONS:
        cfg.setdefault(section, {})
        validate_section(cfg[section], str(Path(schema_dir) / f"{section}.schema.yaml"), section)
    check_splits(cfg["splits"])
    check_aus(cfg["data"]["aus"], coded=None)  # against the corpora's codes: au_transfer.plan.check_workflow
    return cfg
