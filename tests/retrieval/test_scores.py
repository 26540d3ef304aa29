"""The shared-row score form ranks exactly as the full matrix it stands for (random cases)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from tests_support import proposed

from shopfusion.data.interactions import Histories
from shopfusion.retrieval.scores import DenseScores, SharedScores, dense_proposals, union_of_keys
from shopfusion.retrieval.topk import top_k_indices


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


def _proposals_alone(
    scores: npt.NDArray[np.float32], requests: Histories, k: int
) -> set[tuple[int, int, float]]:
    """The definition, one matrix at a time: history masked, best ``k`` finite by the exact order."""
    masked = scores.astype(np.float32, copy=True)
    for row in range(len(requests)):
        masked[row, requests.row(row)] = -np.inf
    top = top_k_indices(masked, k)
    return {
        (row, int(item), float(rank + 1))
        for row in range(len(requests))
        for rank, item in enumerate(top[row])
        if np.isfinite(masked[row, item])
    }


@pytest.mark.parametrize("seed", range(8))
def test_stacked_dense_proposals_equal_each_matrix_alone(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n_items, n = int(rng.integers(3, 40)), int(rng.integers(1, 6))
    requests = _requests(rng, n, n_items)
    matrices = []
    for _ in range(int(rng.integers(1, 5))):
        scores = np.round(rng.normal(size=(n, n_items)), 1).astype(np.float32)  # ties
        scores[rng.random(scores.shape) < 0.1] = -np.inf
        scores[rng.random(scores.shape) < 0.05] = np.nan
        matrices.append(scores)
    before = [m.copy() for m in matrices]
    for k in (1, 3, n_items + 2):
        together = dense_proposals([DenseScores(m) for m in matrices], requests, k)
        assert len(together) == len(matrices)
        for scores, proposals in zip(matrices, together, strict=True):
            assert proposed(proposals) == _proposals_alone(scores, requests, k)
    for scores, copy in zip(matrices, before, strict=True):
        np.testing.assert_array_equal(scores, copy)  # the sources' matrices are not modified


@pytest.mark.parametrize("size", [1, 60, 5_000, 10**9])  # bitmap, and (10**9) sorting
def test_union_of_keys_is_the_sorted_distinct_keys(size: int) -> None:
    rng = np.random.default_rng(size)
    parts = [rng.integers(0, size, n, dtype=np.int64) for n in (0, 40, 40, 7)]
    got = union_of_keys(parts, size)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.unique(np.concatenate(parts)))
    assert len(union_of_keys([], size)) == 0
