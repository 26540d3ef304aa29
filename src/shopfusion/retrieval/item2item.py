"""Item-to-item collaborative filtering: cosine similarity of co-occurrence, recency-weighted history.

Cheap and strong on sparse e-commerce data: on Amazon Beauty it beats ALS and
SASRec as published (see benchmarks/RESULTS.md).
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


class ItemToItemRetriever(Retriever):
    """``score(request) = Σ_j w_j · cos(j, ·)`` over the request's history items ``j``.

    ``w_j = 0.5 ** (positions from the end / recency_half_life)``: the last item weighs 1.
    ``cos`` is the co-occurrence cosine over training users, ``|U_i ∩ U_j| / sqrt(|U_i| |U_j| )``,
    kept for the ``neighbours`` most similar items of each item (memory stays O(items · neighbours)).
    """

    name: ClassVar[str] = "item2item"
    search_space: ClassVar[tuple[Mapping[str, Any], ...]] = tuple(
        {"recency_half_life": h} for h in (1.0, 2.0, 4.0, None)
    )

    def __init__(self, recency_half_life: float | None = 2.0, neighbours: int = 200) -> None:
        self.recency_half_life = recency_half_life
        self.neighbours = neighbours

    def _fit(self, data: TrainData) -> None:
        users_items = data.histories.to_csr()
        counts = np.asarray(users_items.sum(axis=0)).ravel()
        cooc = (users_items.T @ users_items).tocsr().astype(np.float32)
        cooc.setdiag(0)
        cooc.eliminate_zeros()
        norm = 1.0 / np.sqrt(np.maximum(counts, 1.0)).astype(np.float32)
        similarity = sp.diags(norm) @ cooc @ sp.diags(norm)
        self.similarity_ = _keep_top_per_row(similarity.tocsr(), self.neighbours)

    def _score(self, requests: Histories) -> FloatArray:
        return weighted_rows(requests.weights(recency_half_life=self.recency_half_life), self.similarity_)

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return sparse_to_arrays(self.similarity_)

    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.similarity_ = sparse_from_arrays(arrays)


def _keep_top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row (ties: lower column index first)."""
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    keep = np.zeros(len(data), dtype=bool)
    for row in range(matrix.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        if end - start <= k:
            keep[start:end] = True
        else:
            order = np.lexsort((indices[start:end], -data[start:end]))[:k]
            keep[start + order] = True
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(indptr))[keep]
    return sp.csr_matrix((data[keep], (rows, indices[keep])), shape=matrix.shape, dtype=np.float32)
