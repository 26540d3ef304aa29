"""The two retrieval indexes of search: lexical (bm25s, one BM25 index per field) and dense (one
matrix of item vectors per pretrained encoder). Both score *every* item for a query — on a catalog
of tens of thousands of items that is a sparse column sum or a matrix-vector product, about a
millisecond — so candidate generation, features and the full-ranking benchmark share one code path.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopfusion.encoders.cache import EmbeddingCache, cached_encode
from shopfusion.encoders.text import TEXT_ENCODERS, LazyModel, TextEncoder, require, text_encoder
from shopfusion.errors import ArtifactError, NotFittedError
from shopfusion.search.query import char_ngrams, tokenize, word_bigrams

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
def search_encoder(name: str) -> TextEncoder:
    """The encoder ``name`` on one thread: a search encodes one short query at a time, where a
    second thread only adds synchronisation (and, on a busy machine, waits for a core)."""
    text_encoder(name)  # validates the name with the shared registry's error message
    encoder = TEXT_ENCODERS[name]()
    if isinstance(encoder, LazyModel):
        encoder.threads = 1
    return encoder


#: Query vectors kept per process (about 2 KB each for a 512-dimensional encoder).
QUERY_CACHE_SIZE = 4096


@lru_cache(maxsize=QUERY_CACHE_SIZE)
def query_vector(encoder: str, query: str) -> FloatArray:
    """``query`` encoded by ``encoder``, read-only: the array is shared by every later hit."""
    vector: FloatArray = search_encoder(encoder).encode([query])[0]
    vector.setflags(write=False)
    return vector


@dataclass
class DenseIndex:
    """L2-normalised item vectors per encoder; a query's cosine with every item is one mat-vec."""

    encoders: tuple[str, ...]
    vectors: dict[str, FloatArray]

    @classmethod
    def build(
        cls, encoders: Sequence[str], texts: Sequence[str], cache: EmbeddingCache | None = None
    ) -> DenseIndex:
        vectors = {name: cached_encode(search_encoder(name), texts, cache) for name in encoders}
        return cls(tuple(encoders), vectors)

    def encode_query(self, query: str) -> dict[str, FloatArray]:
        """One query's vector per encoder; repeated queries come from a bounded cache (encoding is
        the costliest step of a search that does not depend on the shopper)."""
        return {name: query_vector(name, query) for name in self.encoders}

    def warm_up(self) -> None:
        """Load every encoder's model (lazy otherwise: the first query would wait for it)."""
        for name in self.encoders:
            search_encoder(name).encode(["warm up"])

    def encode_queries(self, queries: Sequence[str]) -> dict[str, FloatArray]:
        """``(len(queries), dim)`` per encoder, batched (training encodes thousands at once)."""
        return {name: search_encoder(name).encode(list(queries)) for name in self.encoders}

    def similarities(self, query_vectors: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
        return {name: self.vectors[name] @ query_vectors[name] for name in self.encoders}

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
