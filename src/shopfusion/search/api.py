"""The contract between the search engine and its callers (CLI, HTTP service, benchmarks).

Item positions are the catalog's internal indices (``IdMap`` of the artifact); callers turn them into
external ids. Nothing here depends on how the engine is built, so the service can be tested with any
implementation of :class:`Searcher`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

#: Explains some items of a result: per item, each signal's contribution to its score.
Explainer = Callable[[IntArray], list[dict[str, float]]]


@dataclass(frozen=True)
class SearchFilters:
    """Hard filters applied before ranking; ``None`` means no constraint."""

    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None
    in_stock_only: bool = False


@dataclass(frozen=True)
class SearchRequest:
    """The arguments of one :meth:`Searcher.search`, for :meth:`Searcher.search_many`."""

    query: str
    k: int = 10
    history: IntArray | None = None
    filters: SearchFilters | None = None
    exclude_history: bool = False
    explain: bool = True


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int


@dataclass(frozen=True)
class SearchResult:
    """Top-k items, best first, with their final scores and the facet counts over all matches."""

    items: IntArray
    scores: FloatArray
    facets: dict[str, list[FacetValue]] = field(default_factory=dict)
    # Per-item contribution of each signal (lexical, dense, intent, prior, personal...) for explanations.
    explanations: list[dict[str, float]] = field(default_factory=list)
    corrected_query: str | None = None
    # Explains any of ``items`` on demand, with the numbers ``explanations`` would hold for them: a
    # caller that keeps only some of the items (business rules) pays only for those. It holds the
    # query's signals (a few arrays of one number per item) for as long as the result lives.
    explainer: Explainer | None = field(default=None, repr=False, compare=False)

    def explain(self, items: IntArray) -> list[dict[str, float]]:
        """Each signal's contribution for each of ``items`` (some of :attr:`items`, any order):
        from :attr:`explanations` when they were computed, else from :attr:`explainer`; empty
        dictionaries when the searcher explains nothing."""
        if self.explanations:
            known = dict(zip(self.items.tolist(), self.explanations, strict=False))
            return [known.get(int(i), {}) for i in items]
        if self.explainer is not None and len(items):
            return self.explainer(np.asarray(items, dtype=np.int64))
        return [{} for _ in items]


class Searcher(Protocol):
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
        """Rank the catalog for ``query``; ``history`` (item indices, oldest first) personalises the
        ranking and, with ``exclude_history`` (the benchmark protocol), is left out of the result.
        ``explain=False`` may leave ``explanations`` empty: callers then explain only the items
        they keep, with :meth:`SearchResult.explain`."""
        ...

    def search_many(self, requests: Sequence[SearchRequest]) -> list[SearchResult]:
        """:meth:`search` for each request, in order, each result as :meth:`search` would give it
        alone (an implementation may share work between them: the service passes the searches
        that queued while one ran)."""
        ...
