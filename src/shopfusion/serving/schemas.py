"""Request and response bodies of the HTTP API (separate from the domain types they carry)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from shopfusion.data.schema import Event, EventType

UserId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\r\n\t]+$")]
ItemId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\r\n\t]+$")]


class Item(BaseModel):
    item_id: str
    title: str
    category: str
    brand: str
    price: float | None
    currency: str
    in_stock: bool
    language: str
    image: str
    score: float | None = None


class Reason(BaseModel):
    source: str
    rank: int | None = Field(description="rank this signal gave the item; null: it did not propose it")
    contribution: float = Field(description="fused score with this signal minus without it")
    share: float = Field(description="share of the positive contributions, 0..1")
    reason: str


class ItemList(BaseModel):
    items: list[Item]
    model_version: str
    cached: bool = False


class FacetCount(BaseModel):
    value: str
    count: int


class SearchResponse(ItemList):
    query: str
    corrected_query: str | None = None
    facets: dict[str, list[FacetCount]] = Field(default_factory=dict)
    signals: list[dict[str, float]] = Field(
        default_factory=list, description="per item, each signal's part (only with explain=true)"
    )


class ExplainResponse(BaseModel):
    item: Item
    rank: int | None = Field(description="the item's rank among the model's candidates for this shopper")
    summary: str
    reasons: list[Reason]
    history_length: int
    model_version: str


class EventIn(BaseModel):
    """One shopper action; ``timestamp`` defaults to the time of receipt."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    item_id: ItemId | None = None
    type: EventType = EventType.CLICK
    timestamp: datetime | None = None
    query: str = Field(default="", max_length=500)
    position: int | None = Field(default=None, ge=0, le=10_000)
    session_id: str = Field(default="", max_length=256)
    context: dict[str, Annotated[str, Field(max_length=256)]] = Field(default_factory=dict, max_length=20)

    def to_event(self) -> Event:
        data: dict[str, Any] = self.model_dump()
        data["timestamp"] = self.timestamp or datetime.now(UTC)
        return Event.model_validate(data)


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


class EventsAccepted(BaseModel):
    accepted: int
    last_sequence: int


class UserErased(BaseModel):
    user_id: str
    events_deleted: int


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact: str | None = Field(
        default=None, max_length=4096, description="default: reload the current path"
    )


class ReloadResponse(BaseModel):
    model_version: str
    artifact: str


class Health(BaseModel):
    status: str
    model_version: str | None = None
    search: bool = False
