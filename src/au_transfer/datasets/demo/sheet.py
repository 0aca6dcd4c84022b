"""A contact sheet of every AU at full intensity beside the neutral face, to check the AU motion by eye."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ... import DISFA_AUS
from .appearance import make_subject
from .facs import AU_NAMES
from .render import render_frame


def au_contact_sheet(path: str | Path, subjects: Iterable[str] = ("SN001", "SN002", "SN004"), *,
                     seed: int = 20261128, width: int = 480, height: int = 360, intensity: int = 5,
                     landmarks: bool = False) -> Path:
    """Save a PNG: one row per AU; per subject the neutral face beside the face with that AU at ``intensity``.

    It lets a person check that every AU moves the right part of the face the right way. Regenerate the
    project's copy with ``python -m au_transfer.datasets.demo docs/img/demo_aus.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subjects = list(subjects)
    fig, axes = plt.subplots(len(DISFA_AUS), 2 * len(subjects), squeeze=False,
                             figsize=(1.75 * 2 * len(subjects) + 1.2, 1.95 * len(DISFA_AUS) + 0.4))
    for k, s in enumerate(subjects):
        subj = make_subject(s, width=width, height=height, seed=seed)
        rng = np.random.default_rng(0)
        pts0 = subj.ctrl[:68]
        lo, hi = pts0.min(0), pts0.max(0)
        pad = (hi - lo) * np.array([0.12, 0.2])
        x0, y0 = np.maximum(lo - pad, 0).astype(int)
        x1, y1 = np.minimum(hi + pad, [width, height]).astype(int)
        neutral, p0 = render_frame(subj, np.zeros(len(DISFA_AUS)), np.zeros(4), 1.0, rng)
        for r, au in enumerate(DISFA_AUS):
            inten = np.zeros(len(DISFA_AUS))
            inten[r] = intensity
            img, pts = render_frame(subj, inten, np.zeros(4), 1.0, rng)
            for c, (im, pp, title) in enumerate(((neutral, p0, "neutral"), (img, pts, f"AU{au}={intensity}"))):
                ax = axes[r, 2 * k + c]
                ax.imshow(im[y0:y1, x0:x1])
                if landmarks:
                    ax.plot(pp[:, 0] - x0, pp[:, 1] - y0, ".", ms=1.5, color="lime")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{s} {title}", fontsize=7, pad=2)
            if k == 0:
                axes[r, 0].set_ylabel(f"AU{au}\n{AU_NAMES[au]}", fontsize=8)
    fig.suptitle(f"synthetic demo corpus: each AU alone at intensity {intensity}, beside the neutral face",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.99))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
