"""Fixtures of the data-layer tests: tiny files written by the tests themselves."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer


@pytest.fixture(scope="session")
def cli_app() -> typer.Typer:
    from shopfusion.cli import app

    return app


def _write_csv(path: Path, header: list[str], rows: Iterable[list[Any]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any] | str | bytes]) -> Path:
    """Rows may be dicts (dumped), or raw text/bytes lines (written as they are)."""
    with path.open("wb") as handle:
        for row in rows:
            if isinstance(row, bytes):
                handle.write(row + b"\n")
            elif isinstance(row, str):
                handle.write(row.encode("utf-8") + b"\n")
            else:
                handle.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
    return path


@pytest.fixture(scope="session")
def write_csv() -> Callable[..., Path]:
    """``write_csv(path, header, rows, encoding="utf-8") -> path``."""
    return _write_csv


@pytest.fixture(scope="session")
def write_jsonl() -> Callable[..., Path]:
    """``write_jsonl(path, rows) -> path``; rows are dicts, or raw str/bytes lines."""
    return _write_jsonl
