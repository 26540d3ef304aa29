"""Typed records for what a shop sends us: products and events.

These are the edge types (external ids, raw values). Readers validate each row
into one of these, then the data layer stores columns with dense indices.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shopfusion.data.cleaning import clean_text

ExternalId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\r\n\t]+$")]


class EventType(StrEnum):
    """What a shopper did. The order is the strength of the signal."""

    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    SEARCH = "search"

    @property
    def code(self) -> int:
        return _EVENT_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> EventType:
        return _EVENT_BY_CODE[code]


_EVENT_CODES = {t: i for i, t in enumerate(EventType)}
_EVENT_BY_CODE = dict(enumerate(EventType))


class Product(BaseModel):
    """One catalog entry. Text may be in any language; it is NFKC-normalised and unescaped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    item_id: ExternalId
    title: str = Field(min_length=1)
    description: str = ""
    category: list[str] = Field(default_factory=list, description="category path, root first")
    brand: str = ""
    price: float | None = Field(default=None, ge=0)
    currency: str = Field(default="USD", min_length=3, max_length=3)
    stock: int | None = Field(default=None, ge=0)
    image: str = Field(default="", description="local path or URL of the main image")
    attributes: dict[str, str] = Field(default_factory=dict)
    language: str = Field(default="", description="BCP-47 tag such as 'en' or 'zh'; empty means unknown")

    @field_validator("title", "description", "brand", mode="before")
    @classmethod
    def _clean(cls, value: Any) -> Any:
        return clean_text(value) if isinstance(value, str) else value

    @field_validator("category", mode="before")
    @classmethod
    def _split_category(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = value.replace(">", "/").split("/")
            return [clean_text(p) for p in parts if clean_text(p)]
        return value

    @field_validator("price", mode="before")
    @classmethod
    def _parse_price(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().replace(",", "").lstrip("$€£¥")
            return None if text == "" else float(text)
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    @field_validator("currency", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class Event(BaseModel):
    """One thing a shopper did. ``user_id`` may be a logged-in user or an anonymous session."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: ExternalId
    item_id: ExternalId | None = Field(default=None, description="absent only for a search with no click")
    type: EventType = EventType.CLICK
    timestamp: datetime
    query: str = ""
    position: int | None = Field(default=None, ge=0, description="rank at which the item was shown")
    session_id: str = ""
    context: dict[str, str] = Field(default_factory=dict)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _to_datetime(cls, value: Any) -> Any:
        return parse_timestamp(value)

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past the last representable time
            raise ValueError(f"timestamp {value.isoformat()} is out of range in UTC") from None

    @field_validator("query", mode="before")
    @classmethod
    def _clean_query(cls, value: Any) -> Any:
        return clean_text(value) if isinstance(value, str) else value

    def model_post_init(self, __context: Any) -> None:
        if self.item_id is None and self.type is not EventType.SEARCH:
            raise ValueError(f"item_id is required for a {self.type.value} event")


def parse_timestamp(value: Any) -> datetime:
    """Seconds or milliseconds since the epoch, or ISO-8601; naive times are taken as UTC."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isnan(value):
            raise ValueError("timestamp is empty")
        seconds = value / 1000.0 if abs(value) > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(
                f"timestamp {value!r} is out of range: use seconds or milliseconds since 1970-01-01"
            ) from None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("timestamp is empty")
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return parse_timestamp(number)
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"cannot parse timestamp {text!r}: use ISO-8601 or seconds/milliseconds since the epoch"
            ) from None
    raise ValueError(f"cannot parse timestamp of type {type(value).__name__}")
