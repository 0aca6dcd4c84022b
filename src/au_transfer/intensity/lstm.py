"""The LSTM regression variant of the intensity task (model id ``{backbone}-{region}-lstmr``): the LSTM classifier
of paper IV-D (:class:`au_transfer.classifiers.lstm.LSTMClassifier`, same options, same cut of the training and
validation sequences around activations: frames of intensity > 0 are active) learning the intensity / 5 as a soft
target; its output probability x 5 is the intensity. Early stopping on the validation loss. The workflow's job is
:func:`au_transfer.intensity.jobs.run_lstm_regress_job`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def fit_lstm(Xtr: list, ytr: list, Xva: list, yva: list, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    from ..classifiers.lstm import LSTM_KEYS, LSTMClassifier

    values = np.unique(np.concatenate(ytr)) if ytr else np.zeros(0)
    info: dict[str, Any] = {"status": "ok", "reason": "", "estimator": None, "chosen": {}, "val_scores": {},
                            "selection": "early_stopping", "n_train": int(sum(len(v) for v in ytr)),
                            "n_val": int(sum(len(v) for v in yva))}
    if len(values) < 2:
        return {**info, "status": "skipped", "reason": f"training intensities take {len(values)} value(s)"}
    kwargs = {k: params[k] for k in LSTM_KEYS if k in params and k not in ("monitor", "pos_weight")}
    est = LSTMClassifier(seed=seed, target="intensity", **kwargs).fit(Xtr, ytr, Xva or None, yva or None)
    info.update(estimator=est, chosen={"best_epoch": est.best_epoch_, "epochs_run": len(est.history_)})
    if est.history_ and "val_loss" in est.history_[est.best_epoch_ - 1]:
        info["val_scores"] = {"loss": est.history_[est.best_epoch_ - 1]["val_loss"]}
    return info


def fit_lstm_sequences(model: Any, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> dict[str, Any]:
    """:meth:`~au_transfer.models.RegressorModel.fit` of an ``lstmr`` model: whole sequences, as given."""
    info = fit_lstm([np.asarray(x, np.float32) for x in X], [np.asarray(v, np.float32) for v in y],
                [np.asarray(x, np.float32) for x in X_val or []], [np.asarray(v, np.float32) for v in y_val or []],
                model.params, model.seed)
    model.bundle.setdefault("threshold", int(model.options.get("threshold", 2)))
    model.bundle["normalise"] = "none"
    model.reset()
    return info
