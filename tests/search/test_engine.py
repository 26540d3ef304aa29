"""The search engine on the bilingual sample shop: multilingual retrieval, typos, filters and
facets, personalisation, explanations and the save/load round trip."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from tests_support import search_alone

from shopfusion.data.dataset import Dataset
from shopfusion.encoders.text import LazyModel
from shopfusion.errors import ArtifactError, ConfigError, NotFittedError
from shopfusion.ranking.fusion import FusionInput
from shopfusion.search.api import Searcher, SearchFilters, SearchRequest
from shopfusion.search.engine import (
    SIGNALS,
    SearchEngine,
    _column_medians,
    _target_rank,
    split_validation,
)
from shopfusion.search.index import QueryVectors, search_encoder
from shopfusion.search.titles import MATCH_FEATURES, TYPED_FEATURES, generative_likelihood
from shopfusion.search.training import TrainingQuery

TV = "Electronics > TV"


def _titles(shop: Dataset, items: np.ndarray) -> list[str]:
    return [str(shop.catalog.title[int(i)]) for i in items]


def test_chinese_query_finds_chinese_and_english_tvs_before_anything_else(
    engine: SearchEngine, sample_shop: Dataset
) -> None:
    n_tvs = int((sample_shop.catalog.category == TV).sum())
    result = engine.search("电视", k=n_tvs)
    categories = [sample_shop.catalog.category[int(i)] for i in result.items]
    assert categories == [TV] * n_tvs, "every TV must come before any other product"
    titles = " | ".join(_titles(sample_shop, result.items))
    for name in ("三星电视", "索尼电视", "华为电视"):
        assert name in titles
    assert any("TV" in t for t in _titles(sample_shop, result.items)), "English TV titles are found too"
    assert result.facets["category"][0].value == TV


def test_english_query_finds_chinese_listings_too(engine: SearchEngine, sample_shop: Dataset) -> None:
    n_tvs = int((sample_shop.catalog.category == TV).sum())
    result = engine.search("tv", k=n_tvs)
    titles = _titles(sample_shop, result.items)
    assert all(sample_shop.catalog.category[int(i)] == TV for i in result.items)
    assert any("电视" in t for t in titles) and any("TV" in t for t in titles)


def test_a_typo_is_corrected_and_still_finds_the_product(engine: SearchEngine, sample_shop: Dataset) -> None:
    result = engine.search("samsng phone", k=5)
    assert result.corrected_query == "samsung phone"
    assert "Samsung" in _titles(sample_shop, result.items[:1])[0]
    assert engine.search("samsung phone", k=3).corrected_query is None


def test_filters_hold_and_facets_count_the_matches(engine: SearchEngine, sample_shop: Dataset) -> None:
    catalog = sample_shop.catalog
    result = engine.search("tv", k=20, filters=SearchFilters(brands=("Samsung",), max_price=2000.0))
    assert len(result.items)
    assert all(catalog.brand[int(i)] == "Samsung" and catalog.price[int(i)] <= 2000 for i in result.items)
    assert (
        result.facets["brand"] == [result.facets["brand"][0]] and result.facets["brand"][0].value == "Samsung"
    )
    electronics = engine.search("smart", k=30, filters=SearchFilters(categories=("Electronics",)))
    assert all(catalog.category[int(i)].startswith("Electronics > ") for i in electronics.items)
    in_stock = engine.search("coffee", k=50, filters=SearchFilters(in_stock_only=True))
    assert all(catalog.stock[int(i)] > 0 for i in in_stock.items)
    everything = engine.search("coffee", k=400)
    counts = {f.value: f.count for f in everything.facets["category"]}
    assert sum(counts.values()) >= len(everything.items) and counts["Grocery > Coffee"] > 0
    nothing = engine.search("tv", filters=SearchFilters(min_price=1e12))
    assert len(nothing.items) == 0 and nothing.facets == {}


def test_history_is_excluded_on_request_and_explanations_name_every_signal(
    engine: SearchEngine, sample_shop: Dataset
) -> None:
    tvs = np.flatnonzero(sample_shop.catalog.category.to_numpy() == TV)[:3].astype(np.int64)
    kept = engine.search("tv", k=60, history=tvs)
    dropped = engine.search("tv", k=60, history=tvs, exclude_history=True)
    assert not set(tvs) & set(dropped.items.tolist())
    assert len(kept.items) == len(dropped.items)
    assert len(dropped.explanations) == len(dropped.items)
    assert set(dropped.explanations[0]) == set(SIGNALS)
    assert np.all(np.diff(dropped.scores) <= 0)


def test_the_engine_satisfies_the_searcher_contract(engine: SearchEngine) -> None:
    searcher: Searcher = engine
    result = searcher.search("lipstick", k=3)
    assert result.items.dtype == np.int64 and result.scores.dtype == np.float32 and len(result.items) == 3
    assert len(searcher.search("!!! ???", k=3).items) == 3  # nothing to match on: still an answer
    with pytest.raises(ConfigError, match="k must be"):
        engine.search("lipstick", k=0)
    with pytest.raises(NotFittedError):
        SearchEngine().search("tv")


def test_save_and_load_give_identical_results(engine: SearchEngine, tmp_path: Path) -> None:
    engine.save(tmp_path / "search")
    loaded = SearchEngine.load(tmp_path / "search")
    for query in ("电视", "red lipstik", "laptop"):
        a, b = engine.search(query, k=10), loaded.search(query, k=10)
        assert a.items.tolist() == b.items.tolist()
        assert np.allclose(a.scores, b.scores)
        assert a.facets == b.facets and a.corrected_query == b.corrected_query
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))
    assert "titles_" in SearchEngine.load(tmp_path / "search").__dict__  # ready before the first query
    with pytest.raises(ArtifactError, match="shopfusion train"):
        SearchEngine.load(tmp_path / "missing")


def test_category_intent_of_a_chinese_query(engine: SearchEngine) -> None:
    best, p = engine.category_intent("电视")[0]
    assert best == TV and p > 0.5


def test_validation_queries_are_held_out_and_scored(engine: SearchEngine) -> None:
    validation = engine.training_["validation"]
    assert {"known-item/fusion", "known-item/bm25", "personal/fusion"} <= set(validation)
    for figures in validation.values():
        assert 0.0 <= figures["MRR@10"] <= figures["HR@10"] <= 1.0 and figures["queries"] > 0
    queries = [
        TrainingQuery(f"q{i}", np.array([i]), kind=k)
        for i, k in enumerate(["known-item"] * 20 + ["category"] * 5)
    ]
    train, held = split_validation(queries, 0.25, np.random.default_rng(0))
    assert len(held) == 5 and all(q.kind == "known-item" for q in held)
    assert len(train) == 20 and not {q.query for q in train} & {q.query for q in held}


def test_target_rank_excludes_history_and_breaks_ties_at_random() -> None:
    scores = np.array([5.0, 4.0, 3.0, 3.0, 3.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    assert _target_rank(scores, np.array([1]), np.array([0]), rng) == 1.0
    ranks = {_target_rank(scores, np.array([3]), np.zeros(0, dtype=np.int64), rng) for _ in range(50)}
    assert ranks == {3.0, 4.0, 5.0}


def test_title_match_features_of_the_engine_are_named_and_computed(engine: SearchEngine) -> None:
    titles = engine._title_tokens()
    item = next(i for i, t in enumerate(titles) if len(t) >= 3 and len(set(t)) == len(t))
    words = titles[item]
    rows = np.array([item], dtype=np.int64)
    columns = dict(zip(MATCH_FEATURES, engine._title_match(words[:2], rows), strict=True))
    assert columns["phrase"][0] == 1 and columns["prefix"][0] == 1 and columns["in_order"][0] == 1
    assert columns["title_length"][0] == len(words) and columns["span"][0] == 1.0
    assert columns["title_share"][0] == pytest.approx(2 / len(words))
    reversed_order = dict(zip(MATCH_FEATURES, engine._title_match([words[2], words[0]], rows), strict=True))
    assert reversed_order["prefix"][0] == 0 and reversed_order["in_order"][0] == 0
    assert {f"lexical_{name}" for name in MATCH_FEATURES} <= set(engine.feature_names_)


def test_gap_features_measure_each_candidate_against_the_querys_best(engine: SearchEngine) -> None:
    _, candidates, s = engine.score_all("samsung tv")
    assert s.candidate_features is not None
    features = s.candidate_features[1]
    names = list(engine.feature_names_)
    assert {f"lexical_{name}" for name in TYPED_FEATURES} <= set(names)
    for source in ("lexical_title", "prior_popularity", "lexical_idf_coverage"):
        column = features[:, names.index(source)]
        gap = features[:, names.index(f"{source}_gap")]
        assert np.allclose(gap, column - column.max()) and gap.max() == 0.0, source
    assert len(candidates) > 1


def test_generative_features_rank_the_title_holding_the_query_as_a_run_first(engine: SearchEngine) -> None:
    titles = engine._titles()
    item = next(i for i, t in enumerate(titles.typed_tokens) if len(t) >= 3 and len(set(t)) == len(t))
    query = titles.typed_tokens[item][:2]
    _, candidates, s = engine.score_all(" ".join(query))
    assert s.candidate_features is not None and item in candidates
    names = list(engine.feature_names_)
    row = s.candidate_features[1][np.searchsorted(candidates, item)]
    expected = generative_likelihood(titles.typed_tokens[item], s.corrected)
    assert row[names.index("lexical_generative")] == pytest.approx(expected, rel=1e-5)
    assert row[names.index("lexical_generative_gap")] <= 0.0


def test_an_index_of_an_older_format_is_refused_with_what_to_do(engine: SearchEngine, tmp_path: Path) -> None:
    path = engine.save(tmp_path / "search")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format": 3}))
    with pytest.raises(ArtifactError, match=r"format 3.*reads search format 4.*shopfusion train"):
        SearchEngine.load(path)


def test_ablation_explanations_credit_the_signal_shap_finds_leading(engine: SearchEngine) -> None:
    ablation = engine.search("samsung tv", k=5).explanations
    shap = SearchEngine(engine.config.model_copy(update={"explanations": "shap"}))
    shap.__dict__.update({k: v for k, v in engine.__dict__.items() if k != "config"})
    exact = shap.search("samsung tv", k=5).explanations
    assert len(ablation) == len(exact) == 5
    for a, b in zip(ablation, exact, strict=True):
        assert set(a) == set(b) == set(SIGNALS)
        leading = max(b, key=lambda n: b[n])
        assert b[leading] > 0 and a[leading] > 0, (a, b)


def test_explanations_are_skipped_on_request_without_changing_the_ranking(engine: SearchEngine) -> None:
    full = engine.search("samsung tv", k=8)
    bare = engine.search("samsung tv", k=8, explain=False)
    assert bare.explanations == [] and len(full.explanations) == 8
    assert bare.items.tolist() == full.items.tolist() and np.allclose(bare.scores, full.scores)


def test_explaining_some_items_afterwards_gives_their_numbers_of_a_full_explanation(
    engine: SearchEngine,
) -> None:
    full = engine.search("samsung tv", k=8)
    bare = engine.search("samsung tv", k=8, explain=False)
    some = bare.items[[5, 0, 3]]  # any subset, any order: what business rules keep
    expected = dict(zip(full.items.tolist(), full.explanations, strict=True))
    assert bare.explain(some) == [expected[int(i)] for i in some]
    assert full.explain(some) == bare.explain(some)
    assert bare.explain(bare.items[:0]) == []


def test_ablation_shares_are_the_score_drop_when_a_signal_takes_the_median(engine: SearchEngine) -> None:
    result = engine.search("red lipstick", k=3)
    signals = engine.signals("red lipstick")
    s = engine.score_all("red lipstick", signals=signals)[2]
    assert s.candidate_features is not None
    rows, features = s.candidate_features
    top = features[np.searchsorted(rows, result.items)]
    with warnings.catch_warnings():
        # A column may be unknown for every candidate (no title holds "red lipstick" in that
        # order: no generative likelihood); numpy warns, the engine's medians give NaN quietly.
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(features, axis=0)
    assert np.allclose(_column_medians(features), medians, equal_nan=True)
    ranker = engine.ranker_
    assert ranker is not None
    for signal in SIGNALS:
        columns = [i for i, n in enumerate(engine.feature_names_) if n.startswith(f"{signal}_")]
        ablated = top.copy()
        ablated[:, columns] = medians[columns]
        data = FusionInput(ablated, engine.feature_names_, SIGNALS, np.array([0, len(top)]))
        drop = result.scores - ranker.predict(data)
        assert np.allclose([e[signal] for e in result.explanations], drop, atol=1e-3), signal


def test_column_medians_skip_unknown_values() -> None:
    features = np.array([[1.0, np.nan, np.nan], [3.0, 2.0, np.nan], [2.0, 4.0, np.nan]], dtype=np.float32)
    medians = _column_medians(features)
    assert medians[:2].tolist() == [2.0, 3.0] and np.isnan(medians[2])


def test_facets_are_the_brute_force_counts(engine: SearchEngine) -> None:
    catalog = engine.catalog_
    rng = np.random.default_rng(1)
    for size in (0, 1, 7, 60, engine.n_items_):
        items = np.sort(rng.choice(engine.n_items_, size=size, replace=False))
        for name, values in (("category", catalog.category), ("brand", catalog.brand)):
            counts = Counter(values[i] for i in items.tolist() if values[i] != "")
            expected = sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))[:3]
            got = catalog.facets(items, limit=3).get(name, [])
            assert [(f.value, f.count) for f in got] == expected, (size, name)


def test_affinity_equals_scipys_weighted_row_product_exactly(engine: SearchEngine) -> None:
    behaviour, n = engine.behaviour_, engine.n_items_
    rng = np.random.default_rng(2)
    for trial in range(400):
        size = int(rng.integers(1, 40))
        history = rng.integers(0, n, size=size)
        if trial % 2:  # repeated items: their weights add up before the product
            history = rng.choice(history[: max(1, size // 3)], size=size)
        weights = np.power(0.5, np.arange(size)[::-1] / 5.0).astype(np.float32)
        row = sp.csr_matrix((weights, (np.zeros(size, dtype=np.int64), history)), shape=(1, n))
        expected = np.asarray((row @ behaviour.similarity).toarray(), dtype=np.float32).ravel()
        assert np.array_equal(behaviour.affinity(history.astype(np.int64), 5.0), expected), trial


def test_column_medians_equal_numpys_nanmedian_exactly() -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        n, m = int(rng.integers(1, 700)), int(rng.integers(1, 6))  # odd and even counts, both paths
        features = np.round(rng.normal(size=(n, m)), int(rng.integers(1, 4))).astype(np.float32)
        features[rng.random((n, m)) < rng.random()] = np.nan
        features[:, 0] = np.nan if trial % 4 == 0 else features[:, 0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            expected = np.nanmedian(features, axis=0).astype(np.float32)
        assert np.array_equal(_column_medians(features), expected, equal_nan=True), trial


def test_a_repeated_query_is_encoded_once_and_a_batch_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = QueryVectors(size=3)
    encoder = search_encoder("use-multilingual", queries=True)
    calls: list[list[str]] = []
    encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts: calls.append(list(texts)) or encode(texts))
    first = cache.get("use-multilingual", ["red lipstick", "shampoo", "red lipstick"])
    assert calls == [["red lipstick", "shampoo"]]  # one call, each text once
    assert np.array_equal(first[0], first[2]) and np.allclose(
        first[0], encode(["red lipstick"])[0], atol=1e-6
    )
    again = cache.get("use-multilingual", ["shampoo", "red lipstick"])
    assert len(calls) == 1 and np.array_equal(again, first[[1, 0]])
    assert (cache.hits, cache.misses) == (2, 2) and cache.hit_rate == 0.5
    cache.get("use-multilingual", ["a", "b"])  # over the size: the least recently used goes
    assert len(calls) == 2
    cache.get("use-multilingual", ["shampoo"])
    assert calls[-1] == ["shampoo"]


def test_a_batch_of_searches_equals_each_search_alone(engine: SearchEngine) -> None:
    rng = np.random.default_rng(4)
    histories = [None, rng.choice(engine.n_items_, 3, replace=False).astype(np.int64), None, None]
    requests = [
        SearchRequest("red lipstick", 5, histories[0]),
        SearchRequest("shampoo for dry hair", 7, histories[1], exclude_history=True),
        SearchRequest("口红", 3, None, SearchFilters(in_stock_only=True), explain=False),
        SearchRequest("zzzqqq nothing matches", 4, histories[3]),
    ]
    together = engine.search_many(requests)
    for request, batched in zip(requests, together, strict=True):
        alone = search_alone(engine, request)
        assert np.array_equal(batched.items, alone.items), request.query
        np.testing.assert_allclose(batched.scores, alone.scores, rtol=1e-5, atol=1e-6)
        assert batched.facets == alone.facets and batched.corrected_query == alone.corrected_query
        assert len(batched.explanations) == (len(alone.items) if request.explain else 0)
        for mine, theirs in zip(batched.explain(batched.items), alone.explain(alone.items), strict=True):
            assert mine.keys() == theirs.keys()
            np.testing.assert_allclose(list(mine.values()), list(theirs.values()), atol=2e-4)
    assert engine.search_many([]) == []
    nothing = SearchFilters(min_price=1e8)  # no item passes: no candidates for that search alone
    empty, full = engine.search_many([SearchRequest("red lipstick", 5, filters=nothing), requests[0]])
    assert len(empty.items) == 0 and empty.facets == {} and len(full.items) == 5
    none_pass = engine.search_many([SearchRequest("shampoo", 3, filters=nothing)] * 2)
    assert [len(r.items) for r in none_pass] == [0, 0]
    with pytest.raises(ConfigError, match="k must be at least 1"):
        engine.search_many([SearchRequest("shampoo", 0)])


def test_loading_prepares_the_encoder_before_the_first_query(engine: SearchEngine, tmp_path: Path) -> None:
    engine.save(tmp_path / "search")
    search_encoder.cache_clear()  # a fresh process: no encoder built yet
    SearchEngine.load(tmp_path / "search")
    encoder = search_encoder("use-multilingual", queries=True)
    assert isinstance(encoder, LazyModel) and encoder._model is not None


def test_per_query_work_runs_on_one_blas_thread(
    engine: SearchEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searching and the build's per-query loops (ranker training, validation) compute one query's
    signals at a time: BLAS threads there only spin, so they are limited to one."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]

    seen: list[list[int]] = []
    signals = SearchEngine.signals

    def recording(self: SearchEngine, *args: object, **kwargs: object) -> object:
        seen.append(blas_threads())
        return signals(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SearchEngine, "signals", recording)
    before = blas_threads()
    engine.search("电视", k=3)
    engine.validate([TrainingQuery("samsung tv", np.array([0]))], np.random.default_rng(0))
    assert before and len(seen) == 2
    assert all(threads == [1] * len(before) for threads in seen)
    assert blas_threads() == before


def test_candidates_dense_features_are_exact_cosines_whatever_the_catalog_product(
    engine: SearchEngine,
) -> None:
    """The catalog product may be int8 (approximate); the candidates' cosines, which the ranker
    reads, are rescored in float32 from the query's vector."""
    s = engine.signals("red lipstick")
    approximate = {name: values.copy() for name, values in s.dense.items()}
    candidates = engine._candidates(s, np.ones(engine.n_items_, dtype=bool))
    features = engine._features(s, candidates)
    assert len(candidates) and s.query_vectors.keys() == s.dense.keys()
    for name, vector in s.query_vectors.items():
        exact = engine.dense_.vectors[name][candidates] @ vector
        assert np.array_equal(s.dense[name][candidates], exact)
        assert np.array_equal(features[:, engine.feature_names_.index(f"dense_{name}")], exact)
        others = np.setdiff1d(np.arange(engine.n_items_), candidates)
        assert np.array_equal(s.dense[name][others], approximate[name][others])  # left as scanned
        assert np.abs(approximate[name] - engine.dense_.vectors[name] @ vector).max() < 5e-3
