"""The search engine: query understanding, lexical + dense retrieval, a learned ranker, filters,
facets and personalisation, behind the :class:`~shopfusion.search.api.Searcher` contract.

For one query the engine computes every signal for *every* item (BM25 per field, typo-tolerant
character n-gram BM25, dense cosine per encoder, P(category | query), the popularity prior P(a|S),
the user's affinity from their history), takes the union of each source's top items as candidates
and ranks them with a LightGBM LambdaMART ranker over those signals — the seed's
``P(a|q,S) ∝ P(a|S)·P(q|a,S)`` with the product learned instead of fixed. Items outside the
candidates rank below every candidate.

The ranker learns from queries derived from the shop itself (see :mod:`shopfusion.search.training`)
and from past searches that ended in a click, with each user's last item held out as the target of
personal queries: behavioural signals for training are computed without that item, then refitted
on everything for serving.

Artifact (``save``/``load``, no pickle)::

    manifest.json   format, config, feature names, catalog size, training summary
    lexical/        one bm25s index per field (npy + json)
    dense.npz       item vectors per encoder
    intent.npz      naive-Bayes counts of the category intent
    behaviour.npz   popularity and item-to-item similarity (sparse)
    catalog.npz     facet and filter columns
    spelling.json   catalog vocabulary and word frequencies
    ranker.txt      LightGBM model text
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopfusion import __version__
from shopfusion.data.interactions import Histories
from shopfusion.encoders.cache import EmbeddingCache
from shopfusion.encoders.text import item_texts
from shopfusion.errors import ArtifactError, ConfigError, NotFittedError
from shopfusion.ranking.fusion import FusionInput, LambdaMARTFusion
from shopfusion.ranking.groups import subsample_groups
from shopfusion.retrieval.base import TrainData, sparse_from_arrays, sparse_to_arrays
from shopfusion.retrieval.blas import one_blas_thread
from shopfusion.retrieval.item2item import ItemToItemRetriever
from shopfusion.retrieval.scores import union_of_keys
from shopfusion.search.api import FacetValue, SearchFilters, SearchRequest, SearchResult
from shopfusion.search.index import DenseIndex, LexicalIndex, attributes_of, field_texts
from shopfusion.search.intent import CategoryIntent
from shopfusion.search.query import SpellCorrector, tokenize, word_bigrams
from shopfusion.search.rows import RowSelection
from shopfusion.search.titles import MATCH_FEATURES, TYPED_FEATURES, TitleIndex
from shopfusion.search.training import (
    TrainingQuery,
    category_queries,
    known_item_queries,
    personal_queries,
    typed_words,
)

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
#: 4: the generative-likelihood features (``lexical_generative``, ``lexical_generative_gap``);
#: 3: typed-word and gap features. A ranker reads the feature columns of its own format only.
FORMAT = 4
QUERIES_PER_ITEM = 3
_EMPTY = np.zeros(0, dtype=np.int64)

#: Signal groups; every feature name starts with one of them (explanations sum per group).
SIGNALS = ("lexical", "dense", "intent", "prior", "personal", "item")


class SearchConfig(BaseModel):
    """How the engine is built. Every key is optional; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoders: tuple[str, ...] | None = Field(
        default=None,
        description="dense encoders; default: use-multilingual alone (minilm: English catalogs only)",
    )
    field_weights: dict[str, float] = Field(
        default_factory=lambda: {"title": 1.0, "brand": 0.7, "category": 0.5, "description": 0.3},
        description="weights of the BM25 fields in the `bm25` baseline score and its candidates",
    )
    # Halving every pool (200/100/100/100 before) left the validation figures where they were and
    # took ~0.4 ms off a ~5 ms search (benchmarks/RESULTS.md, session 4).
    lexical_candidates: int = Field(default=100, ge=1)
    ngram_candidates: int = Field(default=50, ge=0)
    dense_candidates: int = Field(default=50, ge=0, description="per encoder")
    personal_candidates: int = Field(default=50, ge=0)
    known_item_queries: int = Field(default=5000, ge=0)
    category_queries: int = Field(default=1000, ge=0)
    personal_queries: int = Field(default=4000, ge=0)
    max_negatives: int = Field(default=60, ge=1, description="negatives per training query")
    validation_fraction: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="share of the generated known-item and personal queries held out of ranker "
        "training and scored by full ranking (the engine's own validation set)",
    )
    recency_half_life: float = Field(default=2.0, gt=0)
    explanations: Literal["ablation", "shap"] = Field(
        default="ablation",
        description="per-signal share of a result's score: the score's drop when the signal's "
        "features take the candidates' median values (one batched prediction), or TreeSHAP "
        "(exact sums, several times the cost of the ranking itself)",
    )
    ranker: dict[str, Any] = Field(
        default_factory=lambda: {"n_estimators": 400, "learning_rate": 0.1, "min_child_samples": 50},
        description="LightGBM LambdaMART parameters; a learning rate of 0.1 reached the validation "
        "figures of 0.05 with about half the trees",
    )
    seed: int = 0


def parse_search_config(raw: dict[str, Any] | None) -> SearchConfig:
    try:
        return SearchConfig.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"search config: {problems}") from None


def load_search_config(path: Path) -> SearchConfig:
    """A YAML file of :class:`SearchConfig` keys; errors name the file and the key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: search config not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of SearchConfig keys")
    try:
        return parse_search_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


@dataclass
class _Catalog:
    """The columns filters and facets need, one entry per item."""

    category: list[str]
    brand: list[str]
    price: npt.NDArray[np.float64]
    stock: npt.NDArray[np.float64]  # NaN: unknown
    title: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Facet values as integer codes: counting a result set's facets is one bincount.
        self._codes: dict[str, tuple[IntArray, list[str], npt.NDArray[np.bool_]]] = {}
        for name, values in (("category", self.category), ("brand", self.brand)):
            codes, uniques = pd.factorize(pd.Series(values, dtype=object), sort=True)
            names = [str(u) for u in uniques]
            # Which codes name a value (an empty one is no facet value), read once: a pandas
            # Index compared per search cost more than counting the facets.
            self._codes[name] = (codes, names, np.array([u != "" for u in names], dtype=bool))

    @classmethod
    def from_frame(cls, catalog: pd.DataFrame) -> _Catalog:
        n = len(catalog)

        def strings(name: str) -> list[str]:
            if name not in catalog:
                return [""] * n
            return ["" if pd.isna(v) else str(v) for v in catalog[name]]

        def numbers(name: str) -> npt.NDArray[np.float64]:
            if name not in catalog:
                return np.full(n, np.nan)
            return pd.to_numeric(catalog[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

        return cls(
            strings("category"), strings("brand"), numbers("price"), numbers("stock"), strings("title")
        )

    def mask(self, filters: SearchFilters) -> npt.NDArray[np.bool_]:
        """Items that pass ``filters``. A category filter matches the path or any prefix of it;
        unknown prices fail a price filter, unknown stock passes the in-stock filter."""
        keep = np.ones(len(self.price), dtype=bool)
        if filters.categories:
            wanted = [c.casefold() for c in filters.categories]
            keep &= np.array(
                [
                    any(c == w or c.startswith(w + " > ") for w in wanted)
                    for c in map(str.casefold, self.category)
                ]
            )
        if filters.brands:
            brands = {b.casefold() for b in filters.brands}
            keep &= np.array([b.casefold() in brands for b in self.brand])
        if filters.min_price is not None:
            keep &= self.price >= filters.min_price
        if filters.max_price is not None:
            keep &= self.price <= filters.max_price
        if filters.in_stock_only:
            keep &= ~(self.stock <= 0)
        return keep

    def facets(self, items: IntArray, limit: int = 20) -> dict[str, list[FacetValue]]:
        out: dict[str, list[FacetValue]] = {}
        for name, (codes, uniques, named) in self._codes.items():
            counts = np.bincount(codes[items], minlength=len(uniques)) if len(items) else np.zeros(0)
            # Only the values present (a Python loop over every brand cost more than the ranking);
            # uniques are sorted, so a stable sort by count keeps equal counts in value order.
            present = np.flatnonzero(counts)
            present = present[named[present]]
            ordered = present[np.argsort(-counts[present], kind="stable")][:limit].tolist()
            if ordered:
                out[name] = [FacetValue(uniques[j], int(counts[j])) for j in ordered]
        return out

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "category": np.asarray(self.category, dtype=str),
            "brand": np.asarray(self.brand, dtype=str),
            "price": self.price,
            "stock": self.stock,
            "title": np.asarray(self.title, dtype=str),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> _Catalog:
        return cls(
            [str(x) for x in arrays["category"]],
            [str(x) for x in arrays["brand"]],
            np.asarray(arrays["price"], dtype=np.float64),
            np.asarray(arrays["stock"], dtype=np.float64),
            [str(x) for x in arrays["title"]],
        )


@dataclass
class _Behaviour:
    """P(a|S): popularity, and the user's affinity through item-to-item co-occurrence."""

    popularity: FloatArray
    similarity: sp.csr_matrix

    @classmethod
    def fit(cls, histories: Histories, n_items: int) -> _Behaviour:
        if len(histories.items) == 0:
            return cls(
                np.zeros(n_items, dtype=np.float32), sp.csr_matrix((n_items, n_items), dtype=np.float32)
            )
        counts = np.asarray(histories.to_csr().sum(axis=0)).ravel()
        i2i = ItemToItemRetriever().fit(TrainData(histories, None))
        return cls(np.log1p(counts).astype(np.float32), i2i.similarity_)

    def affinity(self, history: IntArray, half_life: float) -> FloatArray:
        """The recency-weighted sum of the history's item-to-item rows: ``weights @ similarity``
        with scipy's numbers, without scipy's per-call overhead (a third of the cost). The sums
        run in scipy's order (history items ascending, each row as stored; :class:`RowSelection`),
        so they are equal bit for bit; a repeated item's weights are summed by scipy itself, in its
        own order."""
        n = len(self.popularity)
        if not len(history):
            return np.zeros(n, dtype=np.float32)
        weights = np.power(0.5, np.arange(len(history))[::-1] / half_life).astype(np.float32)
        if len(np.unique(history)) == len(history):
            order = np.argsort(history, kind="stable")
            items, summed = history[order], weights[order]
        else:
            row = sp.csr_matrix((weights, (np.zeros(len(history), dtype=np.int64), history)), shape=(1, n))
            items, summed = row.indices, row.data
        return RowSelection(self.similarity, items).column_sums(summed)


@dataclass
class Signals:
    """Every signal of one query for every item, and the query's own facts."""

    tokens: list[str]
    corrected: list[str]
    fields: dict[str, FloatArray]
    coverage: FloatArray
    dense: dict[str, FloatArray]
    #: P(label | query) over the intent model's labels; an item's match is the mass of its own
    #: labels, read for the candidates only (:meth:`SearchEngine._features`).
    intent_labels: FloatArray
    popularity: FloatArray
    affinity: FloatArray
    last_affinity: FloatArray
    #: The history's mean item vector (last encoder) and label shares; empty without history.
    profile: FloatArray
    history_labels: FloatArray
    history: IntArray = field(default_factory=lambda: _EMPTY)
    #: The ranked candidates (sorted ids) and their feature rows, once ranked.
    candidate_features: tuple[IntArray, FloatArray] | None = None
    #: The query's vector per encoder: the candidates' cosines in ``dense`` are rescored exactly
    #: from them (the catalog product may be approximate, :class:`~shopfusion.search.index.Int8Product`).
    query_vectors: dict[str, FloatArray] = field(default_factory=dict)

    def lexical(self, weights: dict[str, float]) -> FloatArray:
        total = np.zeros_like(self.coverage)
        for name, values in self.fields.items():
            total += weights.get(name, 0.0) * values
        return total


def _rank(values: FloatArray, rows: IntArray) -> FloatArray:
    """1-based rank of each of ``rows`` among all items by ``values`` (ties share the best rank)."""
    order = np.sort(values)[::-1]
    return (np.searchsorted(-order, -values[rows], side="left") + 1).astype(np.float32)


class SearchEngine:
    """``SearchEngine(config).fit(catalog, histories) -> self``; then :meth:`search`."""

    def __init__(self, config: SearchConfig | None = None, cache: EmbeddingCache | None = None) -> None:
        self.config = config or SearchConfig()
        # Item embeddings go through the on-disk cache: rebuilding on the same catalog re-encodes nothing.
        self.cache = cache if cache is not None else EmbeddingCache()

    # ------------------------------------------------------------------ building

    def fit(
        self,
        catalog: pd.DataFrame,
        histories: Histories | None = None,
        events: Sequence[tuple[str, int]] = (),
    ) -> SearchEngine:
        """Index ``catalog`` (row ``i`` = item ``i``), learn the intent model and the ranker.

        ``histories``: each user's items in time order (behavioural signals and personal training
        queries); ``events``: (query, clicked item) of past searches.
        """
        started = time.perf_counter()
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        n_items = len(catalog)
        histories = histories if histories is not None else Histories.from_lists([], n_items)
        texts = field_texts(catalog)
        self.n_items_ = n_items
        self.catalog_ = _Catalog.from_frame(catalog)
        self.lexical_ = LexicalIndex().fit(texts)
        tokens = [
            tokenize(" ".join(t)) for t in zip(texts["title"], texts["brand"], texts["category"], strict=True)
        ]
        self.speller_ = SpellCorrector().fit(tokens)
        labels = [
            _labels(c, a)
            for c, a in zip(self.catalog_.category, catalog.get("attributes", [""] * n_items), strict=True)
        ]
        event_tokens = [(tokenize(q), i) for q, i in events]
        self.intent_ = CategoryIntent().fit(tokens, labels, event_tokens)
        all_text = item_texts(catalog)
        self.dense_ = DenseIndex.build(cfg.encoders or default_encoders(catalog), all_text, self.cache)
        self.feature_names_ = self._feature_names()
        # The ranker learns with behavioural signals that have not seen the held-out targets.
        self.behaviour_ = _Behaviour.fit(histories.drop_last(1), n_items)
        queries = self._training_queries(catalog, histories, events, rng)
        queries, held_out = split_validation(queries, cfg.validation_fraction, rng)
        self.ranker_: LambdaMARTFusion | None = None
        self.ranker_, self.training_ = self._fit_ranker(queries, rng)
        if held_out:
            self.training_["validation"] = self.validate(held_out, rng)
        self.behaviour_ = _Behaviour.fit(histories, n_items)
        self.training_["fit_seconds"] = round(time.perf_counter() - started, 1)
        return self

    def _training_queries(
        self,
        catalog: pd.DataFrame,
        histories: Histories,
        events: Sequence[tuple[str, int]],
        rng: np.random.Generator,
    ) -> list[TrainingQuery]:
        cfg = self.config
        titles = [t or "" for t in field_texts(catalog)["title"]]
        names = [
            _category_names(c, a)
            for c, a in zip(
                self.catalog_.category, catalog.get("attributes", [""] * len(titles)), strict=True
            )
        ]
        # Small catalogs need few queries to cover them: at most `QUERIES_PER_ITEM` per item and kind.
        cap = QUERIES_PER_ITEM * len(titles)
        demand = np.bincount(histories.items, minlength=len(titles)).astype(np.float64)
        queries = known_item_queries(titles, min(cfg.known_item_queries, cap), rng, demand=demand)
        queries += category_queries(names, min(cfg.category_queries, cap), rng)
        queries += personal_queries(titles, histories, min(cfg.personal_queries, cap), rng)
        queries += [TrainingQuery(q, np.array([i], dtype=np.int64), kind="event") for q, i in events]
        return queries

    def _fit_ranker(
        self, queries: list[TrainingQuery], rng: np.random.Generator
    ) -> tuple[LambdaMARTFusion | None, dict[str, Any]]:
        cfg = self.config
        vectors = self.dense_.encode_queries([q.query for q in queries]) if queries else {}
        blocks: list[FloatArray] = []
        labels: list[npt.NDArray[np.bool_]] = []
        priorities: list[FloatArray] = []
        sizes: list[int] = []
        # One query at a time: its linear algebra is too small for BLAS threads, which only spin
        # (the 12k x 512 mat-vec took 5x longer on two threads than on one; RESULTS.md, session 4).
        with one_blas_thread():
            for i, q in enumerate(queries):
                signals = self.signals(q.query, q.history, {n: v[i] for n, v in vectors.items()})
                candidates = self._candidates(signals, np.ones(self.n_items_, dtype=bool))
                blocks.append(self._features(signals, candidates))
                labels.append(np.isin(candidates, q.positives))
                priorities.append(-signals.lexical(cfg.field_weights)[candidates])
                sizes.append(len(candidates))
        summary: dict[str, Any] = {"queries": len(queries)}
        for kind in sorted({q.kind for q in queries}):
            summary[f"queries_{kind}"] = sum(q.kind == kind for q in queries)
        if not queries:
            return None, summary
        ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        all_labels = np.concatenate(labels)
        summary["candidate_recall"] = round(float(np.mean([lab.any() for lab in labels])), 4)
        rows, group_ptr = subsample_groups(
            all_labels, ptr, np.concatenate(priorities), cfg.max_negatives, rng
        )
        if len(group_ptr) < 20:
            logger.warning(
                "only %d training queries reach their target; ranking by a fixed blend", len(group_ptr) - 1
            )
            return None, summary
        data = FusionInput(np.concatenate(blocks)[rows], self.feature_names_, SIGNALS, group_ptr)
        ranker = LambdaMARTFusion(**cfg.ranker).fit(data, all_labels[rows], rng)
        summary["ranker_iterations"] = ranker.best_iteration_
        summary["training_rows"] = len(rows)
        return ranker, summary

    def validate(self, queries: Sequence[TrainingQuery], rng: np.random.Generator) -> dict[str, Any]:
        """MRR@10 and HR@10 of the full system and of ``bm25`` per query kind, each query ranking
        every item (history excluded, ties at random): the engine's own validation figures."""
        vectors = self.dense_.encode_queries([q.query for q in queries])
        ranks: dict[str, dict[str, list[float]]] = {}
        with one_blas_thread():  # one query at a time, as in _fit_ranker
            for i, q in enumerate(queries):
                signals = self.signals(q.query, q.history, {n: v[i] for n, v in vectors.items()})
                fused, _, s = self.score_all(q.query, q.history, signals=signals)
                for system, scores in (("fusion", fused), ("bm25", s.lexical(self.config.field_weights))):
                    ranks.setdefault(f"{q.kind}/{system}", {}).setdefault("rank", []).append(
                        _target_rank(scores, q.positives, q.history, rng)
                    )
        out: dict[str, Any] = {}
        for key, values in sorted(ranks.items()):
            r = np.asarray(values["rank"])
            out[key] = {
                "MRR@10": round(float(np.where(r <= 10, 1.0 / r, 0.0).mean()), 4),
                "HR@10": round(float((r <= 10).mean()), 4),
                "queries": len(r),
            }
        return out

    # ------------------------------------------------------------------ signals and features

    def _feature_names(self) -> tuple[str, ...]:
        lexical = [f"lexical_{f}" for f in self.lexical_.fields]
        dense = [f"dense_{e}" for e in self.dense_.encoders] + [
            f"dense_{e}_rank" for e in self.dense_.encoders
        ]
        return (
            *lexical,
            "lexical_total_rank",
            "lexical_coverage",
            "lexical_query_tokens",
            "lexical_corrected",
            *(f"lexical_{name}" for name in MATCH_FEATURES),
            *(f"lexical_{name}" for name in TYPED_FEATURES),
            *dense,
            "intent_match",
            "prior_popularity",
            "personal_i2i",
            "personal_i2i_rank",
            "personal_last_i2i",
            "personal_content",
            "personal_labels",
            "personal_history_length",
            "item_price",
            "item_in_stock",
            *(f"{name}_gap" for name in self._gap_features()),
        )

    def _gap_features(self) -> list[str]:
        """Features also given as each candidate's distance to the query's best candidate: a score
        that is high for every candidate of one query says less than being the best of them."""
        return [
            *(f"lexical_{f}" for f in self.lexical_.fields),
            *(f"dense_{e}" for e in self.dense_.encoders),
            "lexical_idf_coverage",
            "prior_popularity",
        ]

    def signals(
        self,
        query: str,
        history: IntArray | None = None,
        query_vectors: dict[str, FloatArray] | None = None,
        dense: dict[str, FloatArray] | None = None,
    ) -> Signals:
        """Every signal for every item (the same code for training, serving and the benchmark).

        ``query_vectors``: the query's vector per encoder, when already encoded (kept in the
        signals: the candidates' cosines are rescored from them); ``dense``: its cosine with every
        item per encoder, when already computed (:meth:`search_many` computes them for a batch of
        queries at once)."""
        self._check_fitted()
        history = _EMPTY if history is None else np.asarray(history, dtype=np.int64)
        tokens = tokenize(query)
        corrected = self.speller_.correct(tokens, self._titles().together)
        words = list(dict.fromkeys(corrected + tokens))
        per_token = self.lexical_.token_scores("title", corrected)
        fields = {"title": per_token.sum(axis=0)}
        for name in self.lexical_.fields:
            if name == "ngram":
                fields[name] = self.lexical_.ngram_scores(
                    corrected + [t for t in tokens if t not in corrected]
                )
            elif name == "bigram":
                fields[name] = self.lexical_.token_scores(name, word_bigrams(corrected)).sum(axis=0)
            elif name != "title":
                fields[name] = self.lexical_.token_scores(name, words).sum(axis=0)
        coverage = (
            (per_token > 0).mean(axis=0) if len(corrected) else np.zeros(self.n_items_, dtype=np.float32)
        )
        if query_vectors is None:
            encoded = self.dense_.encode_queries_cached([query])
            query_vectors = {name: rows[0] for name, rows in encoded.items()}
        if dense is None:
            batch = {name: vector[None, :] for name, vector in query_vectors.items()}
            dense = {name: rows[0] for name, rows in self.dense_.similarities(batch).items()}
        intent_labels = self.intent_.predict(words)
        affinity = self.behaviour_.affinity(history, self.config.recency_half_life)
        if len(history):
            weights = np.power(0.5, np.arange(len(history))[::-1] / self.config.recency_half_life)
            vectors_of = self.dense_.vectors[self.dense_.encoders[-1]]
            profile = (weights[:, None] * vectors_of[history]).sum(axis=0)
            profile = (profile / max(float(np.linalg.norm(profile)), 1e-9)).astype(np.float32)
            labels = RowSelection(self.intent_.item_labels_, history).column_sums()
            labels /= len(history)
            last = self.behaviour_.affinity(history[-1:], self.config.recency_half_life)
        else:
            profile = np.zeros(0, dtype=np.float32)
            labels = np.zeros(0, dtype=np.float32)
            last = np.zeros(self.n_items_, dtype=np.float32)
        return Signals(
            tokens,
            corrected,
            fields,
            coverage.astype(np.float32),
            dense,
            intent_labels,
            self.behaviour_.popularity,
            affinity,
            last,
            profile,
            labels,
            history,
            query_vectors=query_vectors,
        )

    def _candidates(self, s: Signals, allowed: npt.NDArray[np.bool_]) -> IntArray:
        cfg = self.config
        lexical = s.lexical(cfg.field_weights)
        pools = [_top(lexical, cfg.lexical_candidates, allowed & (lexical > 0))]
        if "ngram" in s.fields:
            pools.append(_top(s.fields["ngram"], cfg.ngram_candidates, allowed))
        for values in s.dense.values():
            pools.append(_top(values, cfg.dense_candidates, allowed))
        if len(s.history):
            plausible = allowed & (lexical > 0)
            pools.append(_top(s.affinity, cfg.personal_candidates, plausible & (s.affinity > 0)))
        candidates = union_of_keys(pools, self.n_items_)
        if len(s.history) and len(candidates):
            # candidates are sorted and distinct: each history item is found by bisection
            # (np.isin sorted both arrays again, a tenth of the candidate step)
            at = np.minimum(np.searchsorted(candidates, s.history), len(candidates) - 1)
            seen = np.zeros(len(candidates), dtype=bool)
            seen[at[candidates[at] == s.history]] = True
            candidates = candidates[~seen]
        # The candidates' features are float32 cosines whatever the catalog product's precision
        # (a few hundred rows: ~0.1 ms, against ~0.7 ms that the int8 scan saves; RESULTS.md,
        # session 13). Written into ``dense``, so ranks and explanations read the same values.
        for name, vector in s.query_vectors.items():
            s.dense[name][candidates] = self.dense_.cosines(name, vector, candidates)
        return candidates

    def _features(self, s: Signals, rows: IntArray) -> FloatArray:
        lexical = s.lexical(self.config.field_weights)
        columns: list[FloatArray | float] = [s.fields[f][rows] for f in self.lexical_.fields]
        columns += [
            _rank(lexical, rows),
            s.coverage[rows],
            float(len(s.corrected)),
            float(s.corrected != s.tokens),
            *self._title_match(s.corrected, rows),
            *self._titles().typed_match(s.corrected, rows),
        ]
        columns += [s.dense[e][rows] for e in self.dense_.encoders]
        columns += [_rank(s.dense[e], rows) for e in self.dense_.encoders]
        columns += [
            self.intent_.item_match(s.intent_labels, rows),
            s.popularity[rows],
            s.affinity[rows],
            _rank(s.affinity, rows) if len(s.history) else float(self.n_items_),
            s.last_affinity[rows],
            self._content(s, rows),
            RowSelection(self.intent_.item_labels_, rows).dot(s.history_labels) if len(s.history) else 0.0,
            float(len(s.history)),
            self.catalog_.price[rows].astype(np.float32),
            np.where(np.isnan(self.catalog_.stock[rows]), np.nan, self.catalog_.stock[rows] > 0).astype(
                np.float32
            ),
        ]
        n_gaps = len(self._gap_features())
        out = np.empty((len(rows), len(columns) + n_gaps), dtype=np.float32)
        for j, column in enumerate(columns):
            out[:, j] = column
        if len(rows):
            gaps = out[:, self._gap_sources()]
            out[:, len(columns) :] = gaps - gaps.max(axis=0)
        return out

    def _gap_sources(self) -> list[int]:
        """The columns whose gap to the best candidate are features (see :meth:`_gap_features`)."""
        if not hasattr(self, "gap_sources_"):
            self.gap_sources_ = [self.feature_names_.index(name) for name in self._gap_features()]
        return self.gap_sources_

    def _titles(self) -> TitleIndex:
        if not hasattr(self, "titles_"):
            titles = self.catalog_.title
            typed = [tokenize(" ".join(typed_words(t))) for t in titles]
            self.titles_ = TitleIndex([tokenize(t) for t in titles], typed)
        return self.titles_

    def _title_tokens(self) -> list[list[str]]:
        return self._titles().tokens

    def _title_match(self, query: list[str], rows: IntArray) -> list[FloatArray]:
        """How each candidate's title holds the query (see :meth:`TitleIndex.match`)."""
        return self._titles().match(query, rows)

    def _content(self, s: Signals, rows: IntArray) -> FloatArray | float:
        """Cosine of each candidate with the history's profile (last encoder): affinity by meaning."""
        if not len(s.history):
            return 0.0
        similarity: FloatArray = self.dense_.vectors[self.dense_.encoders[-1]][rows] @ s.profile
        return similarity

    # ------------------------------------------------------------------ searching

    def score_all(
        self,
        query: str,
        history: IntArray | None = None,
        filters: SearchFilters | None = None,
        signals: Signals | None = None,
    ) -> tuple[FloatArray, IntArray, Signals]:
        """A score for every item (candidates by the ranker, the rest below them, filtered-out
        items ``-inf``), the candidates, and the signals."""
        s = signals if signals is not None else self.signals(query, history)
        allowed = self._allowed(filters)
        candidates = self._candidates(s, allowed)
        (fused,) = self._rank_candidates([s], [candidates])
        return self._all_scores(allowed, candidates, fused), candidates, s

    def _allowed(self, filters: SearchFilters | None) -> npt.NDArray[np.bool_]:
        return self.catalog_.mask(filters) if filters is not None else np.ones(self.n_items_, dtype=bool)

    def _all_scores(
        self, allowed: npt.NDArray[np.bool_], candidates: IntArray, fused: FloatArray
    ) -> FloatArray:
        scores = np.full(self.n_items_, -np.inf, dtype=np.float32)
        if len(candidates):
            scores[allowed] = float(fused.min()) - 1.0
            scores[candidates] = fused
        return scores

    def _rank_candidates(
        self, signals: Sequence[Signals], candidates: Sequence[IntArray]
    ) -> list[FloatArray]:
        """The ranker's score of each query's candidates: one prediction for all the queries (a
        tree ensemble scores rows independently; its fixed cost per call is paid once)."""
        features = [self._features(s, rows) for s, rows in zip(signals, candidates, strict=True)]
        for s, rows, block in zip(signals, candidates, features, strict=True):
            s.candidate_features = (rows, block)
        if self.ranker_ is None:  # the fixed blend standardises over each query's candidates
            return [
                _fallback(FusionInput(block, self.feature_names_, SIGNALS, np.array([0, len(block)])))
                if len(block)
                else np.zeros(0, dtype=np.float32)
                for block in features
            ]
        if not sum(len(block) for block in features):
            return [np.zeros(0, dtype=np.float32) for _ in features]
        ptr = np.concatenate([[0], np.cumsum([len(block) for block in features])]).astype(np.int64)
        fused = self.ranker_.predict(FusionInput(np.concatenate(features), self.feature_names_, SIGNALS, ptr))
        return [fused[ptr[i] : ptr[i + 1]] for i in range(len(features))]

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        history: IntArray | None = None,
        filters: SearchFilters | None = None,
        exclude_history: bool = False,
        explain: bool = True,
    ) -> SearchResult:
        """:meth:`Searcher.search`; ``explain=False`` leaves ``explanations`` empty (one ranker
        call fewer): the result's :meth:`~SearchResult.explain` then explains only the items a
        caller keeps, with the same numbers."""
        request = SearchRequest(query, k, history, filters, exclude_history, explain)
        (result,) = self.search_many([request])
        return result

    def search_many(self, requests: Sequence[SearchRequest]) -> list[SearchResult]:
        """:meth:`search` for each request, the results in order, with the numbers each would get
        alone: the queries are encoded in one call, the item matrices are read once for all of
        them, and one ranker call scores every query's candidates (a short query's encoding and
        the dense product cost about as much for a few queries as for one; the service batches
        the searches that queue while one runs)."""
        for request in requests:
            if request.k < 1:
                raise ConfigError(f"k must be at least 1, got {request.k}")
        if not requests:
            return []
        self._check_fitted()
        # One query's linear algebra is too small for BLAS threads; on busy cores they only spin.
        with one_blas_thread():
            vectors = self.dense_.encode_queries_cached([r.query for r in requests])
            dense = self.dense_.similarities(vectors)
            signals = [
                self.signals(
                    r.query,
                    r.history,
                    query_vectors={name: rows[i] for name, rows in vectors.items()},
                    dense={name: rows[i] for name, rows in dense.items()},
                )
                for i, r in enumerate(requests)
            ]
            allowed = [self._allowed(r.filters) for r in requests]
            candidates = [self._candidates(s, mask) for s, mask in zip(signals, allowed, strict=True)]
            fused = self._rank_candidates(signals, candidates)
            return [
                self._result(request, s, self._all_scores(mask, rows, scores), rows)
                for request, s, mask, rows, scores in zip(
                    requests, signals, allowed, candidates, fused, strict=True
                )
            ]

    def _result(
        self, request: SearchRequest, s: Signals, scores: FloatArray, candidates: IntArray
    ) -> SearchResult:
        if request.exclude_history and len(s.history):
            scores[s.history] = -np.inf
        matches = candidates[np.isfinite(scores[candidates])]
        top = matches[np.lexsort((matches, -scores[matches]))][: request.k]

        def explainer(items: IntArray) -> list[dict[str, float]]:
            with one_blas_thread():
                return self._explain(s, items, scores[items])

        return SearchResult(
            items=top.astype(np.int64),
            scores=scores[top].astype(np.float32),
            facets=self.catalog_.facets(matches),
            explanations=explainer(top) if request.explain else [],
            corrected_query=" ".join(s.corrected) if s.corrected != s.tokens else None,
            explainer=explainer,
        )

    def _explain(self, s: Signals, top: IntArray, scores: FloatArray) -> list[dict[str, float]]:
        """``scores``: the ranker's scores of ``top`` (the ablation's baseline)."""
        if not len(top):
            return []
        reference: FloatArray | None = None
        if s.candidate_features is not None:
            candidates, features = s.candidate_features
            reference = _column_medians(features) if len(features) else None
            rows = features[np.searchsorted(candidates, top)]
        else:
            rows = self._features(s, top)
        data = FusionInput(rows, self.feature_names_, SIGNALS, np.array([0, len(top)]))
        if self.ranker_ is None:
            shares = _fallback_parts(data)
        elif self.config.explanations == "shap" or reference is None:
            shares = self.ranker_.contributions(data)
        else:
            shares = self._ablation(data, reference, scores)
        return [{name: round(float(v), 4) for name, v in zip(SIGNALS, row, strict=True)} for row in shares]

    def _ablation(self, data: FusionInput, reference: FloatArray, base: FloatArray) -> FloatArray:
        """Per signal group, how far each row's score (``base``) falls when that group's features
        take the candidates' median values instead: one batched prediction, a fraction of
        TreeSHAP's cost."""
        k = len(data.features)
        stacked = np.repeat(data.features[None], len(SIGNALS), axis=0)
        for j, columns in enumerate(self._signal_columns()):
            stacked[j][:, columns] = reference[columns]
        flat = stacked.reshape(-1, data.features.shape[1])
        scores = self.ranker_.predict(  # type: ignore[union-attr]
            FusionInput(flat, data.feature_names, SIGNALS, np.array([0, len(flat)]))
        )
        shares: FloatArray = (base[None, :] - scores.reshape(len(SIGNALS), k)).T.astype(np.float32)
        return shares

    def _signal_columns(self) -> list[list[int]]:
        """Per signal group, the indices of its features."""
        if not hasattr(self, "signal_columns_"):
            self.signal_columns_ = [
                [i for i, n in enumerate(self.feature_names_) if n.startswith(f"{signal}_")]
                for signal in SIGNALS
            ]
        return self.signal_columns_

    def category_intent(self, query: str, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` likeliest categories of ``query`` with their probabilities."""
        self._check_fitted()
        p = self.intent_.predict(self.speller_.correct(tokenize(query)))
        best = np.argsort(-p, kind="stable")[:n]
        return [(self.intent_.labels_[i], float(p[i])) for i in best]

    # ------------------------------------------------------------------ persistence

    def _check_fitted(self) -> None:
        if not hasattr(self, "ranker_"):
            raise NotFittedError("the search engine is not built: call fit() or SearchEngine.load()")

    def save(self, path: Path) -> Path:
        self._check_fitted()
        path.mkdir(parents=True, exist_ok=True)
        (path / "lexical").mkdir(exist_ok=True)
        self.lexical_.save(path / "lexical")
        self.dense_.save(path)
        _savez(path / "intent.npz", self.intent_.arrays())
        similarity = {f"sim_{k}": v for k, v in sparse_to_arrays(self.behaviour_.similarity).items()}
        _savez(path / "behaviour.npz", {"popularity": self.behaviour_.popularity, **similarity})
        _savez(path / "catalog.npz", self.catalog_.arrays())
        (path / "spelling.json").write_text(json.dumps(self.speller_.to_json(), ensure_ascii=False))
        if self.ranker_ is not None:
            (path / "ranker.txt").write_text(self.ranker_.model_text_)
        manifest = {
            "format": FORMAT,
            "kind": "search",
            "shopfusion_version": __version__,
            "config": self.config.model_dump(mode="json"),
            "n_items": self.n_items_,
            "feature_names": list(self.feature_names_),
            "training": self.training_,
        }
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: Path) -> SearchEngine:
        manifest_file = path / "manifest.json"
        if not manifest_file.is_file():
            raise ArtifactError(
                f"{path} holds no search index (no manifest.json); build it with `shopfusion train`"
            )
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("kind") != "search" or manifest.get("format") != FORMAT:
            raise ArtifactError(
                f"{path} is a {manifest.get('kind')!r} artifact of format {manifest.get('format')!r}; "
                f"this version reads search format {FORMAT} (format 4 added ranker features): "
                "rebuild it with `shopfusion train`"
            )
        engine = cls(parse_search_config(manifest["config"]))
        try:
            engine.n_items_ = int(manifest["n_items"])
            engine.feature_names_ = tuple(manifest["feature_names"])
            engine.training_ = dict(manifest.get("training", {}))
            engine.lexical_ = LexicalIndex.load(path / "lexical")
            engine.dense_ = DenseIndex.load(path)
            with np.load(path / "intent.npz", allow_pickle=False) as data:
                engine.intent_ = CategoryIntent.from_arrays(dict(data))
            with np.load(path / "behaviour.npz", allow_pickle=False) as data:
                sim = {k[4:]: data[k] for k in data.files if k.startswith("sim_")}
                engine.behaviour_ = _Behaviour(np.asarray(data["popularity"]), sparse_from_arrays(sim))
            with np.load(path / "catalog.npz", allow_pickle=False) as data:
                engine.catalog_ = _Catalog.from_arrays(data)
            engine.speller_ = SpellCorrector.from_json(json.loads((path / "spelling.json").read_text()))
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(
                f"{path}: search index unreadable ({exc}); rebuild it with `shopfusion train`"
            ) from None
        engine.ranker_ = None
        if (path / "ranker.txt").is_file():
            ranker = LambdaMARTFusion()
            ranker.restore({"model_text": np.array((path / "ranker.txt").read_text())})
            engine.ranker_ = ranker
        # Prepared now (title index, encoder weights, the int8 catalog products: ~1 s on the
        # 12k-item catalog), so that the first query after a (re)load does not pay for them.
        engine._titles()
        engine.dense_.warm_up()
        return engine


def default_encoders(catalog: pd.DataFrame) -> tuple[str, ...]:
    """The dense encoders of an engine whose config names none: the multilingual USE alone, for
    every catalog. On English Amazon Beauty, adding MiniLM left the engine's own validation figures
    where they were (known-item MRR@10 .749 with it, .756 without; personal .238 / .245) and cost
    about 85 ms a query on the shared 2-core machine (benchmarks/RESULTS.md); name it in
    ``encoders`` to have it."""
    del catalog  # kept: the choice may depend on the catalog again
    return ("use-multilingual",)


def split_validation(
    queries: list[TrainingQuery], fraction: float, rng: np.random.Generator
) -> tuple[list[TrainingQuery], list[TrainingQuery]]:
    """Hold out ``fraction`` of the known-item and personal queries (each kind drawn apart); the
    others (category, past searches) all stay for training."""
    if fraction <= 0:
        return queries, []
    held = np.zeros(len(queries), dtype=bool)
    for kind in ("known-item", "personal"):
        members = np.flatnonzero([q.kind == kind for q in queries])
        n = round(fraction * len(members))
        if n and len(members) - n >= 1:
            held[rng.choice(members, size=n, replace=False)] = True
    return [q for q, h in zip(queries, held, strict=True) if not h], [
        q for q, h in zip(queries, held, strict=True) if h
    ]


def _target_rank(
    scores: FloatArray, positives: IntArray, history: IntArray, rng: np.random.Generator
) -> float:
    """1-based rank of the best positive among all items, history excluded, ties at random."""
    values = scores.astype(np.float64, copy=True)
    if len(history):
        values[history] = -np.inf
    wanted = positives[~np.isin(positives, history)]
    if not len(wanted):
        return float("inf")
    best = float(values[wanted].max())
    if not np.isfinite(best):
        return float("inf")
    above = int((values > best).sum())
    ties = int((values == best).sum())
    return float(above + 1 + rng.integers(0, ties))


def _top(values: FloatArray, n: int, allowed: npt.NDArray[np.bool_]) -> IntArray:
    pool = np.flatnonzero(allowed)
    if n <= 0 or not len(pool):
        return _EMPTY
    if len(pool) <= n:
        return pool.astype(np.int64)
    best = np.argpartition(-values[pool], n - 1)[:n]
    return pool[best].astype(np.int64)


_FALLBACK = {"lexical": 1.0, "dense": 1.0, "intent": 0.5, "prior": 0.1, "personal": 0.5, "item": 0.0}


def _fallback_parts(data: FusionInput) -> FloatArray:
    """Without a ranker (too little data to learn one): each signal group's main feature,
    standardised over the candidates and weighted by a fixed prior."""
    main = {
        "lexical": [
            n
            for n in data.feature_names
            if n.startswith("lexical_") and n in ("lexical_title", "lexical_ngram")
        ],
        "dense": [
            n for n in data.feature_names if n.startswith("dense_") and not n.endswith(("_rank", "_gap"))
        ],
        "intent": ["intent_match"],
        "prior": ["prior_popularity"],
        "personal": ["personal_i2i", "personal_content", "personal_labels"],
        "item": [],
    }
    out = np.zeros((len(data.features), len(SIGNALS)), dtype=np.float32)
    for j, signal in enumerate(SIGNALS):
        for name in main[signal]:
            column = np.nan_to_num(data.column(name))
            spread = float(column.std())
            if spread > 0:
                out[:, j] += _FALLBACK[signal] * (column - column.mean()) / spread
    return out


def _fallback(data: FusionInput) -> FloatArray:
    fused: FloatArray = _fallback_parts(data).sum(axis=1).astype(np.float32)
    return fused


def _column_medians(features: FloatArray) -> FloatArray:
    """Per column, the median of its known values (NaN when none is known): ``np.nanmedian``'s
    numbers from one sort, where ``np.nanmedian`` goes through masked arrays at several times the
    cost of a search's ranking."""
    ordered = np.sort(features, axis=0)  # NaN sorts last
    known = len(features) - np.isnan(ordered).sum(axis=0)
    columns = np.arange(features.shape[1])
    low = ordered[np.maximum(known - 1, 0) // 2, columns]
    high = ordered[np.maximum(known, 1) // 2 - (known == 0), columns]
    medians: FloatArray = ((low + high) / np.float32(2)).astype(np.float32)
    medians[known == 0] = np.nan
    return medians


def _savez(path: Path, arrays: dict[str, Any]) -> None:
    np.savez(path, **arrays)


def _labels(category: str, attributes: Any) -> list[str]:
    """Intent labels of an item: its category path; without one, the catalog's attribute ids
    (benchmark catalogs give only anonymous brand/category ids)."""
    if category:
        return [category]
    ids = str(attributes_of(attributes).get("attribute_ids", "")).split()
    return [f"attribute:{i}" for i in ids] or ["(none)"]


def _category_names(category: str, attributes: Any) -> list[str]:
    """What a shopper types for the item's category: the path's leaf and its translation."""
    names = [category.split(" > ")[-1]] if category else []
    translated = attributes_of(attributes).get("category_zh")
    if isinstance(translated, str) and translated:
        names.append(translated.split(" > ")[-1])
    return names
