from __future__ import annotations

import numpy as np
import pytest

from shopfusion.data.idmap import IdMap
from shopfusion.data.interactions import Histories, Interactions
from shopfusion.data.splits import leave_one_out, temporal_split
from shopfusion.errors import DataError
from shopfusion.evaluation.harness import evaluate_scores, tune_and_test
from shopfusion.retrieval import ItemToItemRetriever, PopularityRetriever


def test_leave_one_out_holds_out_last_and_second_last() -> None:
    h = Histories.from_lists([[1, 2, 3, 4], [5, 6], [7, 8, 9]], 10)
    split = leave_one_out(h)
    assert split.test.targets.items.tolist() == [4, 9]
    assert split.validation.targets.items.tolist() == [3, 8]
    assert split.test.requests.row(0).tolist() == [1, 2, 3]
    assert split.validation.requests.row(0).tolist() == [1, 2]
    # The validation model never sees a validation or test target; the short user trains in full.
    assert split.validation.train.row(0).tolist() == [1, 2]
    assert split.validation.train.row(1).tolist() == [5, 6]
    assert split.test.train.row(0).tolist() == [1, 2, 3]


def test_leave_one_out_needs_long_enough_users() -> None:
    with pytest.raises(DataError, match="at least 3"):
        leave_one_out(Histories.from_lists([[1], [2, 3]], 5))


def test_temporal_split_targets_are_after_the_cut_and_new() -> None:
    users = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    items = np.array([0, 1, 2, 3, 0, 4, 0, 5, 1, 2])
    times = np.array([1, 2, 8, 9, 1, 2, 8, 9, 1, 2], dtype=np.float64)
    data = Interactions(
        users, items, times, np.zeros(10, np.int8), IdMap("user", "abc"), IdMap("item", "012345")
    )
    split = temporal_split(data, validation_fraction=0.2, test_fraction=0.2)
    test = split.test
    for row in range(len(test.requests)):
        assert not set(test.targets.row(row)) & set(test.requests.row(row))
    assert 0 not in test.targets.items  # user 1 met item 0 before the cut: not a target


def test_harness_picks_on_validation_and_beats_popularity(clustered_histories: Histories) -> None:
    split = leave_one_out(clustered_histories)
    i2i = tune_and_test(ItemToItemRetriever(), split, progress=False)
    pop = tune_and_test(PopularityRetriever(), split, progress=False)
    assert len(i2i.validation) == len(ItemToItemRetriever.search_space)
    best = max(i2i.validation, key=lambda row: row["NDCG@10"])
    assert i2i.params["recency_half_life"] == best["params"]["recency_half_life"]
    assert i2i.test.metrics["NDCG@10"] > pop.test.metrics["NDCG@10"] + 0.1
    lo, hi = i2i.test.ci95["NDCG@10"]
    assert lo <= i2i.test.metrics["NDCG@10"] <= hi


def test_an_oracle_scores_perfectly_and_a_constant_scores_chance(clustered_histories: Histories) -> None:
    task = leave_one_out(clustered_histories).test
    n_items = clustered_histories.n_items

    def oracle(requests: Histories) -> np.ndarray:
        scores = np.zeros((len(requests), n_items), dtype=np.float32)
        rows = np.searchsorted(task.requests.users, requests.users)
        scores[np.arange(len(requests)), task.targets.items[rows]] = 1.0
        return scores

    perfect = evaluate_scores(oracle, task, np.random.default_rng(0), ks=(1,), retrieval_ks=())
    assert perfect.metrics["NDCG@1"] == pytest.approx(1.0)
    flat = evaluate_scores(
        lambda r: np.zeros((len(r), n_items), np.float32),
        task,
        np.random.default_rng(0),
        ks=(1,),
        retrieval_ks=(),
    )
    assert flat.metrics["HR@1"] < 0.35
