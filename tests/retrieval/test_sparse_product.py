"""The neighbourhood kernel gives scipy's float32 product bit for bit (random cases)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from shopfusion.data.interactions import Histories, RowWeights
from shopfusion.retrieval.sparse_product import gathered_rows, weighted_rows


def _matrix(rng: np.random.Generator, n: int, density: float, dtype: type = np.float32) -> sp.csr_matrix:
    dense = rng.random((n, n)) < density
    # Values of many magnitudes, so that the order of addition shows in the last bits.
    values = (rng.random((n, n)) * 10.0 ** rng.integers(-3, 3, (n, n))) * dense
    return sp.csr_matrix(values.astype(dtype))


@pytest.mark.parametrize("seed", range(10))
def test_weighted_rows_equal_the_scipy_product(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, n = int(rng.integers(2, 60)), int(rng.integers(1, 9))
    matrix = _matrix(rng, n_items, float(rng.choice([0.05, 0.3, 0.9])))
    lists = [list(rng.integers(0, n_items, rng.integers(0, 30))) for _ in range(n)]
    requests = Histories.from_lists(lists, n_items)
    for half_life in (None, 1.0, 3.0):
        weights = requests.weights(recency_half_life=half_life)
        expected = (requests.to_csr(recency_half_life=half_life) @ matrix).toarray()
        got = weighted_rows(weights, matrix)
        assert got.dtype == np.float32 and got.shape == (n, n_items)
        np.testing.assert_array_equal(got, expected)
        assert not np.signbit(got).any()
        # Each row's entries listed last to first are added in that order, as scipy adds them.
        rows = np.repeat(np.arange(n), np.diff(weights.indptr))
        reverse = weights.indptr[rows] + weights.indptr[rows + 1] - 1 - np.arange(len(rows))
        flipped = RowWeights(weights.indptr, weights.indices[reverse], weights.data[reverse])
        flipped_csr = sp.csr_matrix((flipped.data, flipped.indices, flipped.indptr), shape=(n, n_items))
        np.testing.assert_array_equal(weighted_rows(flipped, matrix), (flipped_csr @ matrix).toarray())


def test_other_value_types_go_through_scipy() -> None:
    rng = np.random.default_rng(7)
    matrix = _matrix(rng, 20, 0.3, np.float64)
    requests = Histories.from_lists([[1, 2, 3], [], [19]], 20)
    got = weighted_rows(requests.weights(recency_half_life=2.0), matrix)
    expected = np.asarray((requests.to_csr(recency_half_life=2.0) @ matrix).toarray(), dtype=np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_gathered_rows_are_the_rows_themselves() -> None:
    rng = np.random.default_rng(3)
    matrix = _matrix(rng, 30, 0.2)
    items = np.array([4, -1, 29, 4, 0], dtype=np.int64)
    got = gathered_rows(items, matrix)
    expected = matrix[np.maximum(items, 0)].toarray()
    expected[items < 0] = 0.0
    np.testing.assert_array_equal(got, expected)


def test_weights_list_each_rows_distinct_items_with_their_weights() -> None:
    requests = Histories.from_lists([[3, 1, 3, 2], [], [0]], 5)
    expected = {  # (recency_half_life, binary): each row's (items, weights)
        (None, True): ([1, 2, 3], [1.0, 1.0, 1.0]),
        (1.0, True): ([1, 2, 3], [0.25, 1.0, 0.5]),  # a repeat keeps its latest weight
        (None, False): ([1, 2, 3], [1.0, 1.0, 2.0]),  # repeats add up
    }
    for (half_life, binary), (items, values) in expected.items():
        weights = requests.weights(recency_half_life=half_life, binary=binary)
        np.testing.assert_array_equal(weights.indptr, [0, 3, 3, 4])
        np.testing.assert_array_equal(weights.indices, [*items, 0])
        np.testing.assert_array_equal(weights.data, np.array([*values, 1.0], dtype=np.float32))
        assert weights.data.dtype == np.float32
    assert requests.weights(recency_half_life=1.0) is requests.weights(recency_half_life=1.0)  # shared
