"""``shopfusion ingest``: validate product and event files into a SQLite store.

Exit codes: 0 when valid rows remain (problems are printed, not fatal), 1 when
nothing valid remains, 2 for usage errors (missing file, unknown format or field).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shopfusion.data.ingest import FileReport, ingest_catalog, ingest_events
from shopfusion.data.readers import detect_format
from shopfusion.data.schema import Event, Product
from shopfusion.data.store import SQLiteStore
from shopfusion.data.validation import ROW, RowProblem
from shopfusion.errors import DataError, ShopfusionError

MAX_PRINTED_PROBLEMS = 50
_TARGETS: dict[str, type[Product] | type[Event]] = {"catalog": Product, "events": Event}


def parse_mappings(specs: Sequence[str]) -> dict[str, dict[str, str]]:
    """``FIELD=COLUMN`` (both files) or ``catalog:FIELD=COLUMN`` / ``events:FIELD=COLUMN``.

    >>> parse_mappings(["item_id=sku", "events:user_id=visitor"])["events"]
    {'item_id': 'sku', 'user_id': 'visitor'}
    """
    out: dict[str, dict[str, str]] = {"catalog": {}, "events": {}}
    for spec in specs:
        left, sep, column = spec.partition("=")  # a column name may hold ':' or '='
        target, _, field = left.rpartition(":")
        target, field, column = target.strip(), field.strip(), column.strip()
        if not sep or not field or not column:
            raise typer.BadParameter(
                f"{spec!r} is not FIELD=COLUMN (e.g. --map item_id=sku)", param_hint="--map"
            )
        if target and target not in _TARGETS:
            raise typer.BadParameter(f"{spec!r}: prefix must be 'catalog:' or 'events:'", param_hint="--map")
        targets = [target] if target else [t for t, model in _TARGETS.items() if field in model.model_fields]
        if not targets or any(field not in _TARGETS[t].model_fields for t in targets):
            fields = sorted(set(Product.model_fields) | set(Event.model_fields))
            raise typer.BadParameter(
                f"{field!r} is not a field; map one of {', '.join(fields)}", param_hint="--map"
            )
        for t in targets:
            out[t][field] = column
    return out


def print_problems(reports: Sequence[FileReport], limit: int = MAX_PRINTED_PROBLEMS) -> None:
    problems = [p for r in reports for p in r.problems]
    for problem in problems[:limit]:
        typer.echo(str(problem), err=True)
    if len(problems) > limit:
        n_errors = sum(p.severity == "error" for p in problems)
        typer.echo(
            f"... and {len(problems) - limit} more ({n_errors} errors and "
            f"{len(problems) - n_errors} warnings in all)",
            err=True,
        )


def print_summary(reports: Sequence[FileReport], store: SQLiteStore) -> None:
    table = Table(title=f"ingested into {store.path}")
    for column in ("file", "kind", "read", "kept", "rejected", "duplicates", "warnings"):
        table.add_column(column, justify="left" if column in ("file", "kind") else "right", no_wrap=True)
    for r in reports:
        n_warnings = sum(p.severity == "warning" for p in r.problems)
        table.add_row(
            Path(r.file).name,  # the full path is in the problem lines; keep the table narrow
            r.kind,
            str(r.n_read),
            str(r.n_kept),
            str(r.n_rejected),
            str(r.n_duplicates),
            str(n_warnings),
        )
    console = Console(soft_wrap=True)  # made here so that it writes to the current stdout
    console.print(table)
    console.print(f"store now holds {store.count_products()} products and {store.count_events()} events")


def _usage_error(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code=2)


def ingest(
    store: Annotated[
        Path,
        typer.Option(
            "--store",
            metavar="PATH",
            help="SQLite store file (created if missing), or a folder for shopfusion.db.",
        ),
    ],
    catalog: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Products file: .csv, .jsonl/.ndjson, .parquet (.gz for csv/jsonl).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Events file, same formats as --catalog.", exists=True, dir_okay=False
        ),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="FIELD=COLUMN",
            help="FIELD=COLUMN when a column has another name (repeatable); prefix catalog: or events: "
            "to apply it to one file only.",
        ),
    ] = None,
    allow_unknown_items: Annotated[
        bool,
        typer.Option(
            "--allow-unknown-items",
            help="Accept events about items not in the catalog (only for a store with no catalog).",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, metavar="N", help="Rows per committed transaction.")
    ] = 1000,
) -> None:
    """Validate product and event files and store them; bad rows are reported and skipped."""
    if catalog is None and events is None:
        raise _usage_error("give --catalog FILE and/or --events FILE to ingest")
    mappings = parse_mappings(mapping or [])
    try:
        for path in (p for p in (catalog, events) if p is not None):
            detect_format(path)
        with SQLiteStore(store) as db:
            if allow_unknown_items and (catalog is not None or db.count_products()):
                raise _usage_error(
                    "--allow-unknown-items is only for a store with an empty catalog (id-only streams); "
                    "ingest the missing products with --catalog instead"
                )
            reports = _run(db, catalog, events, mappings, batch_size, allow_unknown_items)
            print_problems(reports)
            print_summary(reports, db)
    except ShopfusionError as exc:
        raise _usage_error(str(exc)) from None
    if not any(r.n_kept for r in reports):
        typer.echo("nothing valid remained; fix the problems above and run again", err=True)
        raise typer.Exit(code=1)


def _run(
    db: SQLiteStore,
    catalog: Path | None,
    events: Path | None,
    mappings: dict[str, dict[str, str]],
    batch_size: int,
    allow_unknown_items: bool,
) -> list[FileReport]:
    reports: list[FileReport] = []
    if catalog is not None:
        reports.append(
            _unreadable_as_report(
                "catalog", catalog, lambda: ingest_catalog(db, catalog, mappings["catalog"], batch_size)
            )
        )
    if events is not None:
        reports.append(
            _unreadable_as_report(
                "events",
                events,
                lambda: ingest_events(db, events, mappings["events"], batch_size, allow_unknown_items),
            )
        )
    return reports


def _unreadable_as_report(kind: str, path: Path, step: Callable[[], FileReport]) -> FileReport:
    """A file that cannot be read at all (corrupt Parquet, header not UTF-8) is one problem, not a crash."""
    try:
        return step()
    except DataError as exc:
        return FileReport(kind, str(path), 0, 0, 0, 0, (RowProblem(str(path), 1, ROW, str(exc)),))


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to the ``shopfusion`` app."""
    app.command("ingest")(ingest)
