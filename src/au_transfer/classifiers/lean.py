"""Memory-lean fits of the frame classifiers for many training rows: the same models as scikit-learn's, computed
without copies of the training matrix.

On DISFA-sized training sets (12 subjects, an AU present in a third of the frames: ~40,000 balanced rows x 4,096
dimensions, 655 MB as float32) scikit-learn's fits hold several copies of the rows: ``StandardScaler.fit`` a float64
variance temporary, ``LinearSVC`` a float64 copy and liblinear's own row lists (16 bytes a value: 2.6 GB), the LDA
``svd`` solver centred, scaled and decomposed copies. Here:

* :func:`standardise_in_place` fits the ``StandardScaler`` block by block (``partial_fit``) and standardises the
  float32 rows in place;
* :class:`NewtonLinearSVC` is ``LinearSVC`` (L2 penalty, squared hinge loss, an intercept regularised like
  liblinear's, ``intercept_scaling``, ``class_weight``) whose objective is minimised by SciPy's trust-region
  Newton-CG (``trust-ncg``: the method of liblinear's primal solver), the objective and gradient computed in
  float64 and the Hessian-vector products in float32, block by block on the float32 rows; it stops at liblinear's criterion (the relative gradient norm):
  the objective within 1e-5 of liblinear's, the coefficients within ~1e-4 (C <= 0.1) to ~2e-3 (C = 1, where
  float32 products bound the gradient's precision) and the same predictions but for a rare frame (tested);
* :class:`ScatterLDA` is ``LinearDiscriminantAnalysis(solver="svd")`` whose SVD of the within-class-centred,
  scaled rows is computed from their d x d scatter matrix (accumulated block by block in float64, then ``eigh``):
  the same singular values and vectors, in float64 where scikit-learn works in the rows' float32.

Both are subclasses of the scikit-learn estimators (predictions, ``coef_``/``intercept_``, pickling: unchanged);
tests compare them with the originals. :func:`use_lean` says when a job uses them (``lean_above`` in the
classifier's config section: rows x dims of the training set).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.linalg import eigh
from scipy.linalg.blas import dsyrk
from scipy.optimize import minimize
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.class_weight import compute_class_weight

__all__ = ["BLOCK_ROWS", "NewtonLinearSVC", "ScatterLDA", "standardise_in_place", "use_lean"]

BLOCK_ROWS = 4096  # rows per block: a float64 block of 4,096 dimensions is 134 MB


def use_lean(classifier: str, params: Mapping[str, Any], n_rows: int, dim: int) -> bool:
    """Whether a fit of ``n_rows`` x ``dim`` training values uses the lean implementations.

    ``params["lean_above"]``: the number of training values (rows x dims) above which they are used (0: always,
    ``None``: never). LDA only with its ``svd`` solver (lsqr/eigen with shrinkage keep scikit-learn's own fit)
    and more rows than dimensions (else the d x d scatter is bigger than the rows).
    """
    limit = params.get("lean_above")
    if limit is None:
        return False
    if classifier == "lda" and (params.get("shrinkage") is not None or params.get("solver", "auto") not in
                                ("auto", "svd") or n_rows <= dim):
        return False
    return n_rows * dim > int(limit)


def standardise_in_place(X: np.ndarray, block: int = BLOCK_ROWS) -> StandardScaler:
    """Fit a ``StandardScaler`` on float32 rows ``X`` block by block and standardise ``X`` in place."""
    if X.dtype != np.float32 or not X.flags.c_contiguous:
        raise TypeError("standardise_in_place needs C-contiguous float32 rows")
    scaler = StandardScaler()
    for a in range(0, len(X), block):
        scaler.partial_fit(X[a:a + block])
    for a in range(0, len(X), block):
        X[a:a + block] = scaler.transform(X[a:a + block])
    return scaler


def _rows32(X: Any) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"expected 2-D rows, got shape {X.shape}")
    if X.dtype != np.float32 or not X.flags.c_contiguous:
        X = np.ascontiguousarray(X, dtype=np.float32)  # a copy only for rows given in another type
    return X


class NewtonLinearSVC(LinearSVC):
    """``LinearSVC`` (primal L2-regularised squared hinge loss with a regularised intercept) fitted by SciPy's
    trust-region Newton-CG on float32 rows, block by block, without copying them.

    Only the binary case and ``penalty="l2"``, ``loss="squared_hinge"``, ``fit_intercept=True``. ``block_rows``
    sets the rows per block of the products (memory: one float32 block and a few vectors of the rows' length).
    """

    def __init__(self, *, C: float = 1.0, tol: float = 1e-4, max_iter: int = 1000, class_weight: Any = None,
                 intercept_scaling: float = 1.0, random_state: Any = None, block_rows: int = BLOCK_ROWS) -> None:
        super().__init__(C=C, tol=tol, max_iter=max_iter, class_weight=class_weight,
                         intercept_scaling=intercept_scaling, random_state=random_state)
        self.block_rows = block_rows

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NewtonLinearSVC:
        if sample_weight is not None:
            raise ValueError("NewtonLinearSVC does not take sample weights")
        X = _rows32(X)
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} rows but {len(y)} labels")
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"NewtonLinearSVC is binary; the labels have {len(self.classes_)} classes")
        self.n_features_in_ = X.shape[1]
        sign = np.where(y == self.classes_[1], 1.0, -1.0)
        weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        cost = float(self.C) * np.where(sign > 0, weights[1], weights[0])
        w, n_iter, excess, message = _newton_l2svm(X, sign, cost, float(self.intercept_scaling), float(self.tol),
                                      int(self.max_iter), int(self.block_rows))
        if excess > 1.0:
            warnings.warn(f"NewtonLinearSVC stopped after {n_iter} iterations (max_iter {self.max_iter}) with the "
                          f"gradient at {excess:.3g} x liblinear's stopping tolerance: {message}",
                          ConvergenceWarning, stacklevel=2)
        d = X.shape[1]
        self.coef_ = w[:d].reshape(1, -1)
        self.intercept_ = np.array([self.intercept_scaling * w[d]])
        self.n_iter_ = n_iter
        return self


def _newton_l2svm(X: np.ndarray, sign: np.ndarray, cost: np.ndarray, bias: float, tol: float, max_iter: int,
                  block: int) -> tuple[np.ndarray, int, float, str]:
    """Minimise 0.5 |[w, b]|^2 + sum_i cost_i max(0, 1 - sign_i (x_i w + bias b))^2 over ``[w, b]``.

    Returns ``[w, b]``, the iterations, the final gradient norm / liblinear's tolerance and SciPy's message.
    """
    n, d = X.shape
    seen: list[tuple[np.ndarray, np.ndarray]] = []  # (point, its active rows) of the last two points evaluated

    def margins(v: np.ndarray) -> np.ndarray:  # X v[:d] + bias v[d], float32 products, float64 out
        v32 = v[:d].astype(np.float32)
        out = np.empty(n)
        for a in range(0, n, block):
            out[a:a + block] = X[a:a + block] @ v32
        return out + bias * v[d]

    def transposed(r: np.ndarray, v: np.ndarray) -> np.ndarray:  # [v_w + X^T r, v_b + bias sum r], float32 products
        r32 = r.astype(np.float32)
        out = v.astype(np.float64, copy=True)
        for a in range(0, n, block):
            out[:d] += X[a:a + block].T @ r32[a:a + block]
        out[d] += bias * r.sum()
        return out

    def fun(w: np.ndarray) -> tuple[float, np.ndarray]:  # objective and gradient, in float64 (one pass)
        grad = w.copy()
        loss = 0.0
        active = np.empty(n, bool)
        step = max(1, min(block, 1024))  # float64 copies of 1,024 rows at a time
        for a in range(0, n, step):
            rows = X[a:a + step].astype(np.float64)
            slack = 1.0 - sign[a:a + step] * (rows @ w[:d] + bias * w[d])
            act = slack > 0.0
            active[a:a + step] = act
            r = np.where(act, -2.0 * cost[a:a + step] * sign[a:a + step] * slack, 0.0)
            loss += float(np.sum(cost[a:a + step][act] * slack[act] ** 2))
            grad[:d] += rows.T @ r
            grad[d] += bias * r.sum()
        seen[:] = [*seen[-1:], (w.copy(), active)]
        return 0.5 * float(w @ w) + loss, grad

    def hessp(w: np.ndarray, v: np.ndarray) -> np.ndarray:  # the generalised Hessian: the active rows at w
        # trust-ncg evaluates a trial point before it asks for products at the current one (a rejected step)
        active = next((act for point, act in reversed(seen) if np.array_equal(point, w)), None)
        if active is None:
            fun(w)
            active = seen[-1][1]
        return transposed(np.where(active, 2.0 * cost * margins(v), 0.0), v)

    w0 = np.zeros(d + 1)
    g0 = float(np.linalg.norm(fun(w0)[1]))
    n_pos = int((sign > 0).sum())
    # liblinear's primal stopping rule: |grad| <= tol * min(#pos, #neg) / n * |grad(0)|
    gtol = tol * max(min(n_pos, n - n_pos), 1) / n * g0
    res = minimize(fun, w0, jac=True, hessp=hessp, method="trust-ncg", options={"gtol": gtol, "maxiter": max_iter})
    # trust-ncg may stop short of gtol where float32 products cannot resolve a smaller step ("bad approximation")
    return res.x, int(res.nit), float(np.linalg.norm(res.jac)) / gtol if gtol > 0 else 0.0, str(res.message)


class ScatterLDA(LinearDiscriminantAnalysis):
    """``LinearDiscriminantAnalysis`` whose ``svd`` solver decomposes the d x d within-class scatter (float64,
    accumulated block by block) instead of the n x d centred rows: the same model without copies of the rows.

    For more rows than dimensions (the case it is meant for); ``store_covariance`` keeps scikit-learn's own solver.
    """

    def __init__(self, *, priors: Any = None, n_components: Any = None, store_covariance: bool = False,
                 tol: float = 1e-4, block_rows: int = BLOCK_ROWS) -> None:
        super().__init__(solver="svd", priors=priors, n_components=n_components,
                         store_covariance=store_covariance, tol=tol)
        self.block_rows = block_rows

    def _solve_svd(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.store_covariance or not isinstance(X, np.ndarray):
            return super()._solve_svd(X, y)
        n, d = X.shape
        classes = self.classes_
        which = np.searchsorted(classes, y)
        block = int(self.block_rows)
        sums = np.zeros((len(classes), d))
        for a in range(0, n, block):
            for k in range(len(classes)):
                sums[k] += X[a:a + block][which[a:a + block] == k].sum(axis=0, dtype=np.float64)
        counts = np.bincount(which, minlength=len(classes)).astype(np.float64)
        means = sums / counts[:, None]
        scatter = np.zeros((d, d), order="F")  # upper triangle filled by dsyrk (symmetric rank-k updates)
        for a in range(0, n, block):
            centred = X[a:a + block].astype(np.float64) - means[which[a:a + block]]
            scatter = dsyrk(1.0, centred, beta=1.0, c=scatter, trans=1, lower=0, overwrite_c=1)
            del centred
        std = np.sqrt(np.clip(np.diag(scatter), 0.0, None) / n)  # the std of the centred rows (ddof 0)
        std[std == 0] = 1.0
        scatter /= n
        scatter /= std[:, None]
        scatter /= std[None, :]  # = X^T X of scikit-learn's sqrt(1/n) * (Xc / std)
        evals, vecs = eigh(scatter, lower=False, overwrite_a=True, check_finite=False, driver="evd")
        del scatter
        order = np.argsort(evals)[::-1]
        S = np.sqrt(np.clip(evals[order], 0.0, None))  # singular values of the scaled centred rows
        rank = int(np.sum(S > self.tol))
        scalings = (vecs[:, order[:rank]] / std[:, None]) / S[:rank]
        priors = np.asarray(self.priors_, dtype=np.float64)
        self.means_ = means.astype(X.dtype)
        self.xbar_ = (priors @ means).astype(X.dtype)
        fac = 1.0 if len(classes) == 1 else 1.0 / (len(classes) - 1)
        centres = ((np.sqrt(n * priors * fac)) * (means - priors @ means).T).T @ scalings
        _, S2, Vt = np.linalg.svd(centres, full_matrices=False)
        self.explained_variance_ratio_ = (S2 ** 2 / np.sum(S2 ** 2))[:self._max_components] if (
            self._max_components) else np.empty((0,))
        rank2 = int(np.sum(S2 > self.tol * S2[0]))
        self.scalings_ = scalings @ Vt.T[:, :rank2]
        coef = (means - priors @ means) @ self.scalings_
        self.intercept_ = -0.5 * np.sum(coef ** 2, axis=1) + np.log(priors)
        self.coef_ = coef @ self.scalings_.T
        self.intercept_ -= (priors @ means) @ self.coef_.T
        return None
