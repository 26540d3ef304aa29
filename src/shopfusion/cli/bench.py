"""``shopfusion bench load``: an open- or closed-loop load test of a running server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

T = TypeVar("T")


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
    rate: Annotated[
        float, typer.Option(min=0, help="requests per second, sent open-loop; 0: closed loop")
    ] = 100.0,
    duration: Annotated[float, typer.Option(min=1, help="seconds counted")] = 20.0,
    warmup: Annotated[
        float, typer.Option(min=0, help="seconds of load first, on the same connections, not counted")
    ] = 3.0,
    connections: Annotated[
        int, typer.Option(min=1, help="keep-alive connections (closed loop: the concurrency)")
    ] = 64,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds before a request counts as timed out")
    ] = 5.0,
    seed: Annotated[int, typer.Option(help="seed of the request mix")] = 0,
    api_key: Annotated[str | None, typer.Option(help="X-API-Key to send (when reads need one)")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="append the summary to this JSON file")
    ] = None,
) -> None:
    """Load a running server; print throughput, status counts and latency percentiles of answered
    (2xx) and shed (429/503) requests apart. Open loop (``--rate R``): latency from each request's
    due time; closed loop (``--rate 0``): ``--connections`` requests outstanding at all times."""
    import pandas as pd

    from shopfusion.serving.loadgen import request_paths, run_load

    users = (artifact / "users.txt").read_text(encoding="utf-8").split("\n")[:-1]
    items = (artifact / "items.txt").read_text(encoding="utf-8").split("\n")[:-1]
    titles = pd.read_parquet(artifact / "catalog.parquet", columns=["title"])["title"].astype(str)
    # Queries a shopper might type: the first two words of product titles.
    queries = sorted({" ".join(t.split()[:2]) for t in titles if t.strip()})
    paths = request_paths(endpoint, users, items, queries, 50_000, seed)
    headers = {"X-API-Key": api_key} if api_key else None
    run = run_load(
        url,
        paths,
        rate or None,
        duration,
        endpoint,
        connections=connections,
        warmup_s=warmup,
        timeout_s=timeout,
        headers=headers,
    )
    summary = _run(run).summary()
    Console().print_json(json.dumps(summary))
    if json_out is not None:
        previous = json.loads(json_out.read_text()) if json_out.exists() else []
        json_out.write_text(json.dumps([*previous, summary], indent=2))


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed: the generator then costs less of the shared CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
