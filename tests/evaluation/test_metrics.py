from __future__ import annotations

import numpy as np
import pytest

from shopfusion.data.interactions import Histories
from shopfusion.evaluation import metrics as m
from shopfusion.evaluation.ranking import rank_requests, top_k_random_ties


def single_targets(items: list[int], n_items: int = 10) -> Histories:
    return Histories.from_lists([[i] for i in items], n_items)


def test_known_answers_for_single_targets() -> None:
    top = np.array([[3, 1, 2], [0, 4, 5], [7, 8, 9]])
    hits = m.hit_matrix(top, single_targets([3, 4, 1]))
    got = m.ranking_metrics(hits, np.array([1, 1, 1]), k=2)
    np.testing.assert_allclose(got["HR@2"], [1, 1, 0])
    np.testing.assert_allclose(got["NDCG@2"], [1, 1 / np.log2(3), 0])
    np.testing.assert_allclose(got["MRR@2"], [1, 0.5, 0])
    np.testing.assert_allclose(got["MAP@2"], [1, 0.5, 0])


def test_several_targets() -> None:
    top = np.array([[1, 9, 2, 8]])
    targets = Histories.from_lists([[2, 1, 5]], 10)
    got = m.ranking_metrics(m.hit_matrix(top, targets), targets.lengths(), k=4)
    assert got["Recall@4"][0] == pytest.approx(2 / 3)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert got["NDCG@4"][0] == pytest.approx((1 + 1 / np.log2(4)) / idcg)
    assert got["MAP@4"][0] == pytest.approx((1 + 2 / 3) / 3)


def test_ties_are_broken_at_random_not_in_the_targets_favour() -> None:
    # Every item scores the same: a fair tie-break puts the target in the top 10 of 100 items 10% of the time.
    rng = np.random.default_rng(0)
    scores = np.zeros((4000, 100), dtype=np.float32)
    top = top_k_random_ties(scores, 10, rng)
    hits = m.hit_matrix(top, Histories.from_lists([[0]] * 4000, 100))
    assert hits.any(axis=1).mean() == pytest.approx(0.10, abs=0.02)
    # Nor does the lowest or highest index win.
    assert (top[:, 0] == 99).mean() == pytest.approx(0.01, abs=0.01)


def test_strict_order_is_kept_and_history_is_excluded() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1, 0.5]], dtype=np.float32)
    requests = Histories.from_lists([[0]], 5)
    top = rank_requests(scores, requests, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(top, [[1, 2, 4]])


def test_fewer_ranked_items_than_k_are_padded() -> None:
    scores = np.array([[1.0, -np.inf, 0.5]], dtype=np.float32)
    top = top_k_random_ties(scores, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(top, [[0, 2, -1, -1, -1]])


def test_beyond_accuracy_metrics() -> None:
    top = np.array([[0, 1], [0, 2]])
    assert m.coverage(top, 4) == pytest.approx(0.75)
    popularity = np.array([8.0, 2.0, 1.0, 0.0])
    np.testing.assert_allclose(m.novelty(top, popularity, 8), [(0 + 2) / 2, (0 + 3) / 2])
    import scipy.sparse as sp

    vectors = sp.csr_matrix(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    np.testing.assert_allclose(m.intra_list_diversity(top, vectors), [0.0, 1.0])


def test_bootstrap_interval_brackets_the_mean() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(5000)
    lo, hi = m.bootstrap_ci(values, rng, n_resamples=300)
    assert lo < values.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * values.std() / np.sqrt(5000), rel=0.25)
