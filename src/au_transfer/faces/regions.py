"""Face regions of paper Fig. 3, defined from the 68 aligned landmarks, and square region crops.

In aligned-crop pixel coordinates (y down), with ``iod`` the distance between the eye centres:

* ``upper`` (AUs 1, 2, 4, 5, 6): the upper half of the face. x spans the face contour (points 0-16) and brows;
  y runs from ``forehead * iod`` above the highest brow point down to the middle of the nose (point 29), so it
  holds the forehead, brows, eyes and the upper cheeks (AU6).
* ``middle`` (AU9): eyes to nose. x spans the outer eye corners (36, 45) widened by ``pad * iod``; y runs from
  ``pad * iod`` above the eyes to the top of the upper lip (point 51), so it holds the nose bridge, the nose and
  the nasolabial area where AU9 wrinkles.
* ``lower`` (AUs 12-26): the lower half of the face. x spans the jaw contour (points 2-14) widened by
  ``pad * iod``; y runs from the middle of the nose (point 29) to ``pad * iod`` below the chin (point 8); it
  holds the mouth, the lower cheeks and the chin.
* ``face``: the whole aligned crop.

All boxes are ``(x0, y0, x1, y1)`` floats clipped to the crop. A region crop keeps the aspect ratio: the box is cut
out and centred on a black square (letterbox, ``aspect="pad"``), then resized to ``out_size``; ``aspect="stretch"``
resizes the box to the square instead.
"""

from __future__ import annotations

import cv2
import numpy as np

REGION_NAMES: tuple[str, ...] = ("upper", "middle", "lower")
CROP_REGIONS: tuple[str, ...] = ("face", "upper", "middle", "lower")


def region_boxes(pts68: np.ndarray, size: int, *, pad: float, forehead: float,
                 ) -> dict[str, tuple[float, float, float, float]]:
    """Upper, middle and lower boxes ``(x0, y0, x1, y1)`` in pixels of an aligned ``size`` crop (see module doc)."""
    p = np.asarray(pts68, np.float64)
    if p.shape != (68, 2) or not np.isfinite(p).all():
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {p.shape}")
    iod = float(np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0)))
    if iod <= 0:
        raise ValueError("degenerate landmarks: the eye centres coincide")
    a = pad * iod
    y_mid = p[29, 1]
    upper_pts = p[np.r_[0:27]]
    upper = (upper_pts[:, 0].min(), p[17:27, 1].min() - forehead * iod, upper_pts[:, 0].max(), y_mid)
    middle = (p[36, 0] - a, p[36:48, 1].min() - a, p[45, 0] + a, p[51, 1])
    jaw = p[2:15]
    lower = (jaw[:, 0].min() - a, y_mid, jaw[:, 0].max() + a, p[8, 1] + a)

    def clip(b: tuple[float, ...]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = (float(np.clip(v, 0, size)) for v in b)
        return (x0, y0, max(x1, x0 + 1.0), max(y1, y0 + 1.0))

    return {"upper": clip(upper), "middle": clip(middle), "lower": clip(lower)}


def boxes_array(pts68: np.ndarray, size: int, *, pad: float, forehead: float) -> np.ndarray:
    """Region boxes as a (3, 4) float32 array in :data:`REGION_NAMES` order."""
    b = region_boxes(pts68, size, pad=pad, forehead=forehead)
    return np.array([b[r] for r in REGION_NAMES], np.float32)


def cut_region(image: np.ndarray, box: tuple[float, float, float, float] | np.ndarray | None, out_size: int,
               aspect: str = "pad", out: np.ndarray | None = None) -> np.ndarray:
    """Cut ``box`` (None = whole image) out of an (H, W, 3) image and return an (out, out, 3) uint8 square
    (written into ``out``, a C-contiguous (out_size, out_size, 3) uint8 array, when given)."""
    if out is not None and (out.shape != (out_size, out_size, 3) or out.dtype != np.uint8
                            or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous ({out_size}, {out_size}, 3) uint8 array, got {out.dtype} "
                         f"{out.shape}")
    h, w = image.shape[:2]
    if box is None:
        sub = image
    else:
        x0, y0, x1, y1 = (float(v) for v in box)
        if not np.isfinite([x0, y0, x1, y1]).all():
            sub = np.zeros((1, 1, 3), np.uint8)
        else:
            xi0, yi0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
            xi1, yi1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
            sub = image[yi0:max(yi1, yi0 + 1), xi0:max(xi1, xi0 + 1)]
    sh, sw = sub.shape[:2]
    if aspect == "pad" and sh != sw:
        side = max(sh, sw)
        sq = np.zeros((side, side, 3), np.uint8)
        oy, ox = (side - sh) // 2, (side - sw) // 2
        sq[oy:oy + sh, ox:ox + sw] = sub
        sub = sq
    elif aspect not in ("pad", "stretch"):
        raise ValueError(f"aspect must be 'pad' or 'stretch', got {aspect!r}")
    if sub.shape[0] == out_size and sub.shape[1] == out_size:
        if out is None:
            return np.ascontiguousarray(sub)
        out[...] = sub
        return out
    interp = cv2.INTER_AREA if sub.shape[0] > out_size else cv2.INTER_LINEAR
    if out is None:
        return cv2.resize(sub, (out_size, out_size), interpolation=interp)
    res = cv2.resize(sub, (out_size, out_size), dst=out, interpolation=interp)
    if res is not out and not np.shares_memory(res, out):  # OpenCV reallocated: keep the promise
        out[...] = res
    return out
