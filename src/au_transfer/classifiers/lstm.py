"""LSTM on per-frame CNN features for temporal AU detection (paper IV-D).

One model per AU (as the frame classifiers: one job per (split, model, AU), and the sequence cutting depends on the
AU's own activations). The network is one LSTM layer (``hidden`` units, 200 in the paper) and a linear output per
frame (logit of "AU present"). Training follows the paper:

- SGD with learning rate ``lr`` (1e-4) and momentum (0.9);
- weight noise: Gaussian noise (mean 0, std ``weight_noise_std`` = 0.1) is added to every weight for each batch
  before the forward pass and the gradient; the clean weights are restored before the optimiser step, so the update
  computed at the noisy weights is applied to the clean ones;
- training and validation sequences are cut around the AU's activations (:func:`cut_sequences`); test subjects
  are predicted on their full sequence;
- features standardised with a scaler fitted on the training frames only;
- early stopping on the validation loss (or F1) with ``patience`` epochs; the best epoch's weights are kept.

A subject's sequence is its valid, labelled frames in frame order (invalid frames, e.g. no face found, are left
out and their neighbours joined).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler
from torch import nn
from tqdm.auto import tqdm

from ..device import resolve_device
from .data import FrameData

log = logging.getLogger(__name__)
_DEVICE_KEY = "config key 'classifiers.lstm.device'"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs ``[start, stop)`` where ``mask`` is True."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(d[::2].tolist(), d[1::2].tolist(), strict=True))


def cut_sequences(y: np.ndarray, *, context: int, inactive_min: int, inactive_max: int,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """Cut one subject's sequence around the AU's activations (paper IV-D); returns index arrays.

    Each run of activation keeps ``context`` frames before and after it. The stretches in between (frames farther
    than ``context`` from any activation) are *inactive*. From an inactive stretch of ``inactive_min`` frames or
    more, chunks of a random length in ``[inactive_min, inactive_max]`` are removed until fewer than
    ``inactive_min`` frames are left; the frames left stay attached to the neighbouring activations (half on each
    side; all on the inner side for a stretch at the start or end of the video). Shorter inactive stretches are
    kept. The sequence is cut wherever frames were removed.
    """
    y = np.asarray(y).astype(bool)
    n = len(y)
    if inactive_min < 1 or inactive_max < inactive_min:
        raise ValueError(f"lstm: need 1 <= inactive_min <= inactive_max, got {inactive_min}, {inactive_max}")
    near = np.zeros(n, bool)
    for a, b in _runs(y):
        near[max(0, a - context):min(n, b + context)] = True
    keep = np.ones(n, bool)
    for a, b in _runs(~near):
        length = b - a
        rem = length
        while rem >= inactive_min:
            rem -= min(int(rng.integers(inactive_min, inactive_max + 1)), rem)
        if rem == length:
            continue
        if a == 0 and b == n:
            left = rem // 2
        elif a == 0:
            left = 0
        elif b == n:
            left = rem
        else:
            left = rem // 2
        right = rem - left
        keep[a + left:b - right] = False
    return [np.arange(a, b) for a, b in _runs(keep)]


class _Net(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T) logits
        h, _ = self.lstm(x)
        return self.out(h).squeeze(-1)


def _pad(seqs: Sequence[np.ndarray], labels: Sequence[np.ndarray] | None, device: torch.device):
    T = max(len(s) for s in seqs)
    D = seqs[0].shape[1]
    x = np.zeros((len(seqs), T, D), np.float32)
    y = np.zeros((len(seqs), T), np.float32)
    m = np.zeros((len(seqs), T), np.float32)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
        m[i, :len(s)] = 1
        if labels is not None:
            y[i, :len(s)] = labels[i]
    return (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device), torch.from_numpy(m).to(device))


class LSTMClassifier:
    """Sequence classifier with the scikit-learn verbs: ``fit``, ``decision_function``, ``predict``.

    ``X`` arguments are lists of sequences, each an array (T, D) of raw (unscaled) features in frame order; the
    scaler is part of the estimator and is fitted on the training frames in :meth:`fit`. Outputs are lists of
    per-frame arrays. The fitted weights are stored as numpy arrays, so a bundle loads without a GPU.
    """

    def __init__(self, hidden: int = 200, lr: float = 1e-4, momentum: float = 0.9, weight_noise_std: float = 0.1,
                 epochs: int = 100, batch_size: int = 8, patience: int = 10, monitor: str = "loss",
                 seed: int = 0, device: str = "auto", pos_weight: float | None = None, target: str = "binary"):
        self.hidden, self.lr, self.momentum, self.weight_noise_std = hidden, lr, momentum, weight_noise_std
        self.epochs, self.batch_size, self.patience, self.monitor = epochs, batch_size, patience, monitor
        self.seed, self.device, self.pos_weight, self.target = seed, device, pos_weight, target

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("hidden", "lr", "momentum", "weight_noise_std", "epochs",
                                               "batch_size", "patience", "monitor", "seed", "device", "pos_weight",
                                               "target")}

    # ----------------------------------------------------------------------------------------------- internals
    def _net(self, device: torch.device) -> _Net:
        net = _Net(self.dim_, self.hidden)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in self.state_.items()})
        return net.to(device).eval()

    def _scale(self, seqs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.scaler_.transform(np.asarray(s, np.float32)).astype(np.float32) for s in seqs]

    def _loss(self, net: _Net, seqs, labels, device, crit) -> float:
        net.eval()
        total, count = 0.0, 0.0
        with torch.no_grad():
            for i in range(0, len(seqs), self.batch_size):
                x, y, m = _pad(seqs[i:i + self.batch_size], labels[i:i + self.batch_size], device)
                total += float((crit(net(x), y) * m).sum())
                count += float(m.sum())
        return total / max(count, 1.0)

    def _logits(self, net: _Net, seqs, device) -> list[np.ndarray]:
        out = []
        with torch.no_grad():
            for s in seqs:
                x = torch.from_numpy(np.asarray(s, np.float32)[None]).to(device)
                out.append(net(x)[0].double().cpu().numpy())
        return out

    # ----------------------------------------------------------------------------------------------- API
    def fit(self, X: Sequence[np.ndarray], y: Sequence[np.ndarray], X_val: Sequence[np.ndarray] | None = None,
            y_val: Sequence[np.ndarray] | None = None) -> LSTMClassifier:
        """Train on sequences ``X`` with per-frame 0/1 labels ``y``; early stopping on ``(X_val, y_val)``.

        ``target = "intensity"`` (the intensity task's LSTM regressor): ``y`` holds intensities 0..5, learnt as
        soft targets ``y / 5`` of the same loss (the output probability x 5 is the intensity); early stopping on
        the validation loss (no F1).
        """
        if not len(X):
            raise ValueError("LSTMClassifier.fit: no training sequences")
        if self.target == "intensity":
            y = [np.asarray(v, np.float32) / 5.0 for v in y]
            y_val = [np.asarray(v, np.float32) / 5.0 for v in y_val] if y_val else y_val
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        device = resolve_device(self.device, what=_DEVICE_KEY)
        self.dim_ = int(X[0].shape[1])
        self.scaler_ = StandardScaler().fit(np.concatenate(X))
        tr = self._scale(X)
        va = self._scale(X_val) if X_val else []
        net = _Net(self.dim_, self.hidden).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=self.momentum)
        pw = None if self.pos_weight is None else torch.tensor(float(self.pos_weight), device=device)
        crit = nn.BCEWithLogitsLoss(reduction="none", pos_weight=pw)
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed)
        params = [p for p in net.parameters()]
        best = (np.inf, -1, copy.deepcopy(net.state_dict()))
        self.history_: list[dict[str, float]] = []
        bad_epochs = 0
        for epoch in tqdm(range(self.epochs), desc="lstm", leave=False, disable=None):
            net.train()
            order = rng.permutation(len(tr))
            ep_loss, ep_n = 0.0, 0.0
            for i in range(0, len(order), self.batch_size):
                idx = order[i:i + self.batch_size]
                x, yy, m = _pad([tr[j] for j in idx], [y[j] for j in idx], device)
                clean = []
                if self.weight_noise_std > 0:  # weight noise: perturb, compute the gradient there, then restore
                    with torch.no_grad():
                        for p in params:
                            clean.append(p.detach().clone())
                            p.add_(torch.randn(p.shape, generator=gen, device=device) * self.weight_noise_std)
                loss = (crit(net(x), yy) * m).sum() / m.sum()
                opt.zero_grad()
                loss.backward()
                if clean:
                    with torch.no_grad():
                        for p, c in zip(params, clean, strict=True):
                            p.copy_(c)
                opt.step()
                ep_loss += float(loss.detach()) * float(m.sum())
                ep_n += float(m.sum())
            rec = {"epoch": epoch + 1, "train_loss": ep_loss / max(ep_n, 1.0)}
            if va:
                rec["val_loss"] = self._loss(net, va, y_val, device, crit)
                if self.target != "intensity":
                    pv = np.concatenate([(lg > 0).astype(int) for lg in self._logits(net.eval(), va, device)])
                    rec["val_f1"] = float(f1_score(np.concatenate(y_val), pv, zero_division=0))
                crit_value = rec["val_loss"] if self.monitor == "loss" or "val_f1" not in rec else -rec["val_f1"]
            else:
                crit_value = rec["train_loss"]
            self.history_.append(rec)
            if crit_value < best[0] - 1e-9:
                best = (crit_value, epoch + 1, copy.deepcopy(net.state_dict()))
                bad_epochs = 0
            else:
                bad_epochs += 1
                if self.patience and bad_epochs >= self.patience:
                    log.info("early stopping after epoch %d (best epoch %d)", epoch + 1, best[1])
                    break
        self.best_epoch_ = best[1]
        self.state_ = {k: v.detach().cpu().numpy().copy() for k, v in best[2].items()}
        return self

    def decision_function(self, X: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-frame logits of each sequence (higher = more present)."""
        device = resolve_device(self.device, what=_DEVICE_KEY)
        return self._logits(self._net(device), self._scale(X), device)

    def predict_proba_sequence(self, X: np.ndarray) -> np.ndarray:
        """Probability of "present" for each frame of one sequence (T, D)."""
        return 1.0 / (1.0 + np.exp(-self.decision_function([X])[0]))

    def predict(self, X: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-frame 0/1 of each sequence (probability > 0.5)."""
        return [(lg > 0).astype(np.int8) for lg in self.decision_function(X)]


class LSTMStream:
    """Runs a fitted :class:`LSTMClassifier` on a long sequence chunk by chunk, carrying the hidden state, so
    that memory stays flat on long videos; the probabilities equal those of the whole sequence at once."""

    def __init__(self, est: LSTMClassifier, device: str = "auto"):
        self.est = est
        self.device = resolve_device(device, what=_DEVICE_KEY)
        self.net = est._net(self.device)
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        """Start a new sequence."""
        self.state = None

    @torch.inference_mode()
    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Probability of "present" for the next frames (T, D) of the sequence."""
        if len(X) == 0:
            return np.zeros(0)
        x = torch.from_numpy(self.est._scale([X])[0][None]).to(self.device)
        h, self.state = self.net.lstm(x, self.state)
        logits = self.net.out(h).squeeze(-1)[0].double().cpu().numpy()
        return 1.0 / (1.0 + np.exp(-logits))


def _cut(data: FrameData, cfg: Mapping[str, Any], rng: np.random.Generator) -> tuple[list, list]:
    xs, ys = [], []
    for rows in data.sequences():
        for piece in cut_sequences(data.y[rows], context=int(cfg["context_frames"]),
                                   inactive_min=int(cfg["inactive_min"]), inactive_max=int(cfg["inactive_max"]),
                                   rng=rng):
            xs.append(data.X[rows[piece]])
            ys.append(data.y[rows[piece]].astype(np.float32))
    return xs, ys


LSTM_KEYS = ("hidden", "lr", "momentum", "weight_noise_std", "epochs", "batch_size", "patience", "monitor",
             "device", "pos_weight")
