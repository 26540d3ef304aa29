"""``shopfusion report``: turn evaluation results JSON into a Markdown report with charts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopfusion.errors import ShopfusionError
from shopfusion.evaluation.report import render_report


def report(
    json_files: Annotated[
        list[Path],
        typer.Option(
            "--json", help="Results JSON written by `shopfusion evaluate`; repeat for several files."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory for report.md and the metrics charts.")],
) -> None:
    """Render evaluation results as report.md plus a bar chart per results file."""
    try:
        path = render_report(json_files, out)
    except ShopfusionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    app.command("report")(report)
