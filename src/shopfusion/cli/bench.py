"""``shopfusion bench load``: an open-loop load test of a running server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    bench = typer.Typer(help="Benchmarks of a running service.", no_args_is_help=True)
    bench.command("load")(load)
    app.add_typer(bench, name="bench")


def load(
    url: Annotated[str, typer.Option(help="base URL of the server, e.g. http://127.0.0.1:8000")],
    artifact: Annotated[
        Path, typer.Option(help="the served artifact (user, item ids and queries come from it)")
    ],
    endpoint: Annotated[str, typer.Option(help="recommend | search | similar")] = "recommend",
    rate: Annotated[float, typer.Option(min=1, help="requests per second, sent open-loop")] = 100.0,
    duration: Annotated[float, typer.Option(min=1, help="seconds")] = 20.0,
    warmup: Annotated[
        float, typer.Option(min=0, help="seconds of load at the same rate first, not counted")
    ] = 3.0,
    seed: Annotated[int, typer.Option(help="seed of the request mix")] = 0,
    api_key: Annotated[str | None, typer.Option(help="X-API-Key to send (when reads need one)")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="append the summary to this JSON file")
    ] = None,
) -> None:
    """Send ``rate`` requests per second for ``duration`` seconds; print throughput, status counts
    and latency percentiles (measured from each request's scheduled time)."""
    import pandas as pd

    from shopfusion.serving.loadgen import request_paths, run_load

    users = (artifact / "users.txt").read_text(encoding="utf-8").split("\n")[:-1]
    items = (artifact / "items.txt").read_text(encoding="utf-8").split("\n")[:-1]
    titles = pd.read_parquet(artifact / "catalog.parquet", columns=["title"])["title"].astype(str)
    # Queries a shopper might type: the first two words of product titles.
    queries = sorted({" ".join(t.split()[:2]) for t in titles if t.strip()})
    total = int(rate * (duration + warmup)) + 1
    paths = request_paths(endpoint, users, items, queries, total, seed)
    headers = {"X-API-Key": api_key} if api_key else None
    if warmup > 0:
        asyncio.run(run_load(url, paths[: int(rate * warmup) + 1], rate, warmup, endpoint, headers=headers))
    result = asyncio.run(
        run_load(url, paths[int(rate * warmup) + 1 :], rate, duration, endpoint, headers=headers)
    )
    summary = result.summary()
    Console().print_json(json.dumps(summary))
    if json_out is not None:
        previous = json.loads(json_out.read_text()) if json_out.exists() else []
        json_out.write_text(json.dumps([*previous, summary], indent=2))
