"""Reader for the DISFA database layout (videos, AU intensity labels, 66-point landmark files).

The layout (``root`` is the DISFA folder)::

    Videos_LeftCamera/LeftVideoSN001_comp.avi      (also ``Video_LeftCamera``; any case of ``comp``)
    Video_RightCamera/RightVideoSN001_Comp.avi     (also ``Videos_RightCamera``)
    ActionUnit_Labels/SN001/SN001_au1.txt          one ``frame,intensity`` line per frame, frames 1-based, 0-5
    Landmark_Points/SN001/tmp_frame_lm/SN001_0000_lm.mat   MATLAB variable ``pts``: 66 x 2 pixel coordinates

Landmark file numbers are 0-based: ``SN001_0000_lm.mat`` holds frame 1. Some subjects name the files
``l0NNNN_lm.mat`` (or ``lNNNN_lm.mat``); we assume the same 0-based numbering for them (``l00000_lm.mat`` is
frame 1), which is how the two schemes line up with the label files in the released database. The 66 points
are the iBUG 68-point layout without the two inner-mouth corners (68-point indices 60 and 64, 0-based).

Every problem in the data raises :class:`DisfaError` with a message that names the file (and line or frame).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import DISFA_AUS
from ..config import DISFA_SUBJECTS

log = logging.getLogger(__name__)

#: 68-point indices that DISFA's 66-point landmark files leave out (the inner-mouth corners).
DROPPED_68: tuple[int, int] = (60, 64)
#: For each of the 66 DISFA points, its index in the 68-point iBUG layout.
IDX66_IN_68: np.ndarray = np.array([i for i in range(68) if i not in DROPPED_68], dtype=np.int64)
#: Nominal DISFA facts (the reader checks what is on disk, not these).
DISFA_FPS: float = 20.0
DISFA_SIZE: tuple[int, int] = (1024, 768)
DISFA_N_FRAMES: int = 4845
MAX_INTENSITY: int = 5

CAMERAS: tuple[str, ...] = ("left", "right")
#: The standard subject-exclusive 3-fold protocol's parts (JAA-Net, ME-GraphAU: tool/DISFA_image_label_process.py;
#: config/disfa_3fold.yaml): each fold tests on one part and trains on the other two.
PARTS: tuple[tuple[str, ...], ...] = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)
_LM_SUBJECT_RE = r"^{subject}_(\d{{4,5}})_lm\.mat$"
_LM_L_RE = re.compile(r"^l(\d{4,5})_lm\.mat$", re.IGNORECASE)


class DisfaError(ValueError):
    """The DISFA data on disk is missing or malformed; the message names the file (and line or frame)."""


def check_subject(subject: str) -> str:
    """Raise :class:`DisfaError` unless ``subject`` is one of the 27 DISFA subjects."""
    if subject not in DISFA_SUBJECTS:
        raise DisfaError(f"unknown DISFA subject {subject!r}; DISFA has {', '.join(DISFA_SUBJECTS)}")
    return subject


# ------------------------------------------------------------------------------------------------------ paths
def camera_dir_names(camera: str) -> tuple[str, str]:
    """The two spellings of a camera's video folder, e.g. ``Videos_LeftCamera`` and ``Video_LeftCamera``."""
    if camera not in CAMERAS:
        raise DisfaError(f"unknown camera {camera!r}; expected one of {CAMERAS}")
    cam = camera.capitalize()
    return f"Videos_{cam}Camera", f"Video_{cam}Camera"


def canonical_video_path(root: str | Path, subject: str, camera: str = "left") -> Path:
    """Where the video of ``subject`` lives in the canonical spelling (used when writing a corpus)."""
    camera_dir_names(camera)  # validates the camera
    cam = camera.capitalize()
    folder = "Videos_LeftCamera" if camera == "left" else "Video_RightCamera"
    suffix = "comp" if camera == "left" else "Comp"
    return Path(root) / folder / f"{cam}Video{subject}_{suffix}.avi"


def video_path(root: str | Path, subject: str, camera: str = "left") -> Path:
    """Find the video of ``subject``: ``Videos_``/``Video_`` folder prefix, any case of ``comp``.

    Raises :class:`DisfaError` naming the folders searched when there is no such video, or naming the files
    when more than one matches.
    """
    check_subject(subject)
    root = Path(root)
    pattern = re.compile(rf"^{camera.capitalize()}Video{subject}_comp\.avi$", re.IGNORECASE)
    folders = [root / name for name in camera_dir_names(camera)]
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found.extend(p for p in sorted(folder.iterdir()) if pattern.match(p.name))
    if not found:
        raise DisfaError(
            f"no {camera} video for subject {subject}: expected "
            f"{camera.capitalize()}Video{subject}_comp.avi (any case of 'comp') in "
            + " or ".join(str(f) for f in folders))
    if len(found) > 1:
        raise DisfaError(f"several {camera} videos for subject {subject}: {', '.join(map(str, found))}")
    return found[0]


def label_dir(root: str | Path, subject: str) -> Path:
    """``ActionUnit_Labels/{subject}`` under ``root``."""
    return Path(root) / "ActionUnit_Labels" / subject


def label_path(root: str | Path, subject: str, au: int) -> Path:
    """``ActionUnit_Labels/{subject}/{subject}_au{au}.txt`` under ``root``."""
    return label_dir(root, subject) / f"{subject}_au{au}.txt"


def landmark_dir(root: str | Path, subject: str) -> Path:
    """``Landmark_Points/{subject}/tmp_frame_lm`` under ``root``."""
    return Path(root) / "Landmark_Points" / subject / "tmp_frame_lm"


def landmark_name(subject: str, frame: int) -> str:
    """File name of the landmarks of 1-based ``frame`` in the ``SN001_{frame-1:04d}_lm.mat`` scheme."""
    return f"{subject}_{frame - 1:04d}_lm.mat"


# ----------------------------------------------------------------------------------------------------- labels
def read_label_file(path: str | Path) -> pd.Series:
    """Read one DISFA AU file (``frame,intensity`` per line) into a Series of intensities indexed by frame.

    Frames must be 1-based integers, unique and without gaps (1..N); intensities integers 0-5. Blank lines are
    ignored. Errors name the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DisfaError(f"{path}: AU label file is missing")
    frames: list[int] = []
    values: list[int] = []
    seen: dict[int, int] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 2:
                raise DisfaError(f"{path}, line {lineno}: expected 'frame,intensity', got {line!r}")
            try:
                frame, value = int(parts[0]), int(float(parts[1]))
                if float(parts[1]) != value:
                    raise ValueError
            except ValueError:
                raise DisfaError(f"{path}, line {lineno}: expected two integers 'frame,intensity', got {line!r}") from None
            if frame < 1:
                raise DisfaError(f"{path}, line {lineno}: frame {frame} is not a 1-based frame number")
            if not 0 <= value <= MAX_INTENSITY:
                raise DisfaError(f"{path}, line {lineno}: intensity {value} of frame {frame} is outside 0-{MAX_INTENSITY}")
            if frame in seen:
                raise DisfaError(f"{path}, line {lineno}: frame {frame} is duplicated (first on line {seen[frame]})")
            seen[frame] = lineno
            frames.append(frame)
            values.append(value)
    if not frames:
        raise DisfaError(f"{path}: AU label file is empty")
    expected = set(range(1, max(frames) + 1))
    missing = sorted(expected - set(frames))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DisfaError(f"{path}: missing frame number(s) {shown} (frames must run 1..{max(frames)})")
    s = pd.Series(values, index=pd.Index(frames, name="frame"), dtype=np.int64).sort_index()
    return s


def read_labels(root: str | Path, subject: str, aus: Iterable[int] = DISFA_AUS) -> pd.DataFrame:
    """Intensity labels of ``subject``: a DataFrame with ``frame`` (1-based) and ``AU{n}`` (int 0-5) columns.

    Columns follow DISFA's AU order (1, 2, 4, ... 26) whatever the order of ``aus``.

    All AU files of a subject must cover the same frames; otherwise the error names the files that differ.
    """
    check_subject(subject)
    aus = list(aus)
    bad = [a for a in aus if a not in DISFA_AUS]
    if bad:
        raise DisfaError(f"AU(s) {bad} are not annotated in DISFA; choose from {list(DISFA_AUS)}")
    if not aus:
        raise DisfaError("no AUs requested")
    aus = [a for a in DISFA_AUS if a in aus]  # DISFA order, whatever order was asked
    columns: dict[str, pd.Series] = {}
    first: tuple[Path, int] | None = None
    for au in aus:
        path = label_path(root, subject, au)
        s = read_label_file(path)
        if first is None:
            first = (path, len(s))
        elif len(s) != first[1]:
            raise DisfaError(f"{path}: {len(s)} frames, but {first[0]} has {first[1]}; the AU files of "
                             f"subject {subject} must cover the same frames")
        columns[f"AU{au}"] = s
    df = pd.DataFrame(columns)
    df.index.name = "frame"
    return df.reset_index()


def write_label_files(root: str | Path, subject: str, labels: pd.DataFrame) -> list[Path]:
    """Write ``labels`` (``frame`` + ``AU{n}``) as DISFA AU files; returns the paths written."""
    out = []
    folder = label_dir(root, subject)
    folder.mkdir(parents=True, exist_ok=True)
    frames = labels["frame"].to_numpy()
    for col in labels.columns:
        if col == "frame":
            continue
        au = int(col[2:])
        path = label_path(root, subject, au)
        values = labels[col].to_numpy()
        path.write_text("".join(f"{f},{v}\n" for f, v in zip(frames, values, strict=True)))
        out.append(path)
    return out


# -------------------------------------------------------------------------------------------------- landmarks
def landmark_files(root: str | Path, subject: str) -> dict[int, Path]:
    """Map 1-based frame number -> landmark ``.mat`` file of ``subject`` (both naming schemes).

    ``SN001_0000_lm.mat`` and ``l00000_lm.mat`` (or ``l0000_lm.mat``) both mean frame 1. Two files that claim
    the same frame raise :class:`DisfaError`; ``.mat`` files that follow neither scheme are logged and skipped.
    """
    check_subject(subject)
    folder = landmark_dir(root, subject)
    if not folder.is_dir():
        alt = Path(root) / "Landmark_Points" / subject
        if alt.is_dir() and any(alt.glob("*_lm.mat")):
            folder = alt
        else:
            raise DisfaError(f"{folder}: landmark folder of subject {subject} is missing")
    subj_re = re.compile(_LM_SUBJECT_RE.format(subject=subject), re.IGNORECASE)
    out: dict[int, Path] = {}
    skipped: list[str] = []
    for p in sorted(folder.iterdir()):
        m = subj_re.match(p.name) or _LM_L_RE.match(p.name)
        if not m:
            if p.suffix.lower() == ".mat":
                skipped.append(p.name)
            continue
        frame = int(m.group(1)) + 1
        if frame in out:
            raise DisfaError(f"{p}: frame {frame} already has landmark file {out[frame]}")
        out[frame] = p
    if skipped:
        log.warning("%s: skipped %d .mat file(s) that follow no DISFA naming scheme: %s", folder, len(skipped),
                    ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    return dict(sorted(out.items()))


def read_landmark_file(path: str | Path) -> np.ndarray:
    """Read the 66 landmarks (MATLAB variable ``pts``) of one frame as a (66, 2) float32 array (x, y pixels)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DisfaError(f"{path}: landmark file is missing")
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise DisfaError(f"{path}: cannot read MATLAB file ({exc})") from exc
    if "pts" not in mat:
        names = [k for k in mat if not k.startswith("__")]
        raise DisfaError(f"{path}: no variable 'pts' (found {names})")
    pts = np.asarray(mat["pts"], dtype=np.float64)
    if pts.shape != (66, 2):
        raise DisfaError(f"{path}: 'pts' has shape {pts.shape}, expected (66, 2)")
    if not np.isfinite(pts).all():
        raise DisfaError(f"{path}: 'pts' holds non-finite values")
    return pts.astype(np.float32)


def write_landmark_file(path: str | Path, pts66: np.ndarray) -> None:
    """Write 66 landmarks as a DISFA ``.mat`` file (variable ``pts``, 66 x 2 float64)."""
    from scipy.io import savemat

    pts66 = np.asarray(pts66, dtype=np.float64)
    if pts66.shape != (66, 2):
        raise ValueError(f"{path}: landmarks must be (66, 2), got {pts66.shape}")
    savemat(str(path), {"pts": pts66}, do_compression=False)


def to_66(pts68: np.ndarray) -> np.ndarray:
    """Drop the inner-mouth corners (indices 60, 64) of 68 iBUG points -> DISFA's 66 points."""
    pts68 = np.asarray(pts68)
    if pts68.shape[-2:] != (68, 2):
        raise ValueError(f"expected (..., 68, 2) landmarks, got {pts68.shape}")
    return pts68[..., IDX66_IN_68, :]


def to_68(pts66: np.ndarray) -> np.ndarray:
    """Expand DISFA's 66 points to the iBUG 68 layout, estimating the two inner-mouth corners.

    Inner corner 60 (64) is put on the line from the outer corner 48 (54) to the middle of the nearest inner-lip
    pair 61/67 (63/65), a fifth of the way in (the ratio dlib gives on the demo source photos: 0.18-0.21).
    """
    pts66 = np.asarray(pts66, dtype=np.float32)
    if pts66.shape[-2:] != (66, 2):
        raise ValueError(f"expected (..., 66, 2) landmarks, got {pts66.shape}")
    out = np.empty(pts66.shape[:-2] + (68, 2), dtype=np.float32)
    out[..., IDX66_IN_68, :] = pts66
    for inner, outer, a, b in ((60, 48, 61, 67), (64, 54, 63, 65)):
        mid = 0.5 * (out[..., a, :] + out[..., b, :])
        out[..., inner, :] = out[..., outer, :] + 0.2 * (mid - out[..., outer, :])
    return out


# ----------------------------------------------------------------------------------------------------- videos
@dataclass(frozen=True)
class VideoInfo:
    """What OpenCV reports about a video."""

    path: str
    n_frames: int
    fps: float
    width: int
    height: int


def video_info(path: str | Path, *, count: bool = False) -> VideoInfo:
    """Frame count, fps and size of a video through OpenCV.

    The container's frame count can be off for some codecs; ``count=True`` decodes the video and counts frames.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DisfaError(f"{path}: video file is missing")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DisfaError(f"{path}: OpenCV cannot open the video")
        n = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if count:
            n = 0
            while cap.grab():
                n += 1
    finally:
        cap.release()
    return VideoInfo(str(path), n, fps, w, h)


# ------------------------------------------------------------------------------------------------- reconcile
def _ranges(frames: Sequence[int]) -> str:
    """Compact text of a frame list: ``1-3, 7``."""
    frames = sorted(frames)
    if not frames:
        return "none"
    parts, start, prev = [], frames[0], frames[0]
    for f in frames[1:] + [None]:  # type: ignore[list-item]
        if f is not None and f == prev + 1:
            prev = f
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    return ", ".join(parts)


@dataclass
class FrameReconciliation:
    """How the label, video and landmark frame sets of one subject line up (frames are 1-based)."""

    subject: str
    n_labels: int
    n_video: int
    n_landmark_files: int
    frames: list[int] = field(default_factory=list)          # labelled frames that the video has: use these
    labels_without_video: list[int] = field(default_factory=list)
    video_without_labels: list[int] = field(default_factory=list)
    without_landmarks: list[int] = field(default_factory=list)  # usable frames with no landmark file
    landmarks_without_frame: list[int] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """True when the three sources cover exactly the same frames."""
        return not (self.labels_without_video or self.video_without_labels or self.without_landmarks
                    or self.landmarks_without_frame)

    def summary(self) -> str:
        """One paragraph for a log."""
        lines = [f"subject {self.subject}: {self.n_labels} labelled frames, {self.n_video} video frames, "
                 f"{self.n_landmark_files} landmark files; {len(self.frames)} frames usable (labelled and in video)"]
        for name in ("labels_without_video", "video_without_labels", "without_landmarks",
                     "landmarks_without_frame"):
            v = getattr(self, name)
            if v:
                lines.append(f"  {name.replace('_', ' ')}: {len(v)} ({_ranges(v)})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-friendly dict, with frame lists compacted to range text and counts."""
        d = asdict(self)
        d["frames"] = _ranges(self.frames)
        for k in ("labels_without_video", "video_without_labels", "without_landmarks", "landmarks_without_frame"):
            d[f"n_{k}"] = len(d[k])
            d[k] = _ranges(d[k])
        d["consistent"] = self.consistent
        return d


def reconcile_counts(subject: str, label_frames: Iterable[int], n_video_frames: int,
                     landmark_frames: Iterable[int]) -> FrameReconciliation:
    """Reconcile the frame sets of labels, video (frames 1..n) and landmark files; log what differs.

    DISFA's label, video and landmark counts can differ by a frame or so. The usable frames are those that
    are labelled and present in the video; frames without a landmark file stay usable (a later stage detects
    landmarks or marks them invalid) and are reported.
    """
    labels = set(int(f) for f in label_frames)
    video = set(range(1, int(n_video_frames) + 1))
    lms = set(int(f) for f in landmark_frames)
    usable = sorted(labels & video)
    rec = FrameReconciliation(
        subject=subject, n_labels=len(labels), n_video=int(n_video_frames), n_landmark_files=len(lms),
        frames=usable,
        labels_without_video=sorted(labels - video),
        video_without_labels=sorted(video - labels),
        without_landmarks=sorted(set(usable) - lms),
        landmarks_without_frame=sorted(lms - set(usable)),
    )
    (log.info if rec.consistent else log.warning)(rec.summary())
    return rec


def subject_report(root: str | Path, subject: str, aus: Iterable[int] = DISFA_AUS, camera: str = "left",
                   ) -> tuple[pd.DataFrame, FrameReconciliation, VideoInfo]:
    """Read the labels of ``subject`` and reconcile them with its video and landmark files."""
    labels = read_labels(root, subject, aus)
    info = video_info(video_path(root, subject, camera))
    try:
        lm_frames = list(landmark_files(root, subject))
    except DisfaError as exc:
        log.warning("%s", exc)
        lm_frames = []
    rec = reconcile_counts(subject, labels["frame"], info.n_frames, lm_frames)
    return labels, rec, info


def export_labels(root: str | Path, subject: str, aus: Iterable[int], out_csv: str | Path,
                  out_json: str | Path | None = None, camera: str = "left") -> FrameReconciliation:
    """Write ``results/labels/{subject}.csv`` (``frame`` + ``AU{n}``) and the frame report as JSON.

    The CSV holds the labelled frames that the video has (see :func:`reconcile_counts`).
    """
    import json

    from ..io import write_csv_atomic, write_text_atomic

    labels, rec, info = subject_report(root, subject, aus, camera)
    labels = labels[labels["frame"].isin(rec.frames)].reset_index(drop=True)
    write_csv_atomic(labels, out_csv)
    if out_json is not None:
        d = rec.to_dict()
        d.update(video=info.path, fps=info.fps, width=info.width, height=info.height, camera=camera,
                 aus=[int(c[2:]) for c in labels.columns if c != "frame"])
        write_text_atomic(json.dumps(d, indent=2) + "\n", out_json)
    return rec

