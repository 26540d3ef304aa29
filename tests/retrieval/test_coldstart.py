"""Cold start: items nobody bought get CF factors from their text and reach the right shoppers."""

from __future__ import annotations

import numpy as np
import pytest
from content_support import clustered_catalog

from shopfusion.data.interactions import Histories
from shopfusion.encoders.cache import cached_encode
from shopfusion.encoders.text import item_texts, text_encoder
from shopfusion.errors import DataError, NotFittedError
from shopfusion.retrieval import ALSRetriever, TrainData
from shopfusion.retrieval.coldstart import ContentToCFProjector, items_with_data


def test_ridge_recovers_a_linear_map_in_primal_and_dual_form() -> None:
    rng = np.random.default_rng(0)
    true_map = rng.normal(size=(6, 3))
    for n_items in (40, 4):  # more items than dimensions, then fewer
        content = rng.normal(size=(n_items, 6))
        factors = content @ true_map + 0.5
        has_data = np.ones(n_items, dtype=bool)
        projector = ContentToCFProjector(alpha=1e-6).fit(content, factors, has_data)
        predicted = projector.transform(content)
        assert predicted.dtype == np.float32
        np.testing.assert_allclose(predicted, factors, atol=1e-3)


def test_fill_replaces_only_items_without_data() -> None:
    rng = np.random.default_rng(1)
    content = rng.normal(size=(10, 4))
    factors = rng.normal(size=(10, 2)).astype(np.float32)
    has_data = np.arange(10) < 7
    projector = ContentToCFProjector().fit(content, factors, has_data)
    filled = projector.fill(content, factors, has_data)
    np.testing.assert_array_equal(filled[:7], factors[:7])
    np.testing.assert_allclose(filled[7:], projector.transform(content[7:]), rtol=1e-6)


def test_errors_say_what_is_wrong() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        ContentToCFProjector().transform(np.zeros((1, 3)))
    with pytest.raises(DataError, match="agree"):
        ContentToCFProjector().fit(np.zeros((3, 2)), np.zeros((4, 2)), np.ones(3, dtype=bool))
    with pytest.raises(DataError, match="at least 2"):
        ContentToCFProjector().fit(np.zeros((3, 2)), np.zeros((3, 2)), np.array([True, False, False]))


def test_new_items_are_recommended_to_their_clusters_buyers(
    clustered_histories: Histories, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("SHOPFUSION_CACHE", str(tmp_path_factory.getbasetemp() / "coldstart-embeddings"))
    # Items 0-4 (lipsticks) and 5-9 (TVs) are bought in clusters; 10 (a lipstick) and 11 (a TV) never.
    als = ALSRetriever(factors=2, iterations=10, alpha=10.0, regularization=0.1)
    als.fit(TrainData(clustered_histories))
    has_data = items_with_data(clustered_histories)
    assert has_data.tolist() == [True] * 10 + [False] * 2
    content = cached_encode(text_encoder("use-multilingual"), item_texts(clustered_catalog()))

    shoppers = Histories.from_lists([[1, 2], [6, 7]], n_items=12)
    before = als.score(shoppers)
    als.item_factors_ = (
        ContentToCFProjector(alpha=0.1)
        .fit(content, als.item_factors_, has_data)
        .fill(content, als.item_factors_, has_data)
    )
    after = als.score(shoppers)
    np.testing.assert_allclose(after[:, :10], before[:, :10], rtol=1e-5, atol=1e-6)
    # Before: no factors, no preference. After: each new item scores like its cluster's items.
    assert before[0, 10] == before[0, 11] == before[1, 10] == before[1, 11] == 0
    assert after[0, 10] > 0.5 * after[0, :5].max() and after[0, 11] < after[0, :5].min() / 2
    assert after[1, 11] > 0.5 * after[1, 5:10].max() and after[1, 10] < after[1, 5:10].min() / 2
    got = als.retrieve(shoppers, k=4)
    assert set(got.ids[0]) == {0, 3, 4, 10} and set(got.ids[1]) == {5, 8, 9, 11}
