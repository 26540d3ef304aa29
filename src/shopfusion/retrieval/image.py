"""Visual candidates: items whose product photo looks like those the shopper viewed recently.

Each item's ``image`` (a local file path) is embedded with EfficientNet-Lite0
(:mod:`shopfusion.encoders.image`); scoring is the same recency-weighted profile as
:class:`~shopfusion.retrieval.content.ContentRetriever`. Items without a readable local image get
a zero vector (score 0); how many is logged as a warning and kept as ``missing_images_``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from shopfusion.data.interactions import FloatArray
from shopfusion.encoders.cache import EmbeddingCache
from shopfusion.encoders.image import image_embeddings
from shopfusion.retrieval.content import EmbeddingRetriever

logger = logging.getLogger(__name__)


class ImageRetriever(EmbeddingRetriever):
    """Pooled EfficientNet-Lite0 features of each item's image; ``image_root`` resolves relative paths."""

    name: ClassVar[str] = "image"

    def __init__(
        self,
        scoring: str = "profile",
        recency_half_life: float | None = 1.0,
        last_item_weight: float = 0.0,
        power: float = 3.0,
        neighbours: int = 200,
        image_root: str | None = None,
        batch_size: int = 32,
        cache: bool = True,
    ) -> None:
        self.scoring = scoring
        self.recency_half_life = recency_half_life
        self.last_item_weight = last_item_weight
        self.power = power
        self.neighbours = neighbours
        self.image_root = image_root
        self.batch_size = batch_size
        self.cache = cache

    def _embed(self, catalog: pd.DataFrame) -> FloatArray:
        values: list[Any] = catalog["image"].tolist() if "image" in catalog.columns else [None] * len(catalog)
        vectors, missing = image_embeddings(
            values,
            cache=EmbeddingCache() if self.cache else None,
            root=None if self.image_root is None else Path(self.image_root).expanduser(),
            batch_size=self.batch_size,
        )
        self.missing_images_ = missing
        if missing:
            logger.warning(
                "image: %d of %d items have no readable local image and score 0 here "
                "(empty value, URL, missing or undecodable file)",
                missing,
                len(values),
            )
        return vectors
