"""The predictor for new inputs: AU occurrence per face and frame of a video, an image or a folder of images.

It runs the chain the workflow trained: dlib face detection and landmarks, the faces stage's alignment
(:func:`au_transfer.faces.pipeline.process_frame`), the inputs each model declares (region crops, frozen or
fine-tuned features) and the models themselves through the AU-model interface (:mod:`au_transfer.models`), an
ensemble combining its members. The output has one row per face and frame in the manner of OpenFace (see
:mod:`au_transfer.predict.run`). Trained files are found through :class:`au_transfer.layout.Layout` in a workflow's
results folder, with the run's face and backbone settings in ``results/models/{split}/predictor.json``.

Modules: ``manifest`` (predictor.json), ``faces`` (faces per frame: detection every few frames and tracking in
between, face numbers, the reader thread), ``inputs`` (crops and features per chunk, networks shared between
models), ``predictor`` (the models, the default split and model), ``run`` (rows, CSV).
"""

from .faces import DETECT_EVERY, FaceFinder, FaceTracker, FrameReader, detect_faces
from .inputs import FaceChunk, FeatureNet, Inputs
from .manifest import LEGACY_FACE_KEYS, MANIFEST, PredictError, face_settings, read_manifest, write_manifest
from .predictor import Predictor, default_model, default_split, resolve_models_dir, validation_ranking
from .run import (
    BASE_COLUMNS,
    au_columns,
    check_output,
    iter_predictions,
    predict,
    predict_to_csv,
)

__all__ = [
    "BASE_COLUMNS", "DETECT_EVERY", "LEGACY_FACE_KEYS", "MANIFEST", "FaceChunk", "FaceFinder", "FaceTracker",
    "FeatureNet", "FrameReader", "Inputs",
    "PredictError", "Predictor", "au_columns", "check_output", "default_model", "default_split", "detect_faces",
    "face_settings", "iter_predictions", "predict", "predict_to_csv", "read_manifest",
    "resolve_models_dir", "validation_ranking", "write_manifest",
]
