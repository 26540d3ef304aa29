"""The two retrieval indexes of search: lexical (bm25s, one BM25 index per field) and dense (one
matrix of item vectors per pretrained encoder). Both score *every* item for a query — on a catalog
of tens of thousands of items that is a sparse column sum or a matrix-vector product, about a
millisecond — so candidate generation, features and the full-ranking benchmark share one code path.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopfusion.encoders.cache import EmbeddingCache, cached_encode
from shopfusion.encoders.text import (
    TEXT_ENCODERS,
    LazyModel,
    MultilingualEncoder,
    TextEncoder,
    require,
    text_encoder,
)
from shopfusion.errors import ArtifactError, NotFittedError
from shopfusion.search.query import char_ngrams, tokenize, word_bigrams

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

#: Catalog fields indexed for BM25, plus ``ngram``: character trigrams of title and brand words,
#: which still match when a query word has a typo, and ``bigram``: adjacent title word pairs, which
#: match when the query keeps the title's word order (a shopper quoting a product name).
FIELDS = ("title", "brand", "category", "description", "ngram", "bigram")


def attributes_of(raw: Any) -> dict[str, Any]:
    """The catalog's ``attributes`` JSON object of one item (``{}`` when absent or malformed)."""
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def field_texts(catalog: pd.DataFrame) -> dict[str, list[str]]:
    """Per field, one text per item. Brand and category also carry the translated names that the
    catalog keeps in ``attributes`` (``brand_zh``, ``category_zh``), so either language matches."""
    n = len(catalog)
    attrs = [attributes_of(a) for a in catalog["attributes"]] if "attributes" in catalog else [{}] * n

    def column(name: str) -> list[str]:
        return [_cell(v) for v in catalog[name]] if name in catalog else [""] * n

    def with_translations(name: str) -> list[str]:
        base = column(name)
        return [
            " ".join([base[i], *(str(v) for k, v in attrs[i].items() if k.startswith(f"{name}_"))]).strip()
            for i in range(n)
        ]

    return {
        "title": column("title"),
        "brand": with_translations("brand"),
        "category": with_translations("category"),
        "description": column("description"),
    }


def _bm25() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = require("bm25s", "bm25s", extra="search")
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return module


class LexicalIndex:
    """One bm25s index per non-empty field. ``token_scores`` gives each query token's BM25 score
    per item (BM25 is a sum over query tokens), from which field totals and coverage follow."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b

    def fit(self, texts: Mapping[str, Sequence[str]]) -> LexicalIndex:
        bm25s = _bm25()
        self.indexes_: dict[str, Any] = {}
        tokens = {name: [tokenize(t) for t in values] for name, values in texts.items()}
        title_brand = [t + b for t, b in zip(tokens["title"], tokens["brand"], strict=True)]
        tokens["ngram"] = [char_ngrams(t) for t in title_brand]
        tokens["bigram"] = [word_bigrams(t) for t in tokens["title"]]
        self.n_items_ = len(tokens["title"])
        for name in FIELDS:
            docs = tokens.get(name, [])
            if not any(docs):
                continue
            index = bm25s.BM25(k1=self.k1, b=self.b)
            index.index([d or [""] for d in docs], show_progress=False)
            self.indexes_[name] = index
        self.title_tokens_ = tokens["title"]
        return self

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self._indexes())

    def _indexes(self) -> dict[str, Any]:
        if not hasattr(self, "indexes_"):
            raise NotFittedError("lexical index is not built: build the search engine first")
        indexes: dict[str, Any] = self.indexes_
        return indexes

    def token_scores(self, field: str, tokens: Sequence[str]) -> FloatArray:
        """``(len(tokens), n_items)``: BM25 of each token alone; zero rows for unknown tokens."""
        out = np.zeros((len(tokens), self.n_items_), dtype=np.float32)
        index = self._indexes().get(field)
        if index is None:
            return out
        for row, token in enumerate(tokens):
            token_id = index.vocab_dict.get(token)
            if token_id is not None and token:
                out[row] = index.get_scores_from_ids([token_id])
        return out

    def ngram_scores(self, tokens: Sequence[str]) -> FloatArray:
        """BM25 of the query's character n-grams against the ``ngram`` field (zeros without one)."""
        index = self._indexes().get("ngram")
        if index is None:
            return np.zeros(self.n_items_, dtype=np.float32)
        ids = [i for i in (index.vocab_dict.get(g) for g in char_ngrams(tokens)) if i is not None]
        if not ids:
            return np.zeros(self.n_items_, dtype=np.float32)
        return np.asarray(index.get_scores_from_ids(ids), dtype=np.float32)

    def save(self, path: Path) -> None:
        for name, index in self._indexes().items():
            index.save(str(path / name), show_progress=False)
        (path / "lexical.json").write_text(
            json.dumps({"k1": self.k1, "b": self.b, "n_items": self.n_items_, "fields": list(self.indexes_)})
        )

    @classmethod
    def load(cls, path: Path) -> LexicalIndex:
        bm25s = _bm25()
        meta = json.loads((path / "lexical.json").read_text())
        index = cls(meta["k1"], meta["b"])
        index.n_items_ = int(meta["n_items"])
        index.indexes_ = {
            name: bm25s.BM25.load(str(path / name), show_progress=False, allow_pickle=False)
            for name in meta["fields"]
        }
        return index


@cache
def search_encoder(name: str, queries: bool = False) -> TextEncoder:
    """The encoder ``name`` on one thread: a search encodes one short query at a time, where a
    second thread only adds synchronisation (and, on a busy machine, waits for a core).

    ``queries``: the instance that encodes queries (training's, the benchmark's and the
    service's alike), whose weights may be float16 (:class:`MultilingualEncoder`'s ``half``); the
    catalog's vectors come from the float32 one."""
    text_encoder(name)  # validates the name with the shared registry's error message
    encoder = TEXT_ENCODERS[name]()
    if isinstance(encoder, LazyModel):
        encoder.threads = 1
    if queries and isinstance(encoder, MultilingualEncoder):
        encoder.half = True
    return encoder


#: Query vectors kept per process (about 2 KB each for a 512-dimensional encoder).
QUERY_CACHE_SIZE = 4096


class QueryVectors:
    """Query vectors by (encoder, query), the ``size`` most recently used kept: a repeated query is
    not encoded again (encoding is the costliest step of a search that does not depend on the
    shopper). The queries not held are encoded together in one call (a batch of short queries
    costs the encoder little more than one: it streams its weights once per call)."""

    def __init__(self, size: int = QUERY_CACHE_SIZE) -> None:
        self.size = size
        self.hits = self.misses = 0
        self._vectors: OrderedDict[tuple[str, str], FloatArray] = OrderedDict()
        self._lock = threading.Lock()  # the service's search threads and a reload may share it

    def get(self, encoder: str, queries: Sequence[str]) -> FloatArray:
        """``(len(queries), dim)``, row ``i`` the vector of ``queries[i]``."""
        found: dict[int, FloatArray] = {}
        with self._lock:
            for i, query in enumerate(queries):
                vector = self._vectors.get((encoder, query))
                if vector is not None:
                    self._vectors.move_to_end((encoder, query))
                    found[i] = vector
            self.hits += len(found)
        missing = list(dict.fromkeys(q for i, q in enumerate(queries) if i not in found))
        fresh: dict[str, FloatArray] = {}
        if missing:
            fresh = dict(zip(missing, search_encoder(encoder, queries=True).encode(missing), strict=True))
        with self._lock:
            self.misses += len(missing)
            for query, vector in fresh.items():
                vector.setflags(write=False)  # shared by every later hit
                self._vectors[(encoder, query)] = vector
                self._vectors.move_to_end((encoder, query))
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return np.stack([found[i] if i in found else fresh[q] for i, q in enumerate(queries)])

    @property
    def hit_rate(self) -> float:
        """Hits over lookups since the start or the last :meth:`clear` (0 before any)."""
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()
            self.hits = self.misses = 0


#: The process's query vectors (every engine of the process shares them: same encoder, same vector).
query_vectors = QueryVectors()


@dataclass
class DenseIndex:
    """L2-normalised item vectors per encoder; a query's cosine with every item is one mat-vec."""

    encoders: tuple[str, ...]
    vectors: dict[str, FloatArray]
    #: Per encoder, the approximate catalog product in int8 (:class:`Int8Product`), made by
    #: :meth:`warm_up` (a loaded index) or on first use (a new build); ``None`` where PyTorch's
    #: fbgemm is missing (numpy's exact float32 product then).
    _int8: dict[str, Int8Product | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def build(
        cls, encoders: Sequence[str], texts: Sequence[str], cache: EmbeddingCache | None = None
    ) -> DenseIndex:
        vectors = {name: cached_encode(search_encoder(name), texts, cache) for name in encoders}
        return cls(tuple(encoders), vectors)

    def encode_queries_cached(self, queries: Sequence[str]) -> dict[str, FloatArray]:
        """``(len(queries), dim)`` per encoder, through the process's bounded cache of query vectors
        (:data:`query_vectors`): what the service asks, a batch of searches at a time."""
        return {name: query_vectors.get(name, queries) for name in self.encoders}

    def warm_up(self) -> None:
        """Load every encoder's model and pack every int8 catalog product (lazy otherwise: the
        first query after a load would wait for them, ~0.2 s a product, seconds with PyTorch's
        import)."""
        for name in self.encoders:
            search_encoder(name, queries=True).encode(["warm up"])
            self._int8_product(name)

    def encode_queries(self, queries: Sequence[str]) -> dict[str, FloatArray]:
        """``(len(queries), dim)`` per encoder, batched (training encodes thousands at once)."""
        return {name: search_encoder(name, queries=True).encode(list(queries)) for name in self.encoders}

    def similarities(self, vectors: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
        """Per encoder, ``(len(queries), n_items)``: each query's cosine with every item, from
        ``vectors`` of shape ``(len(queries), dim)``; approximate (int8, within a few thousandths) where
        fbgemm is installed, so rescore the items that matter with :meth:`cosines`. One product
        reads the item matrix once for all the queries, where it is memory bound."""
        return {name: self._product(name, vectors[name]) for name in self.encoders}

    def cosines(self, name: str, query: FloatArray, rows: npt.NDArray[np.int64] | None = None) -> FloatArray:
        """The exact (float32) cosine of one query vector with the items ``rows`` (all by default)."""
        items = self.vectors[name] if rows is None else self.vectors[name][rows]
        exact: FloatArray = items @ np.asarray(query, dtype=np.float32)
        return exact

    def _product(self, name: str, queries: FloatArray) -> FloatArray:
        approximate = self._int8_product(name)
        return approximate(queries) if approximate is not None else _products(self.vectors[name], queries)

    def _int8_product(self, name: str) -> Int8Product | None:
        if name not in self._int8:
            self._int8[name] = Int8Product.of(self.vectors[name])
        return self._int8[name]

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {f"vectors_{n}": v for n, v in self.vectors.items()}
        np.savez(path / "dense.npz", **arrays)
        (path / "dense.json").write_text(json.dumps({"encoders": list(self.encoders)}))

    @classmethod
    def load(cls, path: Path) -> DenseIndex:
        try:
            encoders = tuple(json.loads((path / "dense.json").read_text())["encoders"])
            with np.load(path / "dense.npz", allow_pickle=False) as data:
                vectors = {n: np.asarray(data[f"vectors_{n}"], dtype=np.float32) for n in encoders}
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: dense index unreadable ({exc}); rebuild the search index") from None
        return cls(encoders, vectors)


def _products(items: FloatArray, queries: FloatArray) -> FloatArray:
    """``queries @ items.T`` as ``(len(queries), len(items))``, reading ``items`` once: ``items @
    queries.T`` keeps BLAS streaming the big row-major matrix (the transposed product made
    OpenBLAS copy all of it first, RESULTS.md, session 8), and one query is a matrix-vector
    product."""
    if len(queries) == 1:
        single: FloatArray = (items @ queries[0])[None, :]
        return single
    many: FloatArray = np.ascontiguousarray((items @ queries.T).T)
    return many


class Int8Product:
    """Approximate ``queries @ items.T`` with the item matrix held in int8 (one scale per item) by
    PyTorch's fbgemm, which quantizes each query on the fly and returns float32. A search's catalog
    scan is memory bound, and this machine's caches hold ~8 MB (a float32 mat-vec ran at ~48 GB/s
    up to 8 MB of matrix, ~10 GB/s from 12 MB on; RESULTS.md, session 13): 12k x 512 items are
    6 MB in int8 against 12 MB in float16. Each cosine is within ~3e-3 of the float32 one on the
    Beauty catalog's USE vectors (the query is quantized too, to 7 bits); the
    engine rescores its candidates exactly (:meth:`DenseIndex.cosines`), so the ranker's dense
    features are float32 cosines and only the choice of the dense candidates, and the rank among
    the other items, see the approximation."""

    def __init__(self, packed: Any) -> None:
        self._packed = packed

    @classmethod
    def of(cls, items: FloatArray) -> Int8Product | None:
        """``None`` when PyTorch, or its fbgemm backend (x86 builds), is not installed."""
        try:
            import torch
        except ImportError:
            return None
        if "fbgemm" not in torch.backends.quantized.supported_engines:
            return None
        rows = np.ascontiguousarray(items, dtype=np.float32)
        scales = np.maximum(np.abs(rows).max(axis=1, initial=0.0), 1e-12).astype(np.float64) / 127.0
        try:
            with warnings.catch_warnings():
                # PyTorch 2.13 marks quantized tensors deprecated; a release without them lands
                # in the except below, and the product is numpy's float32 one again.
                warnings.simplefilter("ignore")
                quantized = torch.quantize_per_channel(
                    torch.from_numpy(rows),
                    torch.from_numpy(scales),
                    torch.zeros(len(rows), dtype=torch.long),
                    0,
                    torch.qint8,
                )
                return cls(torch.ops.quantized.linear_prepack(quantized, None))
        except (AttributeError, RuntimeError) as exc:
            logger.warning("int8 catalog product unavailable (%s): numpy's float32 product", exc)
            return None

    def __call__(self, queries: FloatArray) -> FloatArray:
        import torch

        from shopfusion.retrieval._torch_utils import torch_threads

        # One thread: a search's product is too small to share, and the other core is serving.
        # reduce_range: 7-bit queries, so fbgemm's 16-bit pair sums cannot saturate on AVX2.
        with torch.inference_mode(), torch_threads(1):
            out = torch.ops.quantized.linear_dynamic(
                torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)), self._packed, True
            )
        scores: FloatArray = out.numpy()
        return scores
