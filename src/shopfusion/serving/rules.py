"""Business rules applied at serve time, after the model ranked: stock, boost/bury lists,
category/brand filters, near-duplicate removal and diversity (per-brand cap, MMR).

They work on item indices and a :class:`CatalogView` (the catalog as arrays, built once per
artifact), so a rule costs microseconds per list and never touches the model.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopfusion.data.idmap import IdMap
from shopfusion.data.interactions import FloatArray, IntArray
from shopfusion.serving.settings import RuleSettings

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class CatalogView:
    in_stock: npt.NDArray[np.bool_]
    brand: npt.NDArray[np.object_]
    category: npt.NDArray[np.object_]
    dedupe_key: npt.NDArray[np.object_]

    @classmethod
    def of(cls, catalog: pd.DataFrame, n_items: int) -> CatalogView:
        def column(name: str) -> npt.NDArray[np.object_]:
            values = catalog[name].fillna("").astype(str) if name in catalog else pd.Series([""] * n)
            out = np.full(n_items, "", dtype=object)
            out[:n] = values.to_numpy(dtype=object)[:n]
            return out

        n = min(len(catalog), n_items)
        # Unknown stock counts as available: a catalog without stock levels must still serve.
        stock = pd.to_numeric(catalog["stock"], errors="coerce") if "stock" in catalog else None
        in_stock = np.ones(n_items, dtype=bool)
        if stock is not None:
            in_stock[:n] = ~(stock.to_numpy(dtype=float)[:n] <= 0)
        brand, title = column("brand"), column("title")
        key = np.array(
            [f"{b.lower()}|{_normalise(t)}" for b, t in zip(brand, title, strict=True)], dtype=object
        )
        return cls(in_stock, brand, column("category"), key)


def _normalise(title: str) -> str:
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", title).lower()).strip()


@dataclass(frozen=True)
class ListFilters:
    """Per-request constraints: category path prefix and brands (case-insensitive)."""

    category: str | None = None
    brands: tuple[str, ...] = ()

    def mask(self, view: CatalogView, items: IntArray) -> npt.NDArray[np.bool_]:
        keep = np.ones(len(items), dtype=bool)
        if self.category:
            prefix = self.category.strip().lower()
            keep &= np.array([str(c).lower().startswith(prefix) for c in view.category[items]], dtype=bool)
        if self.brands:
            wanted = {b.strip().lower() for b in self.brands}
            keep &= np.array([str(b).lower() in wanted for b in view.brand[items]], dtype=bool)
        return keep


class RuleSet:
    """The configured rules, resolved against one artifact's id map and catalog."""

    def __init__(self, settings: RuleSettings, view: CatalogView, item_map: IdMap) -> None:
        self.settings = settings
        self.view = view
        self.boost = {i for i in item_map.to_indices(settings.boost, missing=-1).tolist() if i >= 0}
        self.bury = {i for i in item_map.to_indices(settings.bury, missing=-1).tolist() if i >= 0}

    def apply(
        self, items: IntArray, scores: FloatArray, k: int, filters: ListFilters | None = None
    ) -> tuple[IntArray, FloatArray]:
        """The best ``k`` of ``items`` (ranked best first, ``-1`` padding allowed) under the rules."""
        valid = items >= 0
        items, scores = items[valid], scores[valid]
        keep = np.ones(len(items), dtype=bool)
        if self.settings.in_stock_only:
            keep &= self.view.in_stock[items]
        if filters is not None:
            keep &= filters.mask(self.view, items)
        items, scores = items[keep], scores[keep]
        items, scores = self._boost_and_bury(items, scores)
        if self.settings.dedupe:
            _, first = np.unique(self.view.dedupe_key[items], return_index=True)
            order = np.sort(first)
            items, scores = items[order], scores[order]
        if self.settings.mmr_lambda < 1.0:
            items, scores = self._mmr(items, scores, k)
        if self.settings.max_per_brand > 0:
            items, scores = self._brand_cap(items, scores)
        return items[:k], scores[:k]

    def _boost_and_bury(self, items: IntArray, scores: FloatArray) -> tuple[IntArray, FloatArray]:
        if not (self.boost or self.bury):
            return items, scores
        tier = np.array([0 if i in self.boost else 2 if i in self.bury else 1 for i in items.tolist()])
        order = np.argsort(tier, kind="stable")
        return items[order], scores[order]

    def _brand_cap(self, items: IntArray, scores: FloatArray) -> tuple[IntArray, FloatArray]:
        seen: dict[str, int] = {}
        keep = np.zeros(len(items), dtype=bool)
        for pos, brand in enumerate(self.view.brand[items]):
            b = str(brand).lower()
            # Unbranded items are not one brand.
            if not b or seen.get(b, 0) < self.settings.max_per_brand:
                keep[pos] = True
                seen[b] = seen.get(b, 0) + 1
        return items[keep], scores[keep]

    def _mmr(self, items: IntArray, scores: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
        """Greedy maximal marginal relevance over the top few candidates; similarity is 1/2 for a
        shared leaf category plus 1/2 for a shared brand (cheap, and what shoppers see as "same")."""
        pool = min(len(items), 4 * k)
        if pool <= 1:
            return items, scores
        cat, brand = self.view.category[items[:pool]], self.view.brand[items[:pool]]
        sim = 0.5 * (cat[:, None] == cat[None, :]) + 0.5 * (
            (brand[:, None] == brand[None, :]) & (brand != "")
        )
        rel = scores[:pool].astype(np.float64)
        span = float(rel.max() - rel.min())
        rel = (rel - rel.min()) / span if span > 0 else np.ones(pool)
        lam = self.settings.mmr_lambda
        chosen: list[int] = [0]
        left = list(range(1, pool))
        while left and len(chosen) < min(k, pool):
            redundancy = sim[np.ix_(left, chosen)].max(axis=1)
            best = int(np.argmax(lam * rel[left] - (1 - lam) * redundancy))
            chosen.append(left.pop(best))
        order = np.array(chosen + left + list(range(pool, len(items))), dtype=np.int64)
        return items[order], scores[order]
