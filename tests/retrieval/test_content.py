"""The content source on a tiny bilingual catalog, and the vector index under it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from content_support import clustered_catalog

from shopfusion.data.interactions import Histories
from shopfusion.encoders import text as text_module
from shopfusion.errors import ConfigError, DataError
from shopfusion.retrieval import RETRIEVERS, TrainData
from shopfusion.retrieval.content import ContentRetriever
from shopfusion.retrieval.vector_index import VectorIndex, faiss_available

LIPSTICKS = {0, 1, 2, 3, 4, 10}
TVS = {5, 6, 7, 8, 9, 11}


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPFUSION_CACHE", str(tmp_path_factory.getbasetemp() / "content-embeddings"))


@pytest.fixture
def data(clustered_histories: Histories) -> TrainData:
    return TrainData(clustered_histories, clustered_catalog())


def test_is_registered_by_name() -> None:
    assert RETRIEVERS["content"] is ContentRetriever


@pytest.mark.parametrize(
    "params",
    [{}, {"scoring": "profile"}, {"scoring": "profile", "last_item_weight": 0.5}, {"last_item_weight": 1.0}],
)
def test_recommends_like_items_across_languages_including_never_bought_ones(
    data: TrainData, params: dict[str, object]
) -> None:
    model = ContentRetriever(**params).fit(data)  # type: ignore[arg-type]
    # A shopper of Chinese lipstick and a shopper of a Chinese TV listing.
    got = model.retrieve(Histories.from_lists([[1], [6]], n_items=12), k=5)
    assert set(got.ids[0]) <= LIPSTICKS and 10 in got.ids[0]
    assert set(got.ids[1]) <= TVS and 11 in got.ids[1]


def test_recency_weighting_follows_the_latest_taste(data: TrainData) -> None:
    three_lipsticks_then_a_tv = Histories.from_lists([[0, 2, 3, 7]], n_items=12)
    recent = ContentRetriever(recency_half_life=0.5).fit(data).retrieve(three_lipsticks_then_a_tv, k=1)
    overall = ContentRetriever(recency_half_life=None).fit(data).retrieve(three_lipsticks_then_a_tv, k=1)
    assert recent.ids[0][0] in TVS and overall.ids[0][0] in LIPSTICKS


def test_items_without_text_score_zero_never_nan(clustered_histories: Histories) -> None:
    catalog = clustered_catalog()
    catalog.loc[[4, 9], ["title", "brand", "category"]] = ["", None, ""]
    for scoring in ("profile", "neighbours"):
        model = ContentRetriever(scoring=scoring).fit(TrainData(clustered_histories, catalog))
        scores = model.score(Histories.from_lists([[0], [4], []], n_items=12))
        assert np.all(np.isfinite(scores))
        assert np.all(scores[:, [4, 9]] == 0) and np.all(scores[1:] == 0)


def test_similar_items_leave_the_item_out(data: TrainData) -> None:
    model = ContentRetriever().fit(data)
    ids, scores = model.similar_items([0, 6], k=3)
    assert ids.shape == scores.shape == (2, 3)
    assert 0 not in ids[0] and set(ids[0]) <= LIPSTICKS
    assert 6 not in ids[1] and set(ids[1]) <= TVS
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_save_load_keeps_the_neighbour_graph(data: TrainData, tmp_path: Path) -> None:
    model = ContentRetriever(power=2.0, neighbours=4).fit(data)
    loaded = ContentRetriever.load(model.save(tmp_path / "content"))
    assert loaded.similarity_ is not None and loaded.similarity_.nnz == model.similarity_.nnz  # type: ignore[union-attr]
    requests = Histories.from_lists([[0, 5], [3]], n_items=12)
    np.testing.assert_allclose(loaded.score(requests), model.score(requests), rtol=1e-6)
    np.testing.assert_allclose(loaded.encode_text(["口红"]), model.encode_text(["口红"]))


def test_needs_a_catalog_that_matches_the_items(clustered_histories: Histories) -> None:
    with pytest.raises(DataError, match="catalog"):
        ContentRetriever().fit(TrainData(clustered_histories))
    with pytest.raises(DataError, match="row i"):
        ContentRetriever().fit(TrainData(clustered_histories, clustered_catalog().iloc[:5]))


def test_minilm_on_chinese_text_is_warned_about(
    data: TrainData, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The warning is what is tested, not MiniLM: a stand-in spares loading the model.
    rng = np.random.default_rng(0)
    monkeypatch.setattr(
        text_module.MiniLMEncoder,
        "encode",
        lambda self, texts, batch_size=64: text_module.normalise_rows(rng.normal(size=(len(texts), 384))),
    )
    with caplog.at_level(logging.WARNING, logger="shopfusion.retrieval.content"):
        ContentRetriever(encoder="minilm", cache=False).fit(data)
    assert "use-multilingual" in caplog.text


def test_refit_reuses_cached_embeddings(
    data: TrainData, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SHOPFUSION_CACHE", str(tmp_path))
    first = ContentRetriever().fit(data)
    calls: list[int] = []
    real = text_module.MultilingualEncoder.encode

    def counting(self: text_module.MultilingualEncoder, texts: list[str], batch_size: int = 64) -> np.ndarray:
        calls.append(len(texts))
        return real(self, texts, batch_size)

    monkeypatch.setattr(text_module.MultilingualEncoder, "encode", counting)
    second = ContentRetriever().fit(data)
    assert calls == []
    np.testing.assert_array_equal(second.item_embeddings_, first.item_embeddings_)


# --------------------------------------------------------------------------- vector index


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_vector_index_finds_exact_inner_product_neighbours(backend: str) -> None:
    if backend == "faiss" and not faiss_available():
        pytest.skip("faiss-cpu is not installed")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    queries = rng.normal(size=(4, 8)).astype(np.float32)
    index = VectorIndex(8, backend=backend)  # type: ignore[arg-type]
    index.add(vectors[:30])
    index.add(vectors[30:])
    ids, scores = index.search(queries, k=5)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, expected, axis=1), rtol=1e-5)


def test_vector_index_pads_when_asked_for_more_than_it_holds() -> None:
    index = VectorIndex(2, backend="auto")
    index.add(np.eye(2, dtype=np.float32))
    ids, scores = index.search(np.array([[1.0, 0.0]]), k=4)
    assert ids.tolist() == [[0, 1, -1, -1]]
    assert np.isneginf(scores[0, 2:]).all()


def test_vector_index_refuses_wrong_width_and_nan() -> None:
    index = VectorIndex(3)
    with pytest.raises(ConfigError, match="3-d"):
        index.add(np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="NaN"):
        index.add(np.full((1, 3), np.nan))
