"""Ranking metrics computed from top-k lists and (possibly several) targets per row.

All functions return one value per row, so the caller can average, bootstrap or slice.
Conventions (the common ones, as in RecBole): binary relevance; ``Recall@k`` divides by
the number of targets; ``NDCG@k`` and ``MAP@k`` normalise by ``min(#targets, k)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shopfusion.data.interactions import Histories, IntArray

BoolMatrix = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]

RANKING_METRICS = ("HR", "Recall", "NDCG", "MRR", "MAP")


def hit_matrix(top: IntArray, targets: Histories) -> BoolMatrix:
    """``hits[i, j]`` is whether the ``j``-th item of row ``i`` is one of row ``i``'s targets."""
    n, k = top.shape
    if np.all(targets.lengths() == 1):
        single: BoolMatrix = top == targets.items[:, None]
        return single
    target_matrix = sp.csr_matrix(
        (np.ones(len(targets.items), dtype=np.int8), targets.items, targets.indptr),
        shape=(n, targets.n_items),
    )
    rows = np.repeat(np.arange(n), k)
    cols = np.where(top.ravel() >= 0, top.ravel(), 0)
    hits = np.asarray(target_matrix[rows, cols]).ravel().astype(bool) & (top.ravel() >= 0)
    return hits.reshape(n, k)


def ranking_metrics(hits: BoolMatrix, n_targets: IntArray, k: int) -> dict[str, Floats]:
    """Per-row HR, Recall, NDCG, MRR and MAP at ``k`` (keys like ``"NDCG@10"``)."""
    h = hits[:, :k].astype(np.float64)
    positions = np.arange(1, h.shape[1] + 1, dtype=np.float64)
    n_rel = np.maximum(n_targets, 1).astype(np.float64)
    ideal_len = np.minimum(n_rel, k)
    discounts = 1.0 / np.log2(positions + 1)
    idcg = np.cumsum(discounts)[ideal_len.astype(np.int64) - 1]
    first = np.where(h.any(axis=1), h.argmax(axis=1) + 1, 0)
    precision_at = np.cumsum(h, axis=1) / positions
    return {
        f"HR@{k}": h.any(axis=1).astype(np.float64),
        f"Recall@{k}": h.sum(axis=1) / n_rel,
        f"NDCG@{k}": (h * discounts).sum(axis=1) / idcg,
        f"MRR@{k}": np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0),
        f"MAP@{k}": (precision_at * h).sum(axis=1) / ideal_len,
    }


def coverage(top: IntArray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    shown = np.unique(top[top >= 0])
    return float(len(shown)) / max(n_items, 1)


def novelty(top: IntArray, item_popularity: Floats, n_users: int) -> Floats:
    """Mean self-information ``-log2(p(i))`` of each list's items; ``p(i)`` = share of training users."""
    p = np.maximum(item_popularity, 1.0) / max(n_users, 1)
    info = -np.log2(np.minimum(p, 1.0))
    valid = top >= 0
    values = np.where(valid, info[np.where(valid, top, 0)], 0.0)
    mean_info: Floats = values.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    return mean_info


def intra_list_diversity(top: IntArray, item_vectors: sp.csr_matrix) -> Floats:
    """Mean pairwise ``1 - cosine`` between the items of each list (``item_vectors``: rows L2-normalised)."""
    out = np.zeros(len(top))
    for row, items in enumerate(top):
        items = items[items >= 0]
        if len(items) < 2:
            continue
        vectors = item_vectors[items]
        gram = np.asarray((vectors @ vectors.T).todense())
        m = len(items)
        out[row] = 1.0 - (gram.sum() - np.trace(gram)) / (m * (m - 1))
    return out


def bootstrap_ci(
    values: Floats, rng: np.random.Generator, n_resamples: int = 1000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean over rows."""
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (float(lo), float(hi))
