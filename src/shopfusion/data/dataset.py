"""A catalog plus its event log: what ingestion produces and training reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from shopfusion.data.idmap import IdMap
from shopfusion.data.interactions import Interactions

#: Catalog columns, in order; row ``i`` of the catalog frame describes item index ``i``.
CATALOG_COLUMNS = (
    "item_id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "currency",
    "stock",
    "image",
    "attributes",
    "language",
)


def empty_catalog(item_ids: list[str]) -> pd.DataFrame:
    """A catalog frame with only ids (for event streams that carry no item text)."""
    n = len(item_ids)
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "title": [""] * n,
            "description": [""] * n,
            "category": [""] * n,
            "brand": [""] * n,
            "price": [float("nan")] * n,
            "currency": [""] * n,
            "stock": pd.array([None] * n, dtype="Int64"),
            "image": [""] * n,
            "attributes": ["{}"] * n,
            "language": [""] * n,
        }
    )


@dataclass
class Dataset:
    """``catalog`` row ``i`` is item index ``i`` of ``interactions.item_map``.

    ``category`` is stored as the path joined with " > "; ``attributes`` as a JSON object string.
    """

    name: str
    catalog: pd.DataFrame
    interactions: Interactions
    metadata: dict[str, str] = field(default_factory=dict)
    #: Searches that led to an item (click, cart or purchase): ``(query, item index)``, oldest first.
    #: Search learns query intent and ranking from them; empty for logs without queries.
    search_clicks: list[tuple[str, int]] = field(default_factory=list)

    @property
    def item_map(self) -> IdMap:
        return self.interactions.item_map

    @property
    def user_map(self) -> IdMap:
        return self.interactions.user_map

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    @property
    def n_users(self) -> int:
        return len(self.user_map)
