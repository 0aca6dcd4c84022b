"""Fine-tuning CNNs for AU occurrence (paper V), fine-tuned features (VII-B) and the region-based approach (VII-C).

A registry backbone keeps its convolutional weights; its fully connected layers are re-initialised (``reinit``:
``all``, ``fc6_fc7`` or ``none``) and its classifier is replaced by two outputs per AU (present / absent). With
``head: per_au`` (the paper) one network is trained per AU; with ``head: multilabel`` one network is trained for
all AUs that see the same crop region, with one softmax pair per AU.

Training uses balanced training and validation sets (paper IV-A: as many randomly kept negatives as positives,
seeded), validation-based early stopping, optional mixed precision on CUDA, and a checkpoint written atomically
after every epoch, so that a killed job resumes from its last finished epoch. The saved network
(:func:`save_bundle`) holds everything a predictor needs; :class:`FinetunedClassifier` wraps it with the
scikit-learn style ``decision_function`` / ``predict`` on images.

Modules (every name below is re-exported here, so ``from au_transfer.finetune import X`` works for all of them):

- :mod:`.config`: :class:`FinetuneConfig`, :class:`AugmentConfig` (defaults from the schema), :class:`FinetuneError`;
- :mod:`.net`: :class:`FinetuneNet`, :class:`Standardize`, :func:`reinit_layers`, :func:`freeze_layers`;
- :mod:`.data`: :func:`frame_table`, :func:`balance`, :func:`crop_groups`, :class:`FaceCropDataset`;
- :mod:`.training`: :func:`train`, :func:`augment_batch`, :func:`masked_loss`, :func:`predict_proba`, :func:`fit_standardize`, checkpoints;
- :mod:`.bundle`: :func:`save_bundle`, :func:`load_bundle`, :func:`load_finetuned`, :class:`FinetunedClassifier`;
- :mod:`.job`: :func:`run_finetune`, :func:`unpack_au` (the workflow's jobs);
- :mod:`.features`: :func:`extract_ft_features_many` and its split check.

Shared with the other stages: labels and balancing (:mod:`au_transfer.labels`), the prediction table
(:mod:`au_transfer.predictions`), devices and AMP (:mod:`au_transfer.device`).
"""

from ..device import resolve_device
from ..predictions import PRED_COLUMNS
from .bundle import BUNDLE_FORMAT, FinetunedClassifier, load_bundle, load_finetuned, save_bundle, state_sha256
from .config import (
    AMP,
    DEFAULTS,
    HEADS,
    NORMS,
    OPTIMIZERS,
    REINIT,
    AugmentConfig,
    FinetuneConfig,
    FinetuneError,
)
from .data import FaceCropDataset, balance, crop_groups, frame_table, read_label_table
from .data import _loader as _loader
from .features import check_network_split, extract_ft_features_many, ft_features_split
from .job import predictions_frame, run_finetune, unpack_au
from .net import FinetuneNet, Standardize, body_stages, freeze_layers, hidden_linears, reinit_layers
from .net import _set_train_mode as _set_train_mode
from .training import (
    TrainResult,
    augment_batch,
    f1_binary,
    fingerprint_of,
    fit_standardize,
    masked_loss,
    predict_proba,
    train,
)
from .training import _amp_dtype as _amp_dtype
from .training import _make_optimizer as _make_optimizer

__all__ = [
    "AMP", "BUNDLE_FORMAT", "DEFAULTS", "HEADS", "NORMS", "OPTIMIZERS", "PRED_COLUMNS", "REINIT", "AugmentConfig",
    "FaceCropDataset", "FinetuneConfig", "FinetuneError", "FinetuneNet", "FinetunedClassifier", "Standardize",
    "TrainResult", "augment_batch", "balance", "body_stages", "check_network_split", "crop_groups",
    "extract_ft_features_many", "f1_binary", "fingerprint_of", "fit_standardize", "frame_table", "freeze_layers",
    "ft_features_split", "hidden_linears", "load_bundle", "load_finetuned", "masked_loss", "predict_proba", "predictions_frame",
    "read_label_table", "reinit_layers", "resolve_device", "run_finetune", "save_bundle", "state_sha256", "train",
    "unpack_au",
]
