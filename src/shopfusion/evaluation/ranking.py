"""Top-k lists for evaluation: full ranking over every item, history excluded, random tie-breaking.

A target tied with other items lands at a uniformly random place among them, so
neither an item's index nor its being the target decides a tie.
"""

from __future__ import annotations

import numpy as np

from shopfusion.data.interactions import FloatArray, Histories, IntArray
from shopfusion.retrieval.scores import mask_history


def top_k_random_ties(scores: FloatArray, k: int, rng: np.random.Generator) -> IntArray:
    """Indices of the ``k`` best items per row, best first; ties in random order. ``-1`` where the
    row has fewer than ``k`` finite scores."""
    n, n_items = scores.shape
    kk = min(k, n_items)
    out = np.full((n, k), -1, dtype=np.int64)
    if kk == 0 or n == 0:
        return out
    # Random secondary key: sorting by (score desc, key) orders tied items at random.
    keys = rng.random((n, n_items), dtype=np.float32)
    kth = -np.partition(-scores, kk - 1, axis=1)[:, kk - 1 : kk]
    for row in range(n):
        s = scores[row]
        above = np.flatnonzero(s > kth[row])
        tied = np.flatnonzero(s == kth[row])
        if len(above) < kk and len(tied):
            need = kk - len(above)
            if need < len(tied):
                tied = tied[np.argpartition(keys[row, tied], need - 1)[:need]]
        else:
            tied = tied[:0]
        chosen = np.concatenate([above, tied])
        order = np.lexsort((keys[row, chosen], -s[chosen]))
        chosen = chosen[order]
        chosen = chosen[np.isfinite(s[chosen])]
        out[row, : len(chosen)] = chosen
    return out


def rank_requests(scores: FloatArray, requests: Histories, k: int, rng: np.random.Generator) -> IntArray:
    """Top-``k`` per request after removing the request's history from the ranking."""
    masked = np.array(scores, dtype=np.float32, copy=True)
    mask_history(masked, requests)
    return top_k_random_ties(masked, k, rng)
