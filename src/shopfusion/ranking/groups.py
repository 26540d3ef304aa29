"""Helpers for candidate groups (one group = one request's candidates, contiguous rows)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import FloatArray, IntArray


def group_ids(group_ptr: IntArray) -> IntArray:
    return np.repeat(np.arange(len(group_ptr) - 1), np.diff(group_ptr))


def ndcg_at_k(scores: FloatArray, labels: npt.NDArray[np.bool_], group_ptr: IntArray, k: int = 10) -> float:
    """Mean NDCG@k of the single positive of each group (0 for a group without one);
    ties count against the positive (pessimistic), so a constant scorer learns nothing."""
    gains = ndcg_gains(scores, labels, group_ptr, k)
    return float(gains.mean()) if len(gains) else 0.0


def ndcg_gains(
    scores: FloatArray, labels: npt.NDArray[np.bool_], group_ptr: IntArray, k: int = 10
) -> FloatArray:
    """Each group's NDCG@k, as :func:`ndcg_at_k` averages them."""
    gid = group_ids(group_ptr)
    n_groups = len(group_ptr) - 1
    positive_score = np.full(n_groups, np.nan)
    positive_score[gid[labels]] = scores[labels]
    ahead = (scores >= positive_score[gid]) & ~labels
    rank = np.bincount(gid[ahead], minlength=n_groups) + 1
    gains: FloatArray = np.where(np.isfinite(positive_score) & (rank <= k), 1.0 / np.log2(rank + 1.0), 0.0)
    return gains


def subsample_groups(
    labels: npt.NDArray[np.bool_],
    group_ptr: IntArray,
    priority: FloatArray,
    max_negatives: int,
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray]:
    """Rows to keep for training: groups with a positive only; in each, the positive, the half of
    ``max_negatives`` with the best (lowest) ``priority`` and a random draw of the rest.
    Returns (kept row indices, new group_ptr)."""
    kept: list[IntArray] = []
    sizes: list[int] = []
    hard = max_negatives // 2
    for g in range(len(group_ptr) - 1):
        start, end = group_ptr[g], group_ptr[g + 1]
        lab = labels[start:end]
        if not lab.any():
            continue
        negatives = np.flatnonzero(~lab)
        if len(negatives) > max_negatives:
            order = np.argsort(priority[start:end][negatives], kind="stable")
            easy = rng.choice(order[hard:], size=max_negatives - hard, replace=False)
            negatives = negatives[np.concatenate([order[:hard], easy])]
        rows = np.sort(np.concatenate([np.flatnonzero(lab), negatives])) + start
        kept.append(rows)
        sizes.append(len(rows))
    ptr = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=ptr[1:])
    rows_kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return rows_kept.astype(np.int64), ptr
