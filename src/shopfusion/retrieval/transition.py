"""Sequential item-to-item: what shoppers took *next* after the items in the request's recent history.

A first-order Markov view of the event stream: ``T[i, j]`` counts how often item
``j`` followed item ``i`` within ``window`` steps (closer steps weigh more). A
request scores items by the rows of its last items, the most recent weighing most.
It captures order (refill after purchase, next part of a routine) that symmetric
co-occurrence cannot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shopfusion.data.interactions import FloatArray, Histories
from shopfusion.retrieval.base import Retriever, TrainData, sparse_from_arrays, sparse_to_arrays
from shopfusion.retrieval.sparse_product import weighted_rows


class TransitionRetriever(Retriever):
    """``score(request) = Σ_j w_j · T̂[j, ·]`` with ``T̂`` row-normalised ``(T + T_back·backward)``.

    ``backward`` > 0 also counts the reverse direction at that weight (sparse data often
    has too few forward pairs); ``normalize`` divides by ``count(i) ** normalize``.
    """

    name: ClassVar[str] = "transition"
    search_space: ClassVar[tuple[Mapping[str, Any], ...]] = tuple(
        {"window": w, "recency_half_life": h} for w in (1, 3) for h in (1.0, 3.0)
    )

    def __init__(
        self,
        window: int = 3,
        recency_half_life: float | None = 1.0,
        backward: float = 0.3,
        normalize: float = 0.5,
    ) -> None:
        self.window = window
        self.recency_half_life = recency_half_life
        self.backward = backward
        self.normalize = normalize

    def _fit(self, data: TrainData) -> None:
        h = data.histories
        n = h.n_items
        sources: list[npt.NDArray[np.int64]] = []
        targets: list[npt.NDArray[np.int64]] = []
        weights: list[npt.NDArray[np.float32]] = []
        starts, ends = h.indptr[:-1], h.indptr[1:]
        for step in range(1, self.window + 1):
            # All (position, position + step) pairs inside one row, vectorised over rows.
            positions = np.arange(len(h.items))
            row_end = np.repeat(ends, ends - starts)
            ok = positions + step < row_end
            src, dst = h.items[positions[ok]], h.items[positions[ok] + step]
            sources.append(src)
            targets.append(dst)
            weights.append(np.full(len(src), 1.0 / step, dtype=np.float32))
        src = np.concatenate(sources)
        dst = np.concatenate(targets)
        w = np.concatenate(weights)
        forward = sp.csr_matrix((w, (src, dst)), shape=(n, n), dtype=np.float32)
        matrix = forward + self.backward * forward.T.tocsr()
        matrix.setdiag(0)
        matrix.eliminate_zeros()
        counts = np.asarray(h.to_csr().sum(axis=0)).ravel()
        scale = 1.0 / np.power(np.maximum(counts, 1.0), self.normalize).astype(np.float32)
        self.transitions_ = (sp.diags(scale) @ matrix).tocsr().astype(np.float32)

    def _score(self, requests: Histories) -> FloatArray:
        return weighted_rows(requests.weights(recency_half_life=self.recency_half_life), self.transitions_)

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return sparse_to_arrays(self.transitions_)

    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.transitions_ = sparse_from_arrays(arrays)
