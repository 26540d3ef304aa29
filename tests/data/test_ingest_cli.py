"""``shopfusion ingest``: problems printed as FILE:LINE, a summary, and the exit codes 0 / 1 / 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from shopfusion.cli.ingest import MAX_PRINTED_PROBLEMS, parse_mappings
from shopfusion.data.store import SQLiteStore

runner = CliRunner()


@pytest.fixture
def catalog(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return write_csv(
        tmp_path / "catalog.csv",
        ["sku", "name", "price"],
        [
            ["p1", "Red lipstick", "12.5"],
            ["p2", "保湿面霜", "99"],
            ["", "no id", "1"],
            ["p4", "bad price", "x"],
        ],
    )


@pytest.fixture
def events(tmp_path: Path, write_jsonl: Callable[..., Path]) -> Path:
    return write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"user_id": "u1", "sku": "p1", "timestamp": "2024-01-01T00:00:00Z"},
            {"user_id": "u1", "sku": "p2", "timestamp": "2024-01-01T00:01:00Z", "type": "purchase"},
            {"user_id": "u2", "sku": "p9", "timestamp": "2024-01-01T00:02:00Z"},  # not in the catalog
            "{oops",
        ],
    )


def invoke(app: typer.Typer, *args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["ingest", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_ingest_reports_problems_and_keeps_valid_rows(
    cli_app: typer.Typer, tmp_path: Path, catalog: Path, events: Path
) -> None:
    db = tmp_path / "shop.db"
    code, out, err = invoke(
        cli_app, "--store", db, "--catalog", catalog, "--events", events,
        "--map", "item_id=sku", "--map", "catalog:title=name",
    )  # fmt: skip

    assert code == 0, err
    assert f"{catalog}:4: field 'sku': required value is missing" in err
    assert f"{catalog}:5: field 'price': cannot read price 'x'" in err
    assert f"{events}:3: field 'sku': item 'p9' is not in the catalog" in err
    assert f"{events}:4: field '(row)': malformed JSON" in err
    assert "catalog.csv" in out and "events.jsonl" in out and "rejected" in out
    with SQLiteStore(db) as store:
        assert (store.count_products(), store.count_events()) == (2, 2)
        assert store.get_product("p2") is not None


def test_nothing_valid_exits_1(cli_app: typer.Typer, tmp_path: Path, write_csv: Callable[..., Path]) -> None:
    bad = write_csv(tmp_path / "c.csv", ["item_id", "title"], [["", "x"], ["a", ""]])
    code, _, err = invoke(cli_app, "--store", tmp_path / "s.db", "--catalog", bad)
    assert code == 1
    assert "nothing valid remained" in err


def test_events_need_a_catalog_unless_allowed(
    cli_app: typer.Typer, tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    clicks = write_csv(
        tmp_path / "clicks.csv", ["session", "item_id", "timestamp"], [["s1", "214", "1396720544263"]] * 2
    )
    args = ("--store", tmp_path / "s.db", "--events", clicks, "--map", "user_id=session")

    code, _, err = invoke(cli_app, *args)
    assert code == 1 and "--allow-unknown-items" in err

    code, _, err = invoke(cli_app, *args, "--allow-unknown-items")
    assert code == 0, err
    assert "exact duplicate of line 2; dropped" in err
    with SQLiteStore(tmp_path / "s.db") as store:
        assert store.count_events() == 1 and store.count_products() == 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no input file"),
        pytest.param(["--catalog", "{missing}"], id="missing file"),
        pytest.param(["--catalog", "{xlsx}"], id="unknown format"),
        pytest.param(["--catalog", "{catalog}", "--map", "sku"], id="map without ="),
        pytest.param(["--catalog", "{catalog}", "--map", "colour=c"], id="map unknown field"),
        pytest.param(["--catalog", "{catalog}", "--map", "orders:item_id=c"], id="map unknown prefix"),
        pytest.param(
            ["--catalog", "{catalog}", "--events", "{catalog}", "--allow-unknown-items"], id="unknown+catalog"
        ),
        pytest.param(["--catalog", "{catalog}", "--batch-size", "0"], id="batch size"),
    ],
)
def test_usage_errors_exit_2(cli_app: typer.Typer, tmp_path: Path, catalog: Path, args: list[str]) -> None:
    xlsx = tmp_path / "c.xlsx"
    xlsx.write_text("x")
    paths = {"missing": tmp_path / "nope.csv", "xlsx": xlsx, "catalog": catalog}
    filled = [a.format(**paths) for a in args]
    code, _, err = invoke(cli_app, "--store", tmp_path / "s.db", *filled)
    assert code == 2, err
    assert err.strip()
    with SQLiteStore(tmp_path / "s.db") as store:
        assert store.count_products() == 0  # nothing half-done


def test_unusable_store_is_a_usage_error(cli_app: typer.Typer, tmp_path: Path, catalog: Path) -> None:
    garbage = tmp_path / "g.db"
    garbage.write_bytes(b"not a database" * 100)
    code, _, err = invoke(cli_app, "--store", garbage, "--catalog", catalog, "--map", "item_id=sku")
    assert code == 2 and "not a usable shopfusion store" in err


def test_only_the_first_50_problems_are_printed(
    cli_app: typer.Typer, tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    rows = [["", "no id"]] * 70 + [["ok", "fine"]]
    path = write_csv(tmp_path / "c.csv", ["item_id", "title"], rows)
    code, _, err = invoke(cli_app, "--store", tmp_path / "s.db", "--catalog", path)
    assert code == 0
    assert sum(line.startswith(f"{path}:") for line in err.splitlines()) == MAX_PRINTED_PROBLEMS
    assert "... and 20 more (70 errors and 0 warnings in all)" in err


def test_parquet_and_gz_inputs_commit_in_batches(
    cli_app: typer.Typer, tmp_path: Path, write_jsonl: Callable[..., Path]
) -> None:
    import gzip

    pd.DataFrame({"item_id": [f"i{i}" for i in range(30)], "title": ["商品"] * 30}).to_parquet(
        tmp_path / "c.parquet"
    )
    plain = write_jsonl(
        tmp_path / "e.jsonl", [{"user_id": "u", "item_id": f"i{i}", "timestamp": i} for i in range(30)]
    )
    gz = tmp_path / "e.jsonl.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))

    code, _, err = invoke(
        cli_app,
        "--store",
        tmp_path / "s.db",
        "--catalog",
        tmp_path / "c.parquet",
        "--events",
        gz,
        "--batch-size",
        "7",
    )

    assert code == 0, err
    with SQLiteStore(tmp_path / "s.db") as store:
        assert (store.count_products(), store.count_events(), store.max_sequence()) == (30, 30, 30)


def test_parse_mappings() -> None:
    assert parse_mappings(["item_id=sku", "events:user_id=visitor:id", "catalog:title = name"]) == {
        "catalog": {"item_id": "sku", "title": "name"},
        "events": {"item_id": "sku", "user_id": "visitor:id"},
    }
