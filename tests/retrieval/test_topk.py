"""Top-k selection: one exact order (score descending, index ascending) on either backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest

from shopfusion.retrieval.topk import top_k_indices


def reference(scores: np.ndarray, k: int) -> np.ndarray:
    """The rule spelled out: sort every row by (-score, index), NaN as -inf, keep k."""
    values = np.where(np.isnan(scores), -np.inf, scores)
    columns = np.arange(scores.shape[1])
    rows = [np.lexsort((columns, -row))[:k] for row in values]
    return np.array(rows, dtype=np.int64).reshape(len(scores), min(k, scores.shape[1]))


@pytest.fixture(params=["numpy", "torch"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "torch":
        torch = pytest.importorskip("torch")
        monkeypatch.setitem(sys.modules, "torch", torch)
    else:
        monkeypatch.delitem(sys.modules, "torch", raising=False)
    yield request.param


def matrices(seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    yield rng.standard_normal((7, 50)).astype(np.float32)
    # Sparse scores: most items tie at zero, as co-occurrence sources produce.
    sparse = np.zeros((9, 60), dtype=np.float32)
    sparse[rng.integers(0, 9, 40), rng.integers(0, 60, 40)] = rng.random(40).astype(np.float32)
    yield sparse
    # Few distinct values, history masked to -inf, a NaN: ties everywhere and non-finite entries.
    coarse = rng.integers(0, 3, (6, 40)).astype(np.float32)
    coarse[rng.random((6, 40)) < 0.3] = -np.inf
    coarse[2, 5] = np.nan
    yield coarse


@pytest.mark.parametrize("k", [1, 3, 10, 40, 100])
def test_top_k_follows_score_then_index_on_either_backend(backend: str, k: int) -> None:
    for scores in matrices(seed=k):
        before = scores.copy()
        got = top_k_indices(scores, k)
        np.testing.assert_array_equal(got, reference(scores, k))
        np.testing.assert_array_equal(scores, before)  # input left alone


def test_a_row_scores_the_same_alone_and_in_a_batch(backend: str) -> None:
    scores = next(matrices(seed=1))[:, :20].round(1)  # rounded: many ties
    batch = top_k_indices(scores, 5)
    for row in range(len(scores)):
        np.testing.assert_array_equal(top_k_indices(scores[row : row + 1], 5)[0], batch[row])


def test_empty_requests_and_zero_k() -> None:
    assert top_k_indices(np.zeros((0, 5), np.float32), 3).shape == (0, 3)
    assert top_k_indices(np.zeros((2, 5), np.float32), 0).shape == (2, 0)


def test_a_read_only_array_is_accepted(backend: str) -> None:
    scores = np.tile(np.arange(6, dtype=np.float32), (3, 1))
    scores.setflags(write=False)  # as a memory-mapped artifact's arrays are
    np.testing.assert_array_equal(top_k_indices(scores, 2), [[5, 4]] * 3)
