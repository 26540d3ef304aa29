"""ALS serves a request by solving its user vector from the history: the fast solve must give
the vector of the normal equations it stands for."""

from __future__ import annotations

import numpy as np
import pytest

from shopfusion.data.interactions import Histories
from shopfusion.retrieval import ALSRetriever, TrainData


def _normal_equations(model: ALSRetriever, requests: Histories) -> np.ndarray:
    """``(YᵀY + λI + Yᵤᵀ(Cᵤ - I)Yᵤ) x = Yᵤᵀ cᵤ`` solved directly, one request at a time."""
    factors = model.item_factors_.astype(np.float64)
    gram = factors.T @ factors + model.regularization * np.eye(factors.shape[1])
    user_items = requests.to_csr(recency_half_life=model.recency_half_life)
    out = np.zeros((len(requests), factors.shape[1]))
    for row in range(len(requests)):
        start, end = user_items.indptr[row], user_items.indptr[row + 1]
        if start == end:
            continue
        y = factors[user_items.indices[start:end]]
        confidence = model.alpha * user_items.data[start:end]
        out[row] = np.linalg.solve(gram + (y.T * (confidence - 1.0)) @ y, y.T @ confidence)
    return out


@pytest.mark.parametrize(
    ("alpha", "half_life"),
    [(10.0, None), (1.0, None), (0.5, 1.0)],  # 0.5 with recency: confidences below 1 (D < 0)
)
def test_user_vectors_solve_the_normal_equations(alpha: float, half_life: float | None) -> None:
    rng = np.random.default_rng(3)
    n_items = 40
    train = Histories.from_lists(
        [list(rng.integers(0, n_items, rng.integers(2, 12))) for _ in range(120)], n_items
    )
    model = ALSRetriever(factors=8, iterations=3, alpha=alpha, recency_half_life=half_life).fit(
        TrainData(train)
    )
    # Empty, one item, repeated items and a long history, in one batch.
    requests = Histories.from_lists(
        [[], [5], [3, 3, 7], list(rng.integers(0, n_items, 30)), [1, 2, 3, 4]], n_items
    )
    expected = _normal_equations(model, requests)
    got = model.user_factors(requests)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert not got[0].any()  # an empty history has no vector


def test_a_refit_forgets_the_cached_inverse() -> None:
    first = Histories.from_lists([[0, 1], [1, 2], [2, 3]] * 5, 4)
    second = Histories.from_lists([[3, 0], [0, 2], [1, 3]] * 5, 4)
    model = ALSRetriever(factors=2, iterations=2).fit(TrainData(first))
    model.user_factors(first.rows(np.arange(2)))
    model.fit(TrainData(second))
    requests = second.rows(np.arange(3))
    np.testing.assert_allclose(
        model.user_factors(requests), _normal_equations(model, requests), rtol=1e-4, atol=1e-5
    )


def test_scores_are_the_user_vectors_times_the_current_item_factors() -> None:
    rng = np.random.default_rng(4)
    train = Histories.from_lists([list(rng.integers(0, 30, rng.integers(2, 9))) for _ in range(80)], 30)
    model = ALSRetriever(factors=6, iterations=3).fit(TrainData(train))
    requests = train.rows(np.arange(5))
    users = model.user_factors(requests)
    np.testing.assert_allclose(model.score(requests), users @ model.item_factors_.T, rtol=1e-5, atol=1e-6)
    # Factors assigned from outside (cold-start filling) are the ones the next product uses.
    model.item_factors_ = model.item_factors_ * np.float32(2.0)
    expected = model.user_factors(requests) @ model.item_factors_.T
    np.testing.assert_allclose(model.score(requests), expected, rtol=1e-5, atol=1e-6)
