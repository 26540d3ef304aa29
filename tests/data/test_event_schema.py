"""Event timestamps at the edges of what a datetime holds are refused with a clear error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shopfusion.data.schema import Event


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        ("9999-12-31T23:00:00-05:00", "out of range in UTC"),  # past datetime.max once in UTC
        (1e300, "out of range"),
        (float("inf"), "out of range"),
        ("-1e20", "out of range"),
    ],
)
def test_out_of_range_timestamps_are_a_validation_error(timestamp: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        Event(user_id="u1", item_id="i1", timestamp=timestamp)
    assert caught.value.errors()[0]["loc"] == ("timestamp",)


def test_timestamps_in_range_still_parse() -> None:
    event = Event(user_id="u1", item_id="i1", timestamp="2024-01-02T03:04:05+08:00")
    assert event.timestamp.isoformat() == "2024-01-01T19:04:05+00:00"
    assert Event(user_id="u1", item_id="i1", timestamp=1_700_000_000_000).timestamp.year == 2023
