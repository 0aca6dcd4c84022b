"""A synthetic subject's neutral appearance: source photo placed in the frame, identity (face shape, skin
tone), background, head mask and the wrinkles each AU adds; and the per-subject random streams."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import disfa
from .facs import MIRROR_68, N_CONTROL, FaceFrame, _side_of, au_displacements, control_points
from .mesh import MeshWarp
from .sources import SOURCES, source_face


@dataclass
class Subject:
    """A synthetic subject: its neutral frame, head mask, background and landmark geometry."""

    name: str
    source: str
    mirror: bool
    face: np.ndarray        # (H, W, 3) float32 RGB 0-255, the neutral face placed in the frame
    alpha: np.ndarray       # (H, W) float32 head-and-shoulders mask
    background: np.ndarray  # (H, W, 3) float32
    ctrl: np.ndarray        # (N_CONTROL, 2) neutral control points in frame pixels
    mesh: MeshWarp
    au_disp: dict[int, np.ndarray]
    shade: dict[int, np.ndarray]  # per AU: (H, W) float32 relative shading at intensity 5 (wrinkles, folds)
    params: dict


def _subject_number(subject: str) -> int:
    disfa.check_subject(subject)
    return int(subject[2:])


def _rng(seed: int, subject: str, stream: int) -> np.random.Generator:
    """Independent stream ``stream`` of ``subject`` under ``seed``."""
    return np.random.default_rng([int(seed), _subject_number(subject), int(stream)])


def _shape_offsets(ctrl: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Identity-specific displacement of the control points (face shape), in pixels."""
    f = FaceFrame.of(ctrl[:68])
    side = np.array([_side_of(i) for i in range(N_CONTROL)])
    p = {
        "jaw_width": float(rng.uniform(0.9, 1.12)),
        "eye_spacing": float(rng.uniform(-0.06, 0.06)),
        "brow_height": float(rng.uniform(-0.07, 0.06)),
        "nose_length": float(rng.uniform(-0.06, 0.08)),
        "mouth_width": float(rng.uniform(0.9, 1.12)),
        "chin_length": float(rng.uniform(-0.08, 0.1)),
        "lip_thickness": float(rng.uniform(-0.02, 0.03)),
    }
    local = (ctrl - f.mid) @ np.stack([f.ex, f.ey], 1) / f.u   # face-axis coordinates in units of u
    dx = np.zeros(N_CONTROL)
    dy = np.zeros(N_CONTROL)
    jaw = [*range(0, 17), 71, 72]
    dx[jaw] += (p["jaw_width"] - 1) * local[jaw, 0]
    eyes = [*range(17, 27), *range(36, 48)]
    dx[eyes] += p["eye_spacing"] * side[eyes]
    dy[17:27] += p["brow_height"]
    dy[[30, 31, 32, 33, 34, 35]] += p["nose_length"]
    dy[29] += p["nose_length"] / 2
    mouth = list(range(48, 68))
    mc = local[mouth, 0].mean()
    dx[mouth] += (p["mouth_width"] - 1) * (local[mouth, 0] - mc)
    dy[mouth] += 0.7 * p["nose_length"]
    chin_w = {5: 0.3, 6: 0.6, 7: 0.9, 8: 1.0, 9: 0.9, 10: 0.6, 11: 0.3}
    for i, wgt in chin_w.items():
        dy[i] += p["chin_length"] * wgt + 0.7 * p["nose_length"] * wgt
    dy[[49, 50, 51, 52, 53]] -= p["lip_thickness"]
    dy[[55, 56, 57, 58, 59]] += p["lip_thickness"]
    return f.to_image(dx, dy), p


#: The source photos' own expression, undone to get a neutral face (intensity per AU; the astronaut smiles).
_SOURCE_EXPRESSION: dict[str, dict[int, float]] = {"astronaut": {12: 2.0, 6: 1.0}, "grace_hopper": {}}


def _neutralise(ctrl: np.ndarray, source: str) -> np.ndarray:
    """Displacement (pixels) that closes the lips of a source photo and undoes its expression."""
    f = FaceFrame.of(ctrl[:68])
    d = np.zeros_like(ctrl)
    for au, inten in _SOURCE_EXPRESSION.get(source, {}).items():
        d -= inten / 5.0 * au_displacements(ctrl)[au]
    p = ctrl + d
    # close the mouth: the inner lips meet (a hair apart) on their midline; outer lips and chin follow
    for up, lo, up_out, lo_out in ((61, 67, 50, 58), (62, 66, 51, 57), (63, 65, 52, 56)):
        mid = 0.5 * (p[up] + p[lo])
        gap = 0.004 * f.u * f.ey
        du, dl = mid - gap - p[up], mid + gap - p[lo]
        d[up] += du
        d[up_out] += du
        d[lo] += dl
        d[lo_out] += dl
        if lo == 66:
            d[[7, 8, 9]] += 0.8 * dl
            d[[49, 53]] += 0.5 * du
            d[[59, 55]] += 0.5 * dl
    return d


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A studio-like backdrop: a two-colour gradient with large soft blobs."""
    import cv2

    c0 = rng.uniform(40, 200, 3)
    c1 = np.clip(c0 + rng.uniform(-60, 60, 3), 10, 240)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    bg = (1 - t) * c0[None, None, :] + t * c1[None, None, :]
    bg = np.broadcast_to(bg, (height, width, 3)).astype(np.float32).copy()
    blobs = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.1, 0.35) * width
        cv2.circle(blobs, (int(cx), int(cy)), int(r), float(rng.uniform(-1, 1)), -1)
    blobs = cv2.GaussianBlur(blobs, (0, 0), 0.08 * width)
    return np.clip(bg * (1 + 0.25 * blobs[..., None]), 0, 255)


def _head_mask(ctrl: np.ndarray, width: int, height: int) -> np.ndarray:
    """Soft mask of head (with hair), neck and shoulders around the neutral landmarks."""
    import cv2

    pts = ctrl[:68]
    f = FaceFrame.of(pts)
    u = f.u
    mask = np.zeros((height, width), np.float32)
    local = (pts - f.mid) @ np.stack([f.ex, f.ey], 1)
    top = local[17:27, 1].min() - 1.05 * u
    bottom = local[8, 1] + 0.12 * u
    half_w = 0.5 * (local[:, 0].max() - local[:, 0].min()) * 1.08
    centre_local = np.array([0.5 * (local[:, 0].max() + local[:, 0].min()), 0.5 * (top + bottom)])
    centre = f.mid + centre_local[0] * f.ex + centre_local[1] * f.ey
    angle = np.degrees(np.arctan2(f.ex[1], f.ex[0]))
    axes = (int(half_w), int(0.5 * (bottom - top)))
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
    chin = pts[8]
    neck_w = 0.45 * half_w
    body = np.array([
        chin + (-neck_w) * f.ex - 0.4 * u * f.ey,
        chin + neck_w * f.ex - 0.4 * u * f.ey,
        chin + neck_w * 1.1 * f.ex + 0.7 * u * f.ey,
        chin + 2.6 * half_w * f.ex + 1.6 * u * f.ey,
        chin + 2.8 * half_w * f.ex + 6 * u * f.ey,
        chin - 2.8 * half_w * f.ex + 6 * u * f.ey,
        chin - 2.6 * half_w * f.ex + 1.6 * u * f.ey,
        chin - neck_w * 1.1 * f.ex + 0.7 * u * f.ey,
    ])
    cv2.fillPoly(mask, [np.round(body).astype(np.int32)], 1.0, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.06 * u))


def au_shading(ctrl: np.ndarray, width: int, height: int) -> dict[int, np.ndarray]:
    """Wrinkles and folds that AUs add, as relative shading maps at intensity 5 on the neutral face.

    AU1/AU2 forehead lines, AU4 vertical furrows between the brows, AU6 crow's feet and a raised cheek, AU9
    wrinkles across the nose bridge, AU12 nasolabial folds, AU15 folds below the lip corners, AU17 a chin crease
    and dimpling, AU20 short lines beyond the lip corners. Each frame warps them with the face.
    """
    import cv2

    f = FaceFrame.of(ctrl[:68])
    u, ex, ey = f.u, f.ex, f.ey
    p = ctrl
    thick = max(1, int(round(0.03 * u)))
    out: dict[int, np.ndarray] = {}

    def strokes(lines: list[np.ndarray], value: float, blobs: tuple = (), soft: float = 1.0) -> np.ndarray:
        m = np.zeros((height, width), np.float32)
        for line in lines:
            cv2.polylines(m, [np.round(line * 8).astype(np.int32)], False, 1.0, thick, cv2.LINE_AA, shift=3)
        m = cv2.GaussianBlur(m, (0, 0), max(0.5, 0.025 * soft * u)) * value
        for centre, radius, v in blobs:
            b = np.zeros((height, width), np.float32)
            cv2.circle(b, (int(centre[0]), int(centre[1])), max(1, int(radius)), 1.0, -1, cv2.LINE_AA)
            m += cv2.GaussianBlur(b, (0, 0), max(0.5, 0.5 * radius)) * v
        return m

    def arc(a: np.ndarray, b: np.ndarray, bend: float, n: int = 7) -> np.ndarray:
        t = np.linspace(0, 1, n)[:, None]
        return a + (b - a) * t - bend * u * ey * (4 * t * (1 - t))

    brow_top = min(p[19] @ ey, p[24] @ ey)
    up = lambda q, k: q - ((q @ ey) - brow_top + k * u) * ey  # noqa: E731  (q moved to k*u above the brows)
    out[1] = strokes([arc(up(p[20], 0.28 + 0.14 * k), up(p[23], 0.28 + 0.14 * k), 0.05) for k in range(3)], -0.2)
    out[2] = strokes([arc(up(p[18], 0.32 + 0.14 * k), up(p[25], 0.32 + 0.14 * k), 0.08) for k in range(3)], -0.17)
    c = 0.5 * (p[21] + p[22])
    half = 0.5 * (p[22] - p[21])
    out[4] = strokes([np.stack([c + s_ * 0.35 * half - 0.18 * u * ey, c + s_ * 0.3 * half + 0.12 * u * ey])
                      for s_ in (-1, 1)], -0.22, soft=1.8)
    feet = []
    for corner, sgn in ((p[36], -1), (p[45], 1)):
        for ang in (-25, 0, 25):
            r = np.radians(ang)
            d = sgn * (np.cos(r) * ex) + np.sin(r) * ey
            feet.append(np.stack([corner + 0.12 * u * d, corner + 0.3 * u * d]))
    lids = [arc(p[41] + 0.1 * u * ey - 0.1 * u * ex, p[40] + 0.1 * u * ey, -0.03),
            arc(p[47] + 0.1 * u * ey, p[46] + 0.1 * u * ey + 0.1 * u * ex, -0.03)]
    out[6] = strokes(feet + lids, -0.22, ((p[71], 0.18 * u, 0.1), (p[72], 0.18 * u, 0.1)))
    bridge = [np.stack([q - 0.16 * u * ex, q + 0.16 * u * ex]) for q in (p[27], 0.5 * (p[27] + p[28]), p[28])]
    wings = [np.stack([p[31] - 0.05 * u * ex, p[31] - 0.12 * u * ex - 0.12 * u * ey]),
             np.stack([p[35] + 0.05 * u * ex, p[35] + 0.12 * u * ex - 0.12 * u * ey])]
    out[9] = strokes(bridge + wings, -0.22, soft=1.5)
    folds = []
    for wing, corner, sgn in ((p[31], p[48], -1), (p[35], p[54], 1)):
        a = wing + sgn * 0.1 * u * ex
        b = corner + sgn * 0.14 * u * ex + 0.12 * u * ey
        mid = 0.5 * (a + b) + sgn * 0.08 * u * ex
        folds.append(np.stack([a, mid, b]))
    out[12] = strokes(folds, -0.26)
    out[15] = strokes([np.stack([p[48] + 0.05 * u * ey, p[48] + 0.28 * u * ey - 0.05 * u * ex]),
                       np.stack([p[54] + 0.05 * u * ey, p[54] + 0.28 * u * ey + 0.05 * u * ex])], -0.18)
    crease = arc(p[58] + 0.12 * u * ey, p[56] + 0.12 * u * ey, 0.04)
    out[17] = strokes([crease], -0.25, ((0.5 * (p[57] + p[8]) + 0.05 * u * ey, 0.14 * u, -0.1),))
    out[20] = strokes([np.stack([p[48] - 0.06 * u * ex, p[48] - 0.2 * u * ex + 0.03 * u * ey]),
                       np.stack([p[54] + 0.06 * u * ex, p[54] + 0.2 * u * ex + 0.03 * u * ey])], -0.16)
    return out


def make_subject(subject: str, *, width: int, height: int, seed: int) -> Subject:
    """Build the neutral appearance of ``subject`` (deterministic in ``seed`` and ``subject``)."""
    import cv2

    num = _subject_number(subject)
    rng = _rng(seed, subject, 1)
    source = SOURCES[(num - 1) % len(SOURCES)]
    mirror = ((num - 1) // len(SOURCES)) % 2 == 1
    img, pts = source_face(source)
    img = img.astype(np.float32)
    pts = pts.copy()
    if mirror:
        img = img[:, ::-1].copy()
        pts[:, 0] = img.shape[1] - 1 - pts[:, 0]
        pts = pts[MIRROR_68]
    # place the face: level the eyes (plus a little roll), scale so the landmarks span face_frac of the height
    f = FaceFrame.of(pts)
    face_frac = float(rng.uniform(0.30, 0.40))
    roll = float(rng.uniform(-4, 4))
    offset = rng.uniform([-0.08, -0.06], [0.08, 0.03]) * [width, height]
    span = pts[:, 1].max() - pts[17:27, 1].min()
    s = face_frac * height / span
    angle = -np.degrees(np.arctan2(f.ex[1], f.ex[0])) + roll
    centre_src = pts.mean(0)
    target = np.array([width / 2, height * 0.5]) + offset
    if s < 1:  # shrink with area averaging first, so that small frames are not aliased
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        pts = pts * s
        centre_src = centre_src * s
        s_rest = 1.0
    else:
        s_rest = s
    m = cv2.getRotationMatrix2D((float(centre_src[0]), float(centre_src[1])), -angle, s_rest)
    m[:, 2] += target - centre_src
    face = cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    pts_f = pts @ m[:, :2].T + m[:, 2]
    # identity: face shape, by warping the placed photo
    ctrl0 = control_points(pts_f)
    shape_disp, shape_p = _shape_offsets(ctrl0, rng)
    shape_disp = shape_disp + _neutralise(ctrl0, source)
    face = MeshWarp(ctrl0, width, height).warp(face, shape_disp.astype(np.float32))
    ctrl = ctrl0 + shape_disp
    # skin tone and colour
    tone = float(rng.uniform(0.6, 1.12))
    warm = float(rng.uniform(-0.08, 0.1))
    gains = np.array([1 + warm, 1.0, 1 - warm], np.float32) * tone
    face = np.clip(face * gains, 0, 255)
    params = {"source": source, "mirror": mirror, "face_frac": face_frac, "roll_deg": roll,
              "offset_px": [float(o) for o in offset], "tone": tone, "warmth": warm, **shape_p}
    return Subject(
        name=subject, source=source, mirror=mirror, face=face.astype(np.float32),
        alpha=_head_mask(ctrl, width, height), background=_background(rng, width, height),
        ctrl=ctrl, mesh=MeshWarp(ctrl, width, height), au_disp=au_displacements(ctrl),
        shade=au_shading(ctrl, width, height), params=params)
