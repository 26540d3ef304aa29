"""Readers: every format, column mapping, and every kind of bad row reported while good rows survive."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from shopfusion.data.readers import detect_format, read_events, read_products
from shopfusion.data.schema import EventType
from shopfusion.data.validation import RowProblem
from shopfusion.errors import ConfigError, DataError

PRODUCT_HEADER = ["item_id", "title", "price", "category", "attributes"]
PRODUCT_ROWS = [
    ["p1", "Red lipstick", "12.50", "Beauty > Lips", '{"color": "red"}'],
    ["p2", "保湿面霜 &amp; 精华", "¥99", "美妆/护肤", ""],
]


def problems_at(problems: list[RowProblem], line: int) -> list[RowProblem]:
    return [p for p in problems if p.line == line]


# -- formats and mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["catalog.csv", "catalog.csv.gz"])
def test_csv_products(tmp_path: Path, name: str, write_csv: Callable[..., Path]) -> None:
    path = write_csv(tmp_path / "plain.csv", PRODUCT_HEADER, PRODUCT_ROWS)
    if name.endswith(".gz"):
        path = tmp_path / name
        path.write_bytes(gzip.compress((tmp_path / "plain.csv").read_bytes()))

    result = read_products(path)

    assert result.problems == []
    assert result.n_rows == result.n_kept == 2
    first, second = result.records
    assert (first.item_id, first.title, first.price, first.category) == (
        "p1",
        "Red lipstick",
        12.5,
        ["Beauty", "Lips"],
    )
    assert first.attributes == {"color": "red"}
    assert (second.title, second.price, second.category) == ("保湿面霜 & 精华", 99.0, ["美妆", "护肤"])
    assert result.lines == [2, 3]


def test_jsonl_events_normalise_timestamps_to_utc(tmp_path: Path, write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"user_id": "u1", "item_id": "p1", "timestamp": "2024-01-01T08:00:00+08:00", "type": "Purchase"},
            {"user_id": 7, "item_id": 42, "timestamp": 1_700_000_000_000, "context": {"page": 2}},
            {"user_id": "u1", "type": "search", "query": "口红", "timestamp": "2024-01-01 00:00:00"},
        ],
    )

    result = read_events(path)

    assert result.problems == []
    a, b, c = result.records
    assert a.timestamp == datetime(2024, 1, 1, tzinfo=UTC) and a.type is EventType.PURCHASE
    assert (b.user_id, b.item_id, b.context) == ("7", "42", {"page": "2"})
    assert b.timestamp == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert (c.item_id, c.query, c.timestamp.tzinfo) == (None, "口红", UTC)


def test_parquet_with_column_mapping(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "sku": ["a", "b", None],
            "name": ["Lipstick", "眼影盘", "no id"],
            "cost": [1.5, float("nan"), 2.0],
            "stock": pd.array([3, None, 1], dtype="Int64"),
            "warehouse": ["x", "y", "z"],
        }
    )
    path = tmp_path / "catalog.parquet"
    frame.to_parquet(path)

    result = read_products(path, {"item_id": "sku", "title": "name", "price": "cost"})

    assert [(p.item_id, p.title, p.price, p.stock) for p in result.records] == [
        ("a", "Lipstick", 1.5, 3),
        ("b", "眼影盘", None, None),
    ]
    errors = result.errors
    assert [(p.line, p.field) for p in errors] == [(3, "sku")]
    assert "required value is missing" in errors[0].message
    warnings = [p for p in result.problems if p.severity == "warning"]
    assert [p.field for p in warnings] == ["warehouse"]  # an unmapped column is pointed out


def test_parquet_events_with_datetime_column(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "visitor": ["u1", "u2"],
            "item_id": ["a", "b"],
            "when": pd.to_datetime(["2024-05-01 12:00", "2024-05-02 12:00"]).tz_localize("Europe/Paris"),
        }
    )
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)

    result = read_events(path, {"user_id": "visitor", "timestamp": "when"})

    assert result.problems == []
    assert [e.timestamp for e in result.records] == [
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 2, 10, tzinfo=UTC),
    ]


def test_mapping_to_unknown_field_is_a_config_error(tmp_path: Path, write_csv: Callable[..., Path]) -> None:
    path = write_csv(tmp_path / "c.csv", PRODUCT_HEADER, PRODUCT_ROWS)
    with pytest.raises(ConfigError, match="not a Product field; map one of item_id"):
        read_products(path, {"sku": "item_id"})


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.CSV.gz", "csv"),
        ("a.ndjson", "jsonl"),
        ("a.jsonl.gz", "jsonl"),
        ("a.parquet", "parquet"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(Path(name)) == fmt


@pytest.mark.parametrize("name", ["a.xlsx", "a.parquet.gz", "noext"])
def test_unknown_format_says_which_extensions_work(name: str) -> None:
    with pytest.raises(DataError, match=r"\.csv, \.jsonl, \.ndjson or \.parquet"):
        detect_format(Path(name))


# -- bad rows --------------------------------------------------------------------------------------


def test_bad_product_rows_are_reported_and_good_rows_kept(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    path = write_csv(
        tmp_path / "catalog.csv",
        ["item_id", "title", "price", "stock"],
        [
            ["p1", "good", "1", "2"],  # line 2
            ["", "missing id", "1", ""],  # line 3
            ["p3", "bad price", "twelve", ""],  # line 4
            ["p4", "", "1", ""],  # line 5: empty title
            ["p5", "negative stock", "1", "-1"],  # line 6
            ["p6", "good too", "", ""],  # line 7
        ],
    )

    result = read_products(path)

    assert [p.item_id for p in result.records] == ["p1", "p6"]
    assert [(p.line, p.field) for p in result.errors] == [
        (3, "item_id"),
        (4, "price"),
        (5, "title"),
        (6, "stock"),
    ]
    assert all(p.file == str(path) for p in result.problems)
    assert "twelve" in result.errors[1].message and "12.99" in result.errors[1].message
    assert str(result.errors[0]).startswith(f"{path}:3: field 'item_id': ")
    assert (result.n_rows, result.n_kept, result.n_rejected) == (6, 2, 4)


def test_duplicate_products_keep_the_last_row_with_a_warning(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    path = write_csv(
        tmp_path / "c.csv",
        ["sku", "title"],
        [["a", "first"], ["b", "other"], ["a", "second"], ["a", "third"]],
    )

    result = read_products(path, {"item_id": "sku"})

    assert [(p.item_id, p.title) for p in result.records] == [("a", "third"), ("b", "other")]
    assert result.lines == [5, 3]
    assert [(p.line, p.field, p.severity) for p in result.problems] == [
        (2, "sku", "warning"),
        (4, "sku", "warning"),
    ]
    assert "replaced by line 5" in result.problems[0].message
    assert (result.n_duplicates, result.n_rejected) == (2, 0)


def test_bad_event_rows_are_reported_and_good_rows_kept(
    tmp_path: Path, write_jsonl: Callable[..., Path]
) -> None:
    good = {"user_id": "u1", "item_id": "p1", "timestamp": 1_700_000_000}
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [
            good,  # 1
            {**good, "item_id": "unknown"},  # 2: not in the catalog
            {**good, "timestamp": "last tuesday"},  # 3
            '{"user_id": "u1", "item_id": ',  # 4: malformed JSON
            b'{"user_id": "u\xff1", "item_id": "p1", "timestamp": 1700000001}',  # 5: invalid UTF-8
            {**good, "user_id": ""},  # 6: missing user
            "",  # 7: blank lines are skipped
            {**good, "type": "like"},  # 8: unknown type
            '["not", "an", "object"]',  # 9
            good,  # 10: exact duplicate of line 1
            {**good, "timestamp": 1_700_000_100, "position": "2"},  # 11
        ],
    )

    result = read_events(path, known_items={"p1"})

    assert [(e.user_id, e.timestamp.timestamp(), e.position) for e in result.records] == [
        ("u1", 1_700_000_000, None),
        ("u1", 1_700_000_100, 2),
    ]
    errors = {(p.line, p.field) for p in result.errors}
    assert errors == {
        (2, "item_id"),
        (3, "timestamp"),
        (4, "(row)"),
        (5, "user_id"),
        (6, "user_id"),
        (8, "type"),
        (9, "(row)"),
    }
    messages = {p.line: p.message for p in result.problems}
    assert "not in the catalog" in messages[2] and "--allow-unknown-items" in messages[2]
    assert "ISO-8601" in messages[3]
    assert "malformed JSON" in messages[4]
    assert "invalid UTF-8 (byte 0xff)" in messages[5]
    assert "view, click" in messages[8]
    assert messages[10] == "exact duplicate of line 1; dropped"
    assert (result.n_rows, result.n_kept, result.n_duplicates, result.n_rejected) == (10, 2, 1, 7)


def test_invalid_utf8_in_csv_costs_only_that_row(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    path.write_bytes(
        "item_id,title\np1,Crème\n".encode()
        + b"p2,Cr\xe8me latin-1\n"
        + '"p3","multi\nline 日本語"\np4,ok\n'.encode()
    )

    result = read_products(path)

    assert [(p.item_id, p.title) for p in result.records] == [
        ("p1", "Crème"),
        ("p3", "multi line 日本語"),
        ("p4", "ok"),
    ]
    assert result.lines == [2, 4, 6]  # a quoted line break: the record starts on line 4
    (problem,) = result.problems
    assert (problem.line, problem.field) == (3, "title")
    assert "byte 0xe8" in problem.message and "UTF-8" in problem.message


def test_csv_row_with_wrong_number_of_values(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text("item_id,title\np1,one\np2,two,extra\np3\n\np4,four\n", encoding="utf-8")

    result = read_products(path)

    assert [p.item_id for p in result.records] == ["p1", "p4"]
    assert [(p.line, p.field) for p in result.problems] == [(3, "(row)"), (4, "(row)")]
    assert "quote values that contain commas" in result.problems[0].message


def test_search_event_without_item_needs_search_type(
    tmp_path: Path, write_jsonl: Callable[..., Path]
) -> None:
    path = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"user_id": "u", "timestamp": 1, "type": "click"},
            {"user_id": "u", "timestamp": 1, "type": "search"},
        ],
    )

    result = read_events(path, known_items=set())

    assert [e.type for e in result.records] == [EventType.SEARCH]
    (problem,) = result.problems
    assert (problem.line, problem.field) == (1, "item_id")
    assert "set type to 'search'" in problem.message


def test_chinese_text_round_trips_through_every_format(
    tmp_path: Path, write_csv: Callable[..., Path], write_jsonl: Callable[..., Path]
) -> None:
    title = "无线蓝牙耳机 降噪 — 白色"
    rows = [{"item_id": "商品-1", "title": title, "brand": "华为", "attributes": {"颜色": "白"}}]
    write_jsonl(tmp_path / "c.jsonl", rows)
    write_csv(
        tmp_path / "c.csv",
        ["item_id", "title", "brand", "attributes"],
        [["商品-1", title, "华为", '{"颜色": "白"}']],
    )
    pd.DataFrame([{**rows[0], "attributes": '{"颜色": "白"}'}]).to_parquet(tmp_path / "c.parquet")

    for name in ("c.jsonl", "c.csv", "c.parquet"):
        (product,) = read_products(tmp_path / name).records
        assert (product.item_id, product.title, product.brand, product.attributes) == (
            "商品-1",
            title,
            "华为",
            {"颜色": "白"},
        ), name


def test_corrupt_parquet_says_to_re_export(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(b"PAR1 but not really")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_events(path)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_events(tmp_path / "nope.csv")


@pytest.mark.slow
def test_200k_event_rows_read_in_a_few_seconds(tmp_path: Path) -> None:
    n = 200_000
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i % 5000}" for i in range(n)],
            "item_id": [f"i{i % 3000}" for i in range(n)],
            "timestamp": [1_700_000_000 + i for i in range(n)],
            "type": ["click"] * n,
        }
    )
    frame.to_csv(tmp_path / "events.csv", index=False)
    known = {f"i{i}" for i in range(3000)}

    start = time.perf_counter()
    result = read_events(tmp_path / "events.csv", known_items=known)
    elapsed = time.perf_counter() - start

    assert result.n_kept == n and not result.problems
    assert elapsed < 8.0, f"reading {n} events took {elapsed:.1f} s"
