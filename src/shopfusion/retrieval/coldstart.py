"""Cold start: collaborative factors for items nobody has interacted with yet, from their content.

A :class:`ContentToCFProjector` learns a ridge regression from content embeddings to CF item
factors (e.g. :attr:`ALSRetriever.item_factors_ <shopfusion.retrieval.als.ALSRetriever>`) on the
items that have interactions, then predicts factors for those that have none. A new lipstick so
lands next to the lipsticks in factor space and is recommended to their buyers::

    projector = ContentToCFProjector(alpha=1.0).fit(content, als.item_factors_, has_data)
    als.item_factors_ = projector.fill(content, als.item_factors_, has_data)
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import Histories
from shopfusion.errors import ConfigError, DataError, ModelFitError, NotFittedError

Matrix = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


class ContentToCFProjector:
    """``factors ≈ (content - μ_c) W + μ_f``, ``W = argmin ||X W - Y||² + alpha ||W||²`` (closed form).

    Solved in the primal (``d x d`` system) or the dual (``n x n``), whichever is smaller, so a
    few hundred items with 512-d embeddings cost a few milliseconds.
    """

    content_mean_: npt.NDArray[np.float64]
    factor_mean_: npt.NDArray[np.float64]
    weights_: npt.NDArray[np.float64]

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ConfigError(f"ContentToCFProjector: alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def fit(self, content: npt.ArrayLike, factors: npt.ArrayLike, has_data: npt.ArrayLike) -> Self:
        """Learn from the rows of ``content`` (``n_items x d``) and ``factors`` (``n_items x f``) where
        ``has_data`` (``n_items`` booleans) is true."""
        x, y, mask = _check(content, factors, has_data)
        if mask.sum() < 2:
            raise DataError("ContentToCFProjector needs at least 2 items with interactions to learn from")
        x, y = x[mask].astype(np.float64), y[mask].astype(np.float64)
        self.content_mean_ = x.mean(axis=0)
        self.factor_mean_ = y.mean(axis=0)
        xc, yc = x - self.content_mean_, y - self.factor_mean_
        n, d = xc.shape
        if d <= n:
            weights = np.linalg.solve(xc.T @ xc + self.alpha * np.eye(d), xc.T @ yc)
        else:
            weights = xc.T @ np.linalg.solve(xc @ xc.T + self.alpha * np.eye(n), yc)
        if not np.all(np.isfinite(weights)):
            raise ModelFitError("ContentToCFProjector: the ridge solution is not finite; raise alpha")
        self.weights_ = np.asarray(weights, dtype=np.float64)
        return self

    def transform(self, content: npt.ArrayLike) -> Matrix:
        """Predicted CF factors of each content row."""
        if not hasattr(self, "weights_"):
            raise NotFittedError(
                "ContentToCFProjector is not fitted yet: call fit(content, factors, has_data)"
            )
        x = np.asarray(content, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.content_mean_):
            raise DataError(
                f"ContentToCFProjector was fitted on {len(self.content_mean_)}-d content; got shape {x.shape}"
            )
        return ((x - self.content_mean_) @ self.weights_ + self.factor_mean_).astype(np.float32)

    def fill(self, content: npt.ArrayLike, factors: npt.ArrayLike, has_data: npt.ArrayLike) -> Matrix:
        """``factors`` with the rows of items without data replaced by their projection."""
        x, y, mask = _check(content, factors, has_data)
        out = y.astype(np.float32, copy=True)
        if (~mask).any():
            out[~mask] = self.transform(x[~mask])
        return out


def _check(
    content: npt.ArrayLike, factors: npt.ArrayLike, has_data: npt.ArrayLike
) -> tuple[Matrix, Matrix, Mask]:
    x = np.asarray(content, dtype=np.float32)
    y = np.asarray(factors, dtype=np.float32)
    mask = np.asarray(has_data, dtype=bool)
    if x.ndim != 2 or y.ndim != 2 or mask.ndim != 1 or not (len(x) == len(y) == len(mask)):
        raise DataError(
            "ContentToCFProjector: content (n_items, d), factors (n_items, f) and has_data (n_items,) "
            f"must agree; got {x.shape}, {y.shape}, {mask.shape}"
        )
    return x, y, mask


def items_with_data(histories: Histories) -> Mask:
    """``True`` for every item that occurs in ``histories`` (the ones CF factors were learned for)."""
    return np.bincount(histories.items, minlength=histories.n_items) > 0
