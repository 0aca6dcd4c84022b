"""Faces stage geometry: similarity alignment, 66->68 mapping, plausibility checks, region boxes."""

from __future__ import annotations

import numpy as np
import pytest

from au_transfer.faces.align import (
    STABLE_POINTS,
    align_face,
    alignment_transform,
    apply_transform,
    template_points,
    umeyama,
)
from au_transfer.faces.landmarks import (
    REASON,
    check_points,
    jump_outliers,
    map_66_to_68,
)
from au_transfer.faces.regions import REGION_NAMES, boxes_array, cut_region, region_boxes
from au_transfer.faces.settings import FaceSettings

DEFAULTS = FaceSettings.from_config()   # the faces schema's defaults
REGION_KW = {"pad": DEFAULTS.region_pad, "forehead": DEFAULTS.region_forehead}


def _similarity(rng, scale_range=(0.5, 3.0)):
    ang = rng.uniform(-0.6, 0.6)
    s = rng.uniform(*scale_range)
    t = rng.uniform(-200, 200, 2)
    m = np.zeros((2, 3))
    m[:, :2] = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    m[:, 2] = t
    return m


def _invert(m):
    a = m[:, :2]
    ai = np.linalg.inv(a)
    return np.hstack([ai, (-ai @ m[:, 2])[:, None]])


@pytest.mark.parametrize("seed", range(5))
def test_umeyama_recovers_a_similarity(seed):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 100, (11, 2))
    m = _similarity(rng)
    est = umeyama(src, apply_transform(m, src))
    np.testing.assert_allclose(est, m, atol=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_alignment_puts_template_points_where_they_belong(seed):
    rng = np.random.default_rng(100 + seed)
    size, margin = 96, 0.12
    tpl = template_points(size, margin)
    # a face somewhere in a frame: the template moved by an unknown similarity, plus 0.3 px noise
    frame_pts = apply_transform(_invert(_similarity(rng)), tpl) + rng.normal(0, 0.3, (68, 2))
    m = alignment_transform(frame_pts, size, margin)
    aligned = apply_transform(m, frame_pts)
    err = np.linalg.norm(aligned - tpl, axis=1)
    assert err[list(STABLE_POINTS)].max() < 1.5
    assert err.max() < 2.0


def test_align_face_warps_pixels_onto_the_template():
    size, margin = 64, 0.1
    tpl = template_points(size, margin)
    m_true = np.array([[2.0, 0.3, 40.0], [-0.3, 2.0, 25.0]])  # template -> frame
    frame_pts = apply_transform(m_true, tpl)
    img = np.zeros((300, 320, 3), np.uint8)
    nose = frame_pts[30].round().astype(int)
    img[nose[1] - 3:nose[1] + 4, nose[0] - 3:nose[0] + 4] = 255  # a white patch on the nose tip
    crop, aligned, m = align_face(img, frame_pts, size, margin)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(aligned, tpl, atol=1e-3)
    x, y = tpl[30].round().astype(int)
    assert crop[y, x].min() > 200                         # the patch landed on the template's nose tip
    assert crop[(y + 12) % size, (x + 12) % size].max() == 0
    assert m.shape == (2, 3)


def test_alignment_rejects_bad_points():
    with pytest.raises(ValueError, match="68, 2"):
        alignment_transform(np.zeros((66, 2)), 64, 0.1)
    pts = template_points(64, 0.1)
    pts[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        alignment_transform(pts, 64, 0.1)


def test_map_66_to_68_keeps_points_and_estimates_inner_mouth_corners():
    pts68 = template_points(200, 0.1)
    pts66 = np.delete(pts68, [60, 64], axis=0)
    out = map_66_to_68(pts66)
    keep = [i for i in range(68) if i not in (60, 64)]
    np.testing.assert_array_equal(out[keep], pts68[keep])
    for inner, outer, a, b in ((60, 48, 61, 67), (64, 54, 63, 65)):
        mid = (out[a] + out[b]) / 2
        # on the segment outer corner -> inner-lip mid-point, closer to the corner
        t = np.dot(out[inner] - out[outer], mid - out[outer]) / np.dot(mid - out[outer], mid - out[outer])
        assert 0.05 < t < 0.5
        # and near where the template has it (a few percent of the interocular distance of ~70 px)
        assert np.linalg.norm(out[inner] - pts68[inner]) < 6
    with pytest.raises(ValueError, match="66, 2"):
        map_66_to_68(pts68)


def test_plausibility_checks():
    plaus = DEFAULTS.plausibility
    hw = (480, 640)
    good = template_points(200, 0.1) + [200, 100]
    assert check_points(good, hw, plaus) == REASON["ok"]
    assert check_points(good + [600, 0], hw, plaus) == REASON["outside_frame"]
    nan = good.copy()
    nan[10] = np.nan
    assert check_points(nan, hw, plaus) == REASON["degenerate"]
    assert check_points(np.full((68, 2), 50.0), hw, plaus) == REASON["degenerate"]
    upside_down = good.copy()
    upside_down[:, 1] = 500 - upside_down[:, 1]
    assert check_points(upside_down, hw, plaus) == REASON["degenerate"]
    tiny = template_points(10, 0.1) + [300, 300]
    assert check_points(tiny, hw, plaus) == REASON["face_size"]


def test_jump_outliers_flag_single_frame_jumps_but_not_steady_motion():
    base = template_points(200, 0.1)
    n = 12
    pts = np.stack([base + [3.0 * i, 0] for i in range(n)])   # steady motion, 3 px per frame
    pts[5] += 80                                              # one frame jumps away and back
    pts[9:] += 60                                             # a real cut: jumps once, then stays
    usable = np.ones(n, bool)
    usable[1] = False
    flags = jump_outliers(pts, usable, 0.5)
    assert np.flatnonzero(flags).tolist() == [5]


def _all_inside(box, pts):
    x0, y0, x1, y1 = box
    return bool(((pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)).all())


@pytest.mark.parametrize("size,margin", [(112, 0.15), (160, 0.1), (64, 0.2)])
def test_region_boxes_contain_the_right_landmarks(size, margin):
    p = template_points(size, margin)
    b = region_boxes(p, size, **REGION_KW)
    assert _all_inside(b["upper"], p[np.r_[17:27, 36:48]])     # brows and eyes
    assert _all_inside(b["middle"], p[27:36])                 # nose
    assert _all_inside(b["middle"], p[36:48])                 # eyes (AU9 goes from eyes to nose)
    assert _all_inside(b["lower"], p[48:68])                  # mouth
    assert _all_inside(b["lower"], p[[7, 8, 9]])              # chin
    assert not _all_inside(b["upper"], p[48:68][:1])          # no mouth in the upper half
    assert not _all_inside(b["lower"], p[17:27][:1])          # no brows in the lower half
    for box in b.values():
        assert 0 <= box[0] < box[2] <= size and 0 <= box[1] < box[3] <= size
    arr = boxes_array(p, size, **REGION_KW)
    assert arr.shape == (3, 4) and np.allclose(arr[REGION_NAMES.index("middle")], b["middle"])


def test_cut_region_letterboxes_and_stretches():
    img = np.zeros((100, 100, 3), np.uint8)
    img[20:40, 10:90] = 200                                  # a wide box of colour
    sq = cut_region(img, (10, 20, 90, 40), 32, "pad")
    assert sq.shape == (32, 32, 3)
    assert sq[16, 16].min() > 150 and sq[1, 16].max() == 0   # content in the middle, black bars above/below
    st = cut_region(img, (10, 20, 90, 40), 32, "stretch")
    assert st.min() > 150
    whole = cut_region(img, None, 50)
    assert whole.shape == (50, 50, 3)
    assert cut_region(img, (np.nan, 0, 1, 1), 8).max() == 0


@pytest.mark.parametrize("box, size", [(None, 50), (None, 100), (None, 150), ((10, 20, 90, 40), 32),
                                       ((10, 20, 90, 40), 120)])
def test_cut_region_into_a_given_array_is_the_same_square(box, size):
    img = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    out = np.zeros((2, size, size, 3), np.uint8)
    got = cut_region(img, box, size, "pad", out=out[1])
    np.testing.assert_array_equal(out[1], cut_region(img, box, size, "pad"))   # written in place, same pixels
    assert np.shares_memory(got, out) and out[0].max() == 0
    with pytest.raises(ValueError, match="C-contiguous"):
        cut_region(img, box, size, out=np.zeros((size, size, 4), np.uint8))
