"""Most-popular items: the cold-start fallback and the floor every other source must beat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import FloatArray, Histories, IntArray
from shopfusion.retrieval.base import Retriever, TrainData
from shopfusion.retrieval.scores import SharedScores, SourceScores


class PopularityRetriever(Retriever):
    """Scores every item by how many distinct users interacted with it in training.

    ``recent_fraction`` > 0 counts only the last part of each user's history, which
    favours what is popular *now* when training histories are long.
    """

    name: ClassVar[str] = "popularity"
    search_space: ClassVar[tuple[Mapping[str, Any], ...]] = (
        {"recent_fraction": 0.0},
        {"recent_fraction": 0.5},
    )

    def __init__(self, recent_fraction: float = 0.0) -> None:
        self.recent_fraction = recent_fraction

    def _fit(self, data: TrainData) -> None:
        histories = data.histories
        if self.recent_fraction > 0:
            keep = np.ceil(histories.lengths() * (1 - self.recent_fraction)).astype(np.int64)
            histories = Histories.from_lists(
                [histories.row(i)[len(histories.row(i)) - k :] for i, k in enumerate(keep)], histories.n_items
            )
        matrix = histories.to_csr()
        counts = np.asarray(matrix.sum(axis=0)).ravel()
        # log1p keeps the order and puts the scores on a scale comparable to the other sources.
        self.item_scores_ = np.log1p(counts).astype(np.float32)
        self._order: IntArray | None = None

    def _score(self, requests: Histories) -> FloatArray:
        return self._score_compact(requests).dense()

    def _score_compact(self, requests: Histories) -> SourceScores:
        order = getattr(self, "_order", None)
        if order is None:
            order = self._order = SharedScores.order_of(self.item_scores_)  # once per fit or load
        return SharedScores(self.item_scores_, order, len(requests))

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"item_scores": self.item_scores_}

    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.item_scores_ = arrays["item_scores"]
        self._order = None
