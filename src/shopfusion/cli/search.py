"""``shopfusion search`` (for people) and ``shopfusion evaluate search`` (the benchmark)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from shopfusion.cli.evaluate import _write_json, evaluate_app
from shopfusion.data.idmap import IdMap
from shopfusion.data.layouts import load_dataset
from shopfusion.errors import ArtifactError, ShopfusionError
from shopfusion.evaluation.search import run_search_benchmark
from shopfusion.search.api import SearchFilters
from shopfusion.search.engine import SearchEngine, load_search_config

REPORT_METRICS = ("MRR@10", "HR@10", "Recall@10", "NDCG@10", "HR@20", "NDCG@20")


def register(app: typer.Typer) -> None:
    app.command("search")(search)
    evaluate_app.command("search")(evaluate_search)


def search(
    query: Annotated[str, typer.Argument(help="what to look for, in any language")],
    artifact: Annotated[Path, typer.Option(help="artifact directory written by `shopfusion train`")],
    user: Annotated[str | None, typer.Option(help="personalise for this user id (their history)")] = None,
    k: Annotated[int, typer.Option(min=1, help="results to show")] = 10,
    category: Annotated[list[str] | None, typer.Option(help="only this category path (or a prefix)")] = None,
    brand: Annotated[list[str] | None, typer.Option(help="only this brand")] = None,
    min_price: Annotated[float | None, typer.Option(help="lowest price")] = None,
    max_price: Annotated[float | None, typer.Option(help="highest price")] = None,
    in_stock: Annotated[bool, typer.Option(help="only items in stock")] = False,
) -> None:
    """Search the catalog of a trained artifact and print the results with facets."""
    console = Console()
    try:
        engine = SearchEngine.load(artifact / "search")
        items = IdMap.load("item", artifact / "items.txt")
        history = _history(artifact, user) if user else None
        filters = SearchFilters(tuple(category or ()), tuple(brand or ()), min_price, max_price, in_stock)
        result = engine.search(query, k=k, history=history, filters=filters, exclude_history=False)
        titles = _titles(artifact, len(items))
    except ShopfusionError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if result.corrected_query:
        console.print(f"showing results for [bold]{result.corrected_query}[/bold]")
    table = Table(title=f"{query!r}" + (f" for user {user}" if user else ""))
    for column in ("#", "item", "title", "score", "why"):
        table.add_column(column)
    for rank, (item, score, why) in enumerate(
        zip(result.items, result.scores, result.explanations, strict=True), start=1
    ):
        top = sorted(why.items(), key=lambda kv: -kv[1])[:2]
        table.add_row(
            str(rank),
            items.to_external(int(item)),
            titles[int(item)][:70],
            f"{score:.3f}",
            ", ".join(f"{n} {v:+.2f}" for n, v in top),
        )
    console.print(table)
    for name, values in result.facets.items():
        console.print(f"{name}: " + ", ".join(f"{v.value} ({v.count})" for v in values[:8]))


def _history(artifact: Path, user: str) -> np.ndarray:
    users = IdMap.load("user", artifact / "users.txt")
    row = users.to_index(user)
    try:
        with np.load(artifact / "histories.npz", allow_pickle=False) as h:
            indptr, items = h["indptr"], h["items"]
    except OSError as exc:
        raise ArtifactError(f"{artifact}/histories.npz unreadable ({exc}); retrain the artifact") from None
    return np.asarray(items[indptr[row] : indptr[row + 1]], dtype=np.int64)


def _titles(artifact: Path, n: int) -> list[str]:
    import pandas as pd

    path = artifact / "catalog.parquet"
    if not path.is_file():
        return [""] * n
    titles = pd.read_parquet(path, columns=["title"])["title"]
    return ["" if pd.isna(t) else str(t) for t in titles]


def evaluate_search(
    data: Annotated[Path, typer.Option(help="dataset folder (s3rec layout with items.tsv, or any layout)")],
    queries: Annotated[Path, typer.Option(help="query TSV: qid,query,item_id or qid,user_id,query,item_id")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the machine-readable report here")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="search config (YAML, keys of SearchConfig); default: built-in")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of tie-breaking, bootstrap and training queries")] = 0,
    latency_queries: Annotated[int, typer.Option(help="queries timed end to end (0: none)")] = 500,
    index: Annotated[
        Path | None,
        typer.Option(help="engine folder: reused when built here for the same data, seed and config"),
    ] = None,
) -> None:
    """Known-item or personalized search: full ranking over all items for the full system (fusion),
    bm25 and dense alone; the engine never sees the query file nor any user's last item."""
    console = Console(stderr=True)
    try:
        search_config = load_search_config(config) if config else None
        dataset = load_dataset(data)
        report = run_search_benchmark(
            dataset,
            queries,
            seed=seed,
            config=search_config,
            latency_queries=latency_queries,
            index=index,
        )
    except ShopfusionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    report["command"] = "shopfusion " + shlex.join(sys.argv[1:]) if sys.argv else ""
    Console(width=None if sys.stdout.isatty() else 140).print(_table(report))
    if json_out is not None:
        _write_json(json_out, report)
        console.print(f"wrote {json_out}")


def _table(report: dict[str, Any]) -> Table:
    table = Table(title=f"{report['dataset']} · {report['protocol']} ({report['n_queries']} queries)")
    table.add_column("system")
    for metric in REPORT_METRICS:
        table.add_column(metric, justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    for name, result in report["results"].items():
        cells = [f"{result[metric]:.4f}" if metric in result else "-" for metric in REPORT_METRICS]
        latency = [
            f"{result[key]:.1f}" if key in result else "-" for key in ("latency_p50_ms", "latency_p95_ms")
        ]
        table.add_row(name, *cells, *latency)
    return table
