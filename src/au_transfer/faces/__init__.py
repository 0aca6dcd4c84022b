"""Faces stage: frames, 68-point landmarks, similarity alignment, region boxes, HDF5 stores and QC.

Public entry points: :class:`FaceSettings` (the ``faces`` config section, defaults from its schema),
:func:`compute_landmarks` and :func:`compute_faces` (the two Snakemake jobs), :func:`process_frame` (one frame to
one aligned face, for the faces job and the predictor alike), :class:`FaceStore` (batched random access for the
feature stage), :func:`iter_frames` (new videos and images), :func:`write_qc` (contact sheet and per-frame table).
"""

from .align import TEMPLATE_68, align_face, alignment_transform
from .landmarks import (
    REASON_NAMES,
    SOURCE_NAMES,
    DlibLandmarker,
    Plausibility,
    dlib_model_paths,
    map_66_to_68,
)
from .pipeline import FaceFrame, compute_faces, compute_landmarks, process_frame
from .qc import write_qc
from .regions import CROP_REGIONS, REGION_NAMES, cut_region, region_boxes
from .settings import FaceSettings
from .store import FaceStore, LandmarkData, StoreError, read_landmarks
from .video import VideoError, iter_frames, iter_video, video_info

__all__ = [
    "TEMPLATE_68", "align_face", "alignment_transform", "REASON_NAMES", "SOURCE_NAMES", "DlibLandmarker",
    "Plausibility", "dlib_model_paths", "map_66_to_68", "compute_faces", "compute_landmarks", "process_frame",
    "write_qc", "CROP_REGIONS", "REGION_NAMES", "cut_region", "region_boxes", "FaceStore", "LandmarkData",
    "StoreError", "read_landmarks", "FaceFrame", "FaceSettings", "VideoError", "iter_frames", "iter_video", "video_info",
]
