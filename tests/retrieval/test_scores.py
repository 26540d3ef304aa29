"""The shared-row score form ranks exactly as the full matrix it stands for (random cases)."""

from __future__ import annotations

import numpy as np
import pytest
from tests_support import proposed

from shopfusion.data.interactions import Histories
from shopfusion.retrieval.scores import DenseScores, SharedScores


def _requests(rng: np.random.Generator, n: int, n_items: int) -> Histories:
    """Empty histories, repeats, and histories covering most of the catalog."""
    lists = [list(rng.integers(0, n_items, rng.integers(0, 8))) for _ in range(n - 1)]
    lists.append(list(range(n_items - 2)))
    return Histories.from_lists(lists, n_items)


@pytest.mark.parametrize("seed", range(8))
def test_shared_scores_propose_and_look_up_as_the_dense_matrix(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n_items, n = int(rng.integers(3, 50)), int(rng.integers(1, 7))
    scores = np.round(rng.normal(size=n_items), 1).astype(np.float32)  # ties
    scores[rng.integers(0, n_items, 2)] = -np.inf
    scores[rng.integers(0, n_items, 1)] = np.nan  # never proposed, like -inf
    requests = _requests(rng, n, n_items)
    compact = SharedScores(scores, SharedScores.order_of(scores), n)
    dense = DenseScores(np.broadcast_to(scores, (n, n_items)).copy())
    np.testing.assert_array_equal(compact.dense(), dense.dense())
    for k in (1, 2, n_items // 2, n_items + 3):
        assert proposed(compact.proposals(requests, k)) == proposed(dense.proposals(requests, k))
    rows, items = rng.integers(0, n, 50), rng.integers(0, n_items, 50)
    np.testing.assert_array_equal(compact.at(rows, items), dense.at(rows, items))
