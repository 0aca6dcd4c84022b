"""Per-AU classifiers on CNN features: LDA and linear SVM per frame (paper IV-C), LSTM on sequences (IV-D).

Model bundles (``results/models/{split}/{model}/AU{au}.npz``: arrays + JSON, :mod:`au_transfer.persist`) are
loaded with :func:`load_model` and applied to features with :func:`predict_bundle`; see docs/classifiers.md for the
rules (balancing, skipping, selection).
"""

from .data import (
    ClassifierDataError,
    FrameData,
    FrameIndex,
    balance_indices,
    check_subject_exclusive,
    index_frames,
    load_frames,
)
from .frame import (
    FRAME_CLASSIFIERS,
    PRED_COLUMNS,
    fit_frame_classifier,
    load_model,
    make_estimator,
    save_model,
)
from .jobs import predict_bundle, run_frame_job, run_lstm_job

__all__ = [
    "FRAME_CLASSIFIERS", "PRED_COLUMNS", "ClassifierDataError", "FrameData", "FrameIndex", "balance_indices",
    "check_subject_exclusive", "fit_frame_classifier", "index_frames", "load_frames", "load_model", "make_estimator",
    "predict_bundle", "run_frame_job", "run_lstm_job", "save_model",
]
