"""``shopfusion train``: fit the configured pipeline on a dataset and write a versioned artifact."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shopfusion.artifact import save_artifact
from shopfusion.config import default_config, load_config
from shopfusion.data.layouts import load_dataset
from shopfusion.errors import ShopfusionError
from shopfusion.ranking.pipeline import FusionRetriever
from shopfusion.retrieval.base import TrainData
from shopfusion.search.engine import SearchEngine


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    data: Annotated[Path, typer.Option(help="dataset folder or store (any layout `evaluate rec` reads)")],
    out: Annotated[Path, typer.Option(help="artifact directory to write")],
    config: Annotated[
        Path | None, typer.Option(help="pipeline config (YAML); default: the packaged one")
    ] = None,
    search: Annotated[bool, typer.Option(help="also build the search index into OUT/search")] = True,
) -> None:
    """Train every source and the fusion on all events, and save the artifact the service loads."""
    console = Console(stderr=True)
    try:
        pipeline = load_config(config) if config else default_config()
        dataset = load_dataset(data)
        histories = dataset.interactions.histories()
        started = time.perf_counter()
        model = FusionRetriever(pipeline.model_dump()).fit(TrainData(histories, dataset.catalog))
        path = save_artifact(out, model, dataset, histories)
        if search:
            engine = SearchEngine().fit(dataset.catalog, histories, dataset.search_clicks)
            engine.save(path / "search")
    except ShopfusionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"trained {', '.join(s.name for s in pipeline.sources)} + {model.fit_summary()['fusion']} fusion on "
        f"{dataset.n_users} users / {dataset.n_items} items{' and the search index' if search else ''} in "
        f"{time.perf_counter() - started:.1f} s; "
        f"artifact: {path}"
    )
