"""Datasets: the corpus interface (:mod:`.base`), one adapter per corpus (DISFA: :mod:`.disfa_corpus` over the reader
:mod:`.disfa`; :mod:`.bp4d`, :mod:`.disfa_plus`, :mod:`.generic`), the corpora of a workflow config (:mod:`.catalog`),
the labels stage (:mod:`.export`) and the synthetic demo corpora (:mod:`.demo`).

Importing this package registers every built-in adapter (:func:`.base.get_corpus` finds them by name); Python runs
this file before any module of the package, so ``from au_transfer.datasets.base import get_corpus`` is enough.
"""

from . import bp4d, disfa_corpus, disfa_plus, generic  # noqa: F401  (registers the adapters)
from .disfa import DisfaError, landmark_files, read_labels, read_landmark_file, video_info, video_path

__all__ = ["DisfaError", "landmark_files", "read_labels", "read_landmark_file", "video_info", "video_path"]
