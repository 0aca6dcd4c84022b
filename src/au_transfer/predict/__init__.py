"""The predictor for new inputs: AU occurrence per face and frame of a video, an image or a folder of images.

It runs the chain the workflow trained: dlib face detection and landmarks, the faces stage's alignment
(:func:`au_transfer.faces.pipeline.process_frame`), the inputs each model declares (region crops, frozen or
fine-tuned features) and the models themselves through the AU-model interface (:mod:`au_transfer.models`), an
ensemble combining its members. The output has one row per face and frame in the manner of OpenFace (see
:mod:`au_transfer.predict.run`). Trained files are found through :class:`au_transfer.layout.Layout` in a workflow's
results folder, with the run's face and backbone settings in ``results/models/{split}/predictor.json``.

Modules: ``manifest`` (predictor.json), ``faces`` (faces per frame: detection every few frames and tracking in
between, face numbers, the reader thread), ``face_worker`` (the same in a worker process, the default),
``inputs`` (crops and features per chunk, networks shared between models), ``predictor`` (the models, the default
split and model), ``run`` (rows, CSV), ``batch`` (many inputs in one run, resume), ``pictures`` (``--plot``,
``--overlay``).
"""

import importlib
from typing import Any

#: every public name and the module that defines it; imported on first use (PEP 562), so that the face front end's
#: worker process (:mod:`.face_worker`, which imports only :mod:`.faces`) does not pay for torch
_WHERE = {
    **dict.fromkeys(["DETECT_EVERY", "FaceFinder", "FaceStream", "FaceTracker", "FoundFace", "FrameFaces",
                     "FrameReader", "detect_faces", "frame_sampling"], "faces"),
    **dict.fromkeys(["FaceWorker", "FaceWorkerError"], "face_worker"),
    **dict.fromkeys(["BatchResult", "check_outdir", "default_workers", "expand_inputs", "output_names",
                     "predict_many"], "batch"),
    **dict.fromkeys(["plot_predictions", "write_overlay"], "pictures"),
    **dict.fromkeys(["FaceChunk", "FeatureNet", "Inputs"], "inputs"),
    **dict.fromkeys(["LEGACY_FACE_KEYS", "MANIFEST", "PredictError", "face_settings", "read_manifest",
                     "write_manifest"], "manifest"),
    **dict.fromkeys(["Predictor", "default_model", "default_split", "in_sample_models", "resolve_models_dir",
                     "validation_ranking"],
                    "predictor"),
    **dict.fromkeys(["BASE_COLUMNS", "au_columns", "check_output", "iter_predictions", "predict", "predict_to_csv"],
                    "run"),
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
