"""Every path of a workflow's results folder, in one place (the file table of docs/DESIGN.md).

The workflow's rules (through ``workflow/rules/common.smk``), the predictor and the package's stages all build
results paths here and nowhere else. Every argument may be a Snakemake wildcard pattern such as ``"{subject}"``:
the functions only format strings, so ``Layout().features("{backbone}", "{crop_region}", "{subject}")`` is the
output pattern of the features rule.

Frozen features depend on the split only for backbones that subtract the training set's mean image (paper IV-A,
VGG-Face): :meth:`Layout.frozen_features` is the one function that picks ``features/`` or ``split_features/``,
and :meth:`Layout.model_features` the one that every consumer of a model's features (frame classifiers, LSTM,
ensembles through their members, the predictor) calls.

Repeats of the stochastic models over seeds (config ``seeds``, docs/DESIGN.md "Seeds"): the run of seed offset 0
is this layout; the run of offset ``n`` > 0 has the same tree under ``{root}/seeds/seed{n}/``
(:meth:`Layout.seed_run`), so that adding a seed adds files and moves none. The rules name both with one pattern,
:meth:`Layout.seed_pattern` (wildcard ``seedpart``: empty, or ``/seeds/seed{n}``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

FT_SUFFIX = "_ft"
#: the file extension of a fitted per-AU model (arrays + JSON, :mod:`au_transfer.persist`), and of the joblib pickles
#: that results written before it hold (loaded only when trusted: ``--trust-legacy-pickles``)
MODEL_EXT = ".npz"
LEGACY_MODEL_EXT = ".joblib"
#: The folder of the seeded runs under a results root, and the value of the rules' ``{seedpart}`` wildcard.
SEEDS_DIR = "seeds"
SEEDPART_RE = r"(/seeds/seed\d+)?"
_SEEDED_RE = re.compile(r"(?:^|/)seeds/seed(\d+)/")


class LayoutError(ValueError):
    """A path cannot be named: e.g. split-dependent features asked for without a split."""


def _join(*parts: object) -> str:
    return "/".join(str(p) for p in parts)


@dataclass(frozen=True)
class Layout:
    """The results folder of one run (``results`` relative to the working directory by default)."""

    root: str = "results"

    @classmethod
    def of(cls, root: str | os.PathLike[str]) -> Layout:
        return cls(str(root).rstrip("/") or ".")

    # ------------------------------------------------------------------------------------------ seeded runs
    def seed_run(self, seed: int | str) -> Layout:
        """The layout of the stochastic models' run of seed offset ``seed`` (config ``seeds``): this one for 0,
        else the same tree under ``{root}/seeds/seed{seed}``. Only the stochastic models' files (fine-tuned
        networks, LSTM and LSTM-regressor models, their predictions and metrics) exist there."""
        if not str(seed).isdigit():
            raise LayoutError(f"seed offset {seed!r}: expected a non-negative integer")
        return self if int(seed) == 0 else Layout(_join(self.root, SEEDS_DIR, f"seed{int(seed)}"))

    def seed_pattern(self, wildcard: str = "seedpart") -> Layout:
        """The layout whose paths are the rules' patterns of every seeded run: ``{root}{seedpart}/...``, the
        wildcard matching :data:`SEEDPART_RE` (empty for offset 0)."""
        return Layout(f"{self.root}{{{wildcard}}}")

    @staticmethod
    def seed_part(seed: int | str) -> str:
        """The ``{seedpart}`` wildcard value of a seed offset ("" for 0)."""
        return "" if int(seed) == 0 else f"/{SEEDS_DIR}/seed{int(seed)}"

    @staticmethod
    def seed_of_part(part: str) -> int:
        """The seed offset of a ``{seedpart}`` wildcard value ("" -> 0, "/seeds/seed2" -> 2)."""
        if not re.fullmatch(SEEDPART_RE, part):
            raise LayoutError(f"{part!r} is not a seed part (empty or /seeds/seed<n>)")
        return int(part.rsplit("seed", 1)[1]) if part else 0

    @staticmethod
    def seed_of(path: str | os.PathLike[str]) -> int:
        """The seed offset of a results path: ``n`` under ``seeds/seed{n}/``, else 0."""
        m = _SEEDED_RE.search(str(path).replace(os.sep, "/"))
        return int(m[1]) if m else 0

    # --------------------------------------------------------------------------------------- corpus and faces
    def labels(self, subject: str) -> str:
        return _join(self.root, "labels", f"{subject}.csv")

    def labels_report(self, subject: str) -> str:
        return _join(self.root, "labels", f"{subject}.json")

    def landmarks(self, subject: str) -> str:
        return _join(self.root, "landmarks", f"{subject}.h5")

    def faces(self, subject: str) -> str:
        return _join(self.root, "faces", f"{subject}.h5")

    def qc(self, subject: str, ext: str) -> str:
        return _join(self.root, "qc", f"{subject}.{ext}")

    def demo_corpus(self) -> str:
        return _join(self.root, "demo_corpus")

    # ----------------------------------------------------------------------------------------------- features
    def features(self, backbone: str, crop_region: str, subject: str) -> str:
        """Split-independent frozen features of one subject and crop region."""
        return _join(self.root, "features", backbone, crop_region, f"{subject}.h5")

    def mean_image(self, split: str, backbone: str, crop_region: str) -> str:
        """The training subjects' mean image of a mean-image backbone (paper IV-A)."""
        return _join(self.root, "mean_image", split, backbone, f"{crop_region}.npy")

    def split_features(self, split: str, backbone: str, crop_region: str, subject: str) -> str:
        """Frozen features of a mean-image backbone: they depend on the split's training mean image."""
        return _join(self.root, "split_features", split, backbone, crop_region, f"{subject}.h5")

    def frozen_features(self, backbone: str, crop_region: str, subject: str, *, split: str | None = None,
                        mean_image: bool = False) -> str:
        """The frozen-feature file a consumer reads: the split's mean-image features for a mean-image backbone."""
        if mean_image:
            if split is None:
                raise LayoutError(f"backbones.{backbone}.mean_image is set: its features are per split; name one")
            return self.split_features(split, backbone, crop_region, subject)
        return self.features(backbone, crop_region, subject)

    @staticmethod
    def ft_unit(head: str, au: int | str, crop_region: str) -> str:
        """The fine-tuned network that serves an AU: ``AU{au}`` (``per_au`` head) or ``multilabel-{crop}`` (one
        network per crop region)."""
        return f"AU{au}" if head == "per_au" else f"multilabel-{crop_region}"

    def ft_feature_dir(self, split: str, backbone: str, region: str, unit: str) -> str:
        """The features of one fine-tuned network (``backbone`` without ``_ft``; ``region`` as in its model id),
        one file per subject of the split."""
        return _join(self.root, "ft_features", split, f"{backbone}{FT_SUFFIX}", region, unit)

    def ft_features(self, split: str, backbone: str, region: str, unit: str, subject: str) -> str:
        return _join(self.ft_feature_dir(split, backbone, region, unit), f"{subject}.h5")

    @staticmethod
    def split_of_ft_features(path: str | os.PathLike[str]) -> str | None:
        """The split of a fine-tuned feature file (``.../ft_features/{split}/{backbone}_ft/{region}/{unit}/
        {subject}.h5``), or None for a path outside that layout."""
        parts = str(path).replace(os.sep, "/").split("/")
        return parts[-5] if len(parts) >= 6 and parts[-6] == "ft_features" else None

    def model_features(self, backbone: str, region: str, subject: str, *, split: str, au: int | str,
                       crop_region: Callable[[str, int | str], str], mean_image: Callable[[str], bool],
                       ft_unit: Callable[[str, int | str], str] | None = None) -> str:
        """The feature file that a model ``{backbone}-{region}-…`` reads for one subject and AU.

        ``backbone`` may name a fine-tuned network (``cnn_f_ft``: the features of the split's network that
        serves the AU, ``ft_unit(region, au)``, by default ``AU{au}``); ``crop_region(region, au)`` maps a model
        region (``au_region``) to a crop, ``mean_image(backbone)`` tells whether a backbone's frozen features are
        per split.
        """
        if backbone.endswith(FT_SUFFIX):
            unit = ft_unit(region, au) if ft_unit is not None else f"AU{au}"
            return self.ft_features(split, backbone[: -len(FT_SUFFIX)], region, unit, subject)
        return self.frozen_features(backbone, crop_region(region, au), subject, split=split,
                                    mean_image=mean_image(backbone))

    # ------------------------------------------------------------------------------------------- fine-tuning
    def finetune_dir(self, split: str, backbone: str, region: str) -> str:
        return _join(self.root, "finetune", split, f"{backbone}-{region}")

    def ft_network(self, split: str, backbone: str, region: str, unit: str) -> str:
        """A fine-tuned network bundle: ``unit`` is ``AU{au}`` (the per-AU network, also written for every AU of
        a multilabel network) or ``multilabel-{crop}`` (a multilabel network)."""
        return _join(self.finetune_dir(split, backbone, region), f"{unit}.pt")

    def finetune_net(self, split: str, backbone: str, region: str, au: int | str) -> str:
        """The fine-tuned network (bundle) of one AU."""
        return self.ft_network(split, backbone, region, f"AU{au}")

    def finetune_ckpt(self, split: str, backbone: str, region: str, unit: str) -> str:
        """The resumable checkpoint beside a training job's network (not a declared output)."""
        return _join(self.finetune_dir(split, backbone, region), f"{unit}.ckpt")

    def finetune_group_predictions(self, split: str, backbone: str, region: str, crop_region: str) -> str:
        """The predictions of a multilabel network (all of its AUs), before they are unpacked per AU."""
        return _join(self.finetune_dir(split, backbone, region), f"multilabel-{crop_region}.csv")

    # ------------------------------------------------------------------------------ models, predictions, metrics
    def models_root(self) -> str:
        """The folder of every split's models folder."""
        return _join(self.root, "models")

    def split_models(self, split: str) -> str:
        """A split's models folder (its models, ensembles and ``predictor.json``)."""
        return _join(self.models_root(), split)

    def split_predictions(self, split: str) -> str:
        """A split's predictions folder (merged ``{model}.csv`` files, per-AU files in ``{model}/``)."""
        return _join(self.root, "predictions", split)

    def model_dir(self, split: str, model: str) -> str:
        return _join(self.split_models(split), model)

    def model_file(self, split: str, model: str, au: int | str, *, ext: str = MODEL_EXT) -> str:
        """A fitted per-AU model bundle (frame classifiers, LSTM, regressors: arrays + JSON); ``ext`` =
        :data:`LEGACY_MODEL_EXT`: where results written before that format hold the same model as a pickle."""
        return _join(self.model_dir(split, model), f"AU{au}{ext}")

    @staticmethod
    def model_pattern(ext: str = MODEL_EXT) -> str:
        """The glob of the per-AU model files in a model's folder (``AU*.npz``)."""
        return f"AU*{ext}"

    def ensemble_params(self, split: str, model: str) -> str:
        """The fitted combination of an ensemble (``model`` is its id, ``ens-{name}``)."""
        return _join(self.model_dir(split, model), "ensemble.json")

    def manifest(self, split: str) -> str:
        """``predictor.json``: the run's face and backbone settings, for ``au-transfer predict``."""
        return _join(self.split_models(split), "predictor.json")

    def au_predictions(self, split: str, model: str, au: int | str) -> str:
        return _join(self.split_predictions(split), model, f"AU{au}.csv")

    def predictions(self, split: str, model: str) -> str:
        return _join(self.split_predictions(split), f"{model}.csv")

    def metrics(self, split: str, model: str) -> str:
        return _join(self.root, "metrics", split, f"{model}.csv")

    def summary(self) -> str:
        return _join(self.root, "metrics", "summary.csv")

    # ---------------------------------------------------------------------- intensity (docs/intensity.md)
    def intensity_au_predictions(self, split: str, model: str, au: int | str) -> str:
        """One regressor job's intensity predictions (``subject, frame, au, set, value, label``)."""
        return _join(self.root, "intensity", "predictions", split, model, f"AU{au}.csv")

    def intensity_predictions(self, split: str, model: str) -> str:
        """A regressor's (or regressor ensemble's) intensity predictions, every AU."""
        return _join(self.root, "intensity", "predictions", split, f"{model}.csv")

    def intensity_ensemble_params(self, split: str, model: str) -> str:
        """The fitted combination of a regressor ensemble (``model`` = ``ens-{name}``)."""
        return _join(self.root, "intensity", "ensembles", split, f"{model}.json")

    def intensity_metrics(self, split: str, model: str) -> str:
        """Per-AU and mean ICC(3,1), PCC, MAE, MSE of one model on the test subjects."""
        return _join(self.root, "intensity", "metrics", split, f"{model}.csv")

    def intensity_summary(self) -> str:
        return _join(self.root, "intensity", "summary.csv")

    # ----------------------------------------------------------------------------------------------- predict
    def predicted(self, split: str, name: str, suffix: str = ".csv") -> str:
        """``snakemake predict``'s output of one input (``suffix``: ``.csv``, the plot's ``.png``, the overlay's
        ``.overlay.mp4``)."""
        return _join(self.root, "predict", split, f"{name}{suffix}")

    def report_dir(self) -> str:
        return _join(self.root, "report")

    def report_file(self, name: str) -> str:
        return _join(self.report_dir(), name)
