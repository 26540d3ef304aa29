"""The ingestion pipeline: read and validate files, keep the valid rows in the store, report the rest.

Shared by ``shopfusion ingest``, the demo and (later) the HTTP API, so every entry point validates
and stores the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shopfusion.data.readers import read_events, read_products
from shopfusion.data.schema import Event, Product
from shopfusion.data.store import SQLiteStore
from shopfusion.data.validation import ReadResult, RowProblem


@dataclass(frozen=True)
class FileReport:
    """What happened to one input file."""

    kind: str
    file: str
    n_read: int
    n_kept: int
    n_rejected: int
    n_duplicates: int
    problems: tuple[RowProblem, ...]


def ingest_catalog(store: SQLiteStore, path: Path, mapping: dict[str, str], batch_size: int) -> FileReport:
    result = read_products(path, mapping)
    for start in range(0, len(result.records), batch_size):
        store.upsert_products(result.records[start : start + batch_size])
    return _report("catalog", result)


def ingest_events(
    store: SQLiteStore, path: Path, mapping: dict[str, str], batch_size: int, allow_unknown_items: bool
) -> FileReport:
    """Events about items missing from the catalog are rejected, unless the caller allows them
    for a store whose catalog is empty (id-only streams)."""
    known = None if allow_unknown_items else store.item_ids()
    result = read_events(path, mapping, known_items=known)
    for start in range(0, len(result.records), batch_size):
        store.append_events(result.records[start : start + batch_size])  # one durable commit per batch
    return _report("events", result)


def _report(kind: str, result: ReadResult[Product] | ReadResult[Event]) -> FileReport:
    return FileReport(
        kind,
        result.file,
        result.n_rows,
        result.n_kept,
        result.n_rejected,
        result.n_duplicates,
        tuple(result.problems),
    )
