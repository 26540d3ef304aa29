"""Top-k selection: one exact order (score descending, index ascending) on either backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest

from shopfusion.retrieval import topk
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


def wide_matrices(seed: int, k: int) -> Iterator[tuple[str, np.ndarray]]:
    """Rows wide enough for the sampled threshold (``_samples_well``), in the shapes that test it."""
    rng = np.random.default_rng(seed)
    n = 3000
    yield "dense", rng.standard_normal((6, n)).astype(np.float32)
    # A co-occurrence source: fewer nonzero scores than k in some rows, so the row is completed
    # with the items tied at zero; -0.0 ties with 0.0.
    sparse = np.zeros((6, n), dtype=np.float32)
    for row, nonzero in enumerate([0, 1, k // 2, k, 3 * k, 40 * k]):
        sparse[row, rng.choice(n, min(nonzero, n), replace=False)] = rng.random(min(nonzero, n))
    sparse[2, rng.choice(n, 50, replace=False)] = -0.0
    yield "sparse", sparse
    coarse = rng.integers(-2, 3, (6, n)).astype(np.float32)
    coarse[rng.random((6, n)) < 0.3] = -np.inf
    coarse[0, rng.choice(n, 40, replace=False)] = np.nan
    coarse[1, rng.choice(n, 40, replace=False)] = np.inf
    yield "coarse", coarse
    # Fewer finite scores than k: the threshold is -inf, where NaN ties with -inf.
    mostly_inf = np.full((4, n), -np.inf, dtype=np.float32)
    mostly_inf[:, 100 + rng.choice(n - 100, k // 2 + 1, replace=False)] = 1.0
    mostly_inf[:, :30:2] = np.nan  # among the first ties by index
    yield "mostly -inf", mostly_inf
    # Every good score on the sample's stride: its threshold is above the row's k-th best.
    on_sample = rng.random((3, n)).astype(np.float32) - 1
    on_sample[:, :: topk.SAMPLE_STRIDE] += 2
    yield "on-sample", on_sample


@pytest.mark.parametrize("k", [1, 7, 50, 200])
def test_wide_rows_follow_score_then_index_on_either_backend(backend: str, k: int) -> None:
    for name, scores in wide_matrices(seed=k, k=k):
        before = scores.copy()
        got = top_k_indices(scores, k)
        np.testing.assert_array_equal(got, reference(scores, k), err_msg=name)
        np.testing.assert_array_equal(scores, before)


def test_the_sample_settles_what_it_can_and_names_the_rest() -> None:
    k = 50
    assert topk._samples_well(3000, k)
    for name, scores in wide_matrices(seed=3, k=k):
        columns, unsettled = topk._sampled_top_k(np.ascontiguousarray(scores), k)
        settled = np.setdiff1d(np.arange(len(scores)), unsettled)
        np.testing.assert_array_equal(columns[settled], reference(scores[settled], k), err_msg=name)
        if name in ("dense", "sparse"):
            assert len(unsettled) == 0, name  # the sample's own work, not the full selection
        if name in ("mostly -inf", "on-sample"):
            assert len(unsettled) == len(scores), name


def test_narrow_rows_and_a_large_k_are_selected_in_full() -> None:
    assert not topk._samples_well(topk.MIN_SAMPLED_COLUMNS - 1, 1)
    assert not topk._samples_well(3000, 3000 // 4)
