"""Datasets: the corpus interface (:mod:`.base`) and one adapter per corpus, registered by name on import of this
package (DISFA: :mod:`.disfa_corpus` over the reader :mod:`.disfa`); the corpora of a workflow config
(:mod:`.catalog`); the labels stage (:mod:`.export`); the synthetic DISFA-layout demo corpus (:mod:`.demo`)."""

from . import disfa_corpus  # noqa: F401  (registers the adapter)
from .disfa import DisfaError, landmark_files, read_labels, read_landmark_file, video_info, video_path

__all__ = ["DisfaError", "landmark_files", "read_labels", "read_landmark_file", "video_info", "video_path"]
