"""``shopfusion sample``: write the synthetic bilingual sample shop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopfusion.data.sample import write_sample
from shopfusion.errors import ShopfusionError


def sample(
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write catalog.jsonl, events.jsonl and README.md to.")
    ],
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives identical files.")
    ] = 7,
    users: Annotated[int, typer.Option("--users", min=1, help="Number of simulated shoppers.")] = 600,
) -> None:
    """Write a synthetic bilingual (English/Chinese) catalog and ~60 days of shopper events."""
    try:
        paths = write_sample(out, seed=seed, n_users=users)
    except ShopfusionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")


def register(app: typer.Typer) -> None:
    """Add the ``sample`` command to ``app``."""
    app.command("sample")(sample)
