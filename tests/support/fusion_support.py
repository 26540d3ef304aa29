"""Fusion training data with a known answer, shared by the fusion and compiled-ranker tests."""

from __future__ import annotations

import numpy as np

from shopfusion.data.schema import EventType
from shopfusion.ranking.fusion import FusionInput

SOURCES = ("content", "item2item", "noise")


def synthetic(n_groups: int = 300, size: int = 30, seed: int = 0) -> tuple[FusionInput, np.ndarray]:
    """Source "item2item" ranks the positive high, "content" weakly, "noise" not at all."""
    rng = np.random.default_rng(seed)
    m = n_groups * size
    labels = np.zeros(m, dtype=bool)
    labels[np.arange(n_groups) * size + rng.integers(0, size, n_groups)] = True
    informative = rng.normal(size=m) + 2.5 * labels
    weak = rng.normal(size=m) + 0.8 * labels
    noise = rng.normal(size=m)
    columns, names = [], []
    for source, score in zip(SOURCES, (weak, informative, noise), strict=True):
        rank = np.empty(m)
        for g in range(n_groups):
            block = slice(g * size, (g + 1) * size)
            rank[block] = np.argsort(np.argsort(-score[block])) + 1
        columns += [score, rank, score / 3]
        names += [f"{source}_score", f"{source}_rank", f"{source}_score_rel"]
    extra = {
        "n_proposers": np.full(m, 2.0),
        "best_rank": np.minimum(columns[1], columns[4]),
        "item_log_popularity": rng.random(m),
        "history_length": np.full(m, 5.0),
    }
    features = np.column_stack([*columns, *extra.values()]).astype(np.float32)
    ptr = np.arange(0, m + 1, size, dtype=np.int64)
    kinds = np.where(rng.random(n_groups) < 0.3, EventType.PURCHASE.code, EventType.CLICK.code).astype(
        np.int8
    )
    return FusionInput(features, (*names, *extra), SOURCES, ptr, kinds), labels
