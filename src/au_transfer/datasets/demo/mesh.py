"""The piecewise-affine (Delaunay) mesh warp that moves a face by control-point displacements."""

from __future__ import annotations

import numpy as np


class MeshWarp:
    """Piecewise-affine warp over a Delaunay mesh of control points (plus fixed ring and border points).

    The barycentric coordinates of every pixel in the neutral mesh are computed once; a frame's displacement
    field is then a weighted sum, inverted by two fixed-point steps and applied with ``cv2.remap``.
    """

    def __init__(self, ctrl: np.ndarray, width: int, height: int, ring_scale: float = 1.45):
        from scipy.spatial import Delaunay

        self.width, self.height = width, height
        self.n_ctrl = len(ctrl)
        c = ctrl[:68].mean(0)
        half = (ctrl[:68].max(0) - ctrl[:68].min(0)) / 2 * ring_scale
        ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        ring = c + np.stack([half[0] * np.cos(ang), half[1] * 1.15 * np.sin(ang)], 1)
        w, h = width - 1, height - 1
        border = np.array([[0, 0], [w / 2, 0], [w, 0], [w, h / 2], [w, h], [w / 2, h], [0, h], [0, h / 2]])
        self.points = np.vstack([ctrl, ring, border])
        tri = Delaunay(self.points)
        x0, y0 = np.floor(np.clip(ring.min(0), 0, [w, h])).astype(int)
        x1, y1 = np.ceil(np.clip(ring.max(0), 0, [w, h])).astype(int) + 1
        self.roi = (slice(y0, y1), slice(x0, x1))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        pix = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64)
        simplex = tri.find_simplex(pix)
        simplex = np.where(simplex < 0, 0, simplex)  # outside the hull cannot happen (border points); be safe
        trans = tri.transform[simplex]
        b = np.einsum("nij,nj->ni", trans[:, :2], pix - trans[:, 2])
        self.bary = np.concatenate([b, 1 - b.sum(1, keepdims=True)], 1).astype(np.float32)
        self.verts = tri.simplices[simplex].astype(np.int32)
        self.roi_shape = yy.shape
        gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.grid = np.stack([gx, gy], -1)

    def field(self, disp_ctrl: np.ndarray) -> np.ndarray:
        """Dense forward displacement field (H, W, 2) float32 of control-point displacements (n_ctrl, 2)."""
        disp = np.zeros((len(self.points), 2), np.float32)
        disp[: self.n_ctrl] = disp_ctrl
        d = np.einsum("nk,nkc->nc", self.bary, disp[self.verts])
        out = np.zeros((self.height, self.width, 2), np.float32)
        out[self.roi] = d.reshape(*self.roi_shape, 2)
        return out

    def maps(self, disp_ctrl: np.ndarray, pose: np.ndarray | None = None) -> np.ndarray:
        """Inverse map (H, W, 2) float32 for ``cv2.remap``: output pixel -> neutral-image pixel.

        The output is the neutral image deformed by ``disp_ctrl`` and then moved by the 2x3 ``pose``.
        """
        import cv2

        grid = self.grid
        if pose is not None:
            inv = cv2.invertAffineTransform(pose.astype(np.float64)).astype(np.float32)
            grid = grid @ inv[:, :2].T + inv[:, 2]
        if not np.any(disp_ctrl):
            return np.ascontiguousarray(grid)
        d = self.field(disp_ctrl)
        src = grid - cv2.remap(d, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR)
        src = grid - cv2.remap(d, src[..., 0], src[..., 1], cv2.INTER_LINEAR)
        return src

    def warp(self, image: np.ndarray, disp_ctrl: np.ndarray, pose: np.ndarray | None = None,
             border: int | None = None) -> np.ndarray:
        """Warp ``image`` (neutral mesh) by ``disp_ctrl`` and ``pose``."""
        import cv2

        m = self.maps(disp_ctrl, pose)
        return cv2.remap(image, m[..., 0], m[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT if border is None else border)
