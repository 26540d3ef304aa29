"""Features of (request, candidate) pairs — one code path for training and serving.

Per source: its raw score, its rank (``n + 1`` when it did not propose the item) and
the score relative to the source's best candidate for the request. Shared: how many
sources agree, item popularity (all-time and recent), the request's history length,
and catalog matches with the request's last item and whole history (category path,
brand, attribute tokens), plus price relative to the history's prices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from shopfusion.data.interactions import FloatArray, Histories, IntArray
from shopfusion.ranking.candidates import CandidateBatch

RECENT_FRACTION = 0.2


@dataclass
class ItemStatistics:
    """What the features know about items, learned from the training part only."""

    log_popularity: FloatArray
    log_recent_popularity: FloatArray
    tokens: sp.csr_matrix  # items x catalog tokens, rows L2-normalised
    price: FloatArray  # NaN where unknown

    @classmethod
    def fit(cls, histories: Histories, catalog: pd.DataFrame | None) -> ItemStatistics:
        n = histories.n_items
        counts = np.bincount(histories.items, minlength=n).astype(np.float32)
        # "Recent": the last part of every user's history, a time-free proxy for what is trending.
        lengths = histories.lengths()
        from_end = np.repeat(histories.indptr[1:], lengths) - np.arange(len(histories.items))
        recent = from_end <= np.maximum(1, np.repeat(np.ceil(lengths * RECENT_FRACTION), lengths))
        recent_counts = np.bincount(histories.items[recent], minlength=n).astype(np.float32)
        tokens, price = _catalog_features(catalog, n)
        return cls(np.log1p(counts), np.log1p(recent_counts), tokens, price)

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        t = self.tokens
        return {
            "log_popularity": self.log_popularity,
            "log_recent_popularity": self.log_recent_popularity,
            "tokens_indptr": t.indptr,
            "tokens_indices": t.indices,
            "tokens_data": t.data,
            "tokens_shape": np.array(t.shape),
            "price": self.price,
        }

    @classmethod
    def from_arrays(cls, a: dict[str, npt.NDArray[np.generic]]) -> ItemStatistics:
        shape = tuple(int(x) for x in a["tokens_shape"])
        tokens = sp.csr_matrix((a["tokens_data"], a["tokens_indices"], a["tokens_indptr"]), shape=shape)
        return cls(
            np.asarray(a["log_popularity"], np.float32),
            np.asarray(a["log_recent_popularity"], np.float32),
            tokens,
            np.asarray(a["price"], np.float32),
        )


def feature_names(sources: tuple[str, ...]) -> list[str]:
    per_source = [f"{s}_{kind}" for s in sources for kind in ("score", "rank", "score_rel")]
    return [
        *per_source,
        "n_proposers",
        "best_rank",
        "item_log_popularity",
        "item_log_recent_popularity",
        "history_length",
        "token_match_last",
        "token_match_history",
        "price_ratio_history",
    ]


def build_features(batch: CandidateBatch, requests: Histories, stats: ItemStatistics) -> FloatArray:
    """``(n_candidates, len(feature_names(batch.sources)))`` float32; same for training and serving."""
    n_cand = len(batch)
    columns: list[FloatArray] = []
    best = _group_max(batch.source_scores, batch.group_ptr)
    for s in range(len(batch.sources)):
        scores = batch.source_scores[:, s]
        columns += [scores, batch.source_ranks[:, s], scores / np.maximum(np.abs(best[batch.row, s]), 1e-6)]
    proposed = batch.source_ranks <= batch.n_per_source
    lengths = requests.lengths().astype(np.float32)
    last_items = requests.last(1)
    columns += [
        proposed.sum(axis=1).astype(np.float32),
        batch.source_ranks.min(axis=1) if batch.sources else np.zeros(n_cand, np.float32),
        stats.log_popularity[batch.item],
        stats.log_recent_popularity[batch.item],
        lengths[batch.row],
        _token_match_last(batch, last_items, stats.tokens),
        _token_match_history(batch, requests, stats.tokens),
        _price_ratio(batch, requests, stats.price),
    ]
    return np.column_stack(columns).astype(np.float32) if n_cand else np.zeros((0, len(columns)), np.float32)


def _group_max(values: FloatArray, group_ptr: IntArray) -> FloatArray:
    """Row-wise maximum of each group's candidates, shape ``(n_groups, n_columns)``."""
    out = np.zeros((len(group_ptr) - 1, values.shape[1]), dtype=np.float32)
    nonempty = np.diff(group_ptr) > 0
    if values.shape[0] and values.shape[1]:
        out[nonempty] = np.maximum.reduceat(values, group_ptr[:-1][nonempty], axis=0)
    return out


def _token_match_last(batch: CandidateBatch, last_items: IntArray, tokens: sp.csr_matrix) -> FloatArray:
    last = last_items[batch.row]
    has_last = last >= 0
    out = np.zeros(len(batch), dtype=np.float32)
    if tokens.shape[1] == 0 or not has_last.any():
        return out
    a = tokens[batch.item[has_last]]
    b = tokens[last[has_last]]
    out[has_last] = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    return out


def _token_match_history(batch: CandidateBatch, requests: Histories, tokens: sp.csr_matrix) -> FloatArray:
    if tokens.shape[1] == 0 or len(batch) == 0:
        return np.zeros(len(batch), dtype=np.float32)
    profile = requests.to_csr(recency_half_life=3.0) @ tokens
    norms = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
    profile = sp.diags(1.0 / np.maximum(norms, 1e-9)) @ profile
    return (
        np.asarray(tokens[batch.item].multiply(profile.tocsr()[batch.row]).sum(axis=1))
        .ravel()
        .astype(np.float32)
    )


def _price_ratio(batch: CandidateBatch, requests: Histories, price: FloatArray) -> FloatArray:
    known = np.isfinite(price)
    if not known.any():
        return np.full(len(batch), np.nan, dtype=np.float32)
    weights = requests.to_csr()
    filled = np.where(known, price, 0.0).astype(np.float32)
    total = weights @ filled
    count = weights @ known.astype(np.float32)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return (price[batch.item] / mean[batch.row]).astype(np.float32)


def _catalog_features(catalog: pd.DataFrame | None, n_items: int) -> tuple[sp.csr_matrix, FloatArray]:
    price = np.full(n_items, np.nan, dtype=np.float32)
    if catalog is None or len(catalog) == 0:
        return sp.csr_matrix((n_items, 0), dtype=np.float32), price
    vocabulary: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for item, tokens in enumerate(_item_tokens(catalog)):
        for token in tokens:
            rows.append(item)
            cols.append(vocabulary.setdefault(token, len(vocabulary)))
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_items, len(vocabulary))
    )
    matrix.data[:] = 1.0  # a token counts once per item
    norms = np.sqrt(np.asarray(matrix.sum(axis=1)).ravel())
    matrix = (sp.diags(1.0 / np.maximum(norms, 1e-9)) @ matrix).tocsr().astype(np.float32)
    if "price" in catalog:
        price[: len(catalog)] = pd.to_numeric(catalog["price"], errors="coerce").to_numpy(np.float32)
    return matrix, price


def _item_tokens(catalog: pd.DataFrame) -> list[set[str]]:
    """Category path prefixes, brand and attribute values — what "the same kind of product" means."""
    out: list[set[str]] = []
    categories = catalog.get("category", pd.Series([""] * len(catalog)))
    brands = catalog.get("brand", pd.Series([""] * len(catalog)))
    attributes = catalog.get("attributes", pd.Series(["{}"] * len(catalog)))
    for category, brand, attrs in zip(categories, brands, attributes, strict=True):
        tokens: set[str] = set()
        parts = [p.strip() for p in str(category or "").split(">") if p.strip()]
        tokens.update("cat:" + " > ".join(parts[: i + 1]) for i in range(len(parts)))
        if brand:
            tokens.add(f"brand:{str(brand).lower()}")
        tokens.update(_attribute_tokens(attrs))
        out.append(tokens)
    return out


def _attribute_tokens(raw: object) -> set[str]:
    try:
        attrs = json.loads(raw) if isinstance(raw, str) and raw else {}
    except json.JSONDecodeError:
        return set()
    if not isinstance(attrs, dict):
        return set()
    # Identifiers unique to one product say nothing about similarity.
    return {
        f"attr:{key}={value.lower()}"
        for key, values in attrs.items()
        if key not in {"asin", "sku", "gtin", "ean", "upc"}
        for value in str(values).split()
    }
