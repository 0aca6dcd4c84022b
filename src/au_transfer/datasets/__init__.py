"""Datasets: the DISFA reader (:mod:`.disfa`) and the synthetic DISFA-layout demo corpus (:mod:`.demo`)."""

from .disfa import DisfaError, landmark_files, read_labels, read_landmark_file, video_info, video_path

__all__ = ["DisfaError", "landmark_files", "read_labels", "read_landmark_file", "video_info", "video_path"]
