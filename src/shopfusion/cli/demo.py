"""``shopfusion demo``: the main job a new user runs first.

It builds the bilingual sample shop, ingests it into the embedded store (the same
path a real shop's files take), trains every candidate source, evaluates them
honestly, writes a Markdown report with a chart, trains the fused pipeline and the search
index into an artifact and serves the storefront on it at a printed URL (``--no-serve`` stops
before serving, as tests and CI do; so does ``SHOPFUSION_DEMO_NO_SERVE=1``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shopfusion.artifact import save_artifact
from shopfusion.cli.evaluate import results_table
from shopfusion.cli.ingest import print_summary
from shopfusion.cli.serve import demo_keys, run_server
from shopfusion.config import parse_config
from shopfusion.data.ingest import ingest_catalog, ingest_events
from shopfusion.data.sample import write_sample
from shopfusion.data.store import SQLiteStore
from shopfusion.evaluation.benchmark import run_rec_benchmark
from shopfusion.evaluation.report import render_report
from shopfusion.ranking.pipeline import FusionRetriever
from shopfusion.retrieval.base import TrainData
from shopfusion.search.engine import SearchEngine
from shopfusion.serving.security import hash_key

DEMO_MODELS = ("popularity", "item2item", "als")
#: The served pipeline: the cheap behavioural sources fused by LambdaMART (trains in seconds).
DEMO_PIPELINE = {
    "sources": [
        {"name": "item2item", "candidates": 50},
        {"name": "transition", "candidates": 30},
        {"name": "als", "params": {"factors": 32}, "candidates": 50},
        {"name": "popularity", "candidates": 20},
    ],
    "fusion": {"method": "lambdamart"},
}


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    workdir: Annotated[Path, typer.Option(help="where the sample shop, store and report go")] = Path(
        "runs/demo"
    ),
    seed: Annotated[int, typer.Option(help="seed of the sample shop")] = 7,
    users: Annotated[int, typer.Option(help="number of shoppers in the sample")] = 600,
    serve: Annotated[bool, typer.Option(help="end by serving the storefront (until Ctrl-C)")] = True,
    host: Annotated[str, typer.Option(help="storefront address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="storefront port")] = 8000,
) -> None:
    """Generate the sample shop, ingest it, train and evaluate every source, write a report,
    then serve the storefront on the trained pipeline."""
    console = Console(width=None if sys.stdout.isatty() else 140)
    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("1/5 sample shop")
    files = write_sample(workdir / "sample", seed=seed, n_users=users)
    console.print(f"catalog {files['catalog']}\nevents  {files['events']}")

    console.rule("2/5 ingest into the embedded store")
    store_path = workdir / "shopfusion.db"
    store_path.unlink(missing_ok=True)  # the demo starts from scratch every time
    with SQLiteStore(store_path) as store:
        reports = [
            ingest_catalog(store, files["catalog"], {}, batch_size=1000),
            ingest_events(store, files["events"], {}, batch_size=1000, allow_unknown_items=False),
        ]
        print_summary(reports, store)
        dataset = store.to_dataset(name="sample-shop")

    console.rule("3/5 train and evaluate (leave-one-out, tuned on validation only)")
    report = run_rec_benchmark(dataset, DEMO_MODELS, seed=0, progress=sys.stderr.isatty())
    report["command"] = f"shopfusion demo --workdir {workdir} --seed {seed} --users {users}"
    console.print(results_table(report))

    console.rule("4/5 report")
    results_path = workdir / "evaluation.json"
    results_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    markdown = render_report(results_path, workdir / "report")
    console.print(f"results {results_path}\nreport  {markdown}")

    console.rule("5/5 storefront")
    config = parse_config(DEMO_PIPELINE, "demo pipeline")
    histories = dataset.interactions.histories()
    model = FusionRetriever(config.model_dump()).fit(TrainData(histories, dataset.catalog))
    artifact = save_artifact(workdir / "artifact", model, dataset, histories)
    # The storefront's search box needs the search index, as `shopfusion train` builds it (~20 s
    # on the sample shop; without it every search answered 503 "no search index").
    SearchEngine().fit(dataset.catalog, histories, dataset.search_clicks).save(artifact / "search")
    console.print(f"artifact {artifact} (with its search index)")
    if not serve or os.environ.get("SHOPFUSION_DEMO_NO_SERVE") == "1":
        console.print(
            f"serve it with: shopfusion serve --artifact {artifact} --report-dir {workdir / 'report'}"
        )
        return
    admin_key, storefront_key = demo_keys()
    settings = {
        "artifact": artifact,
        "store": workdir / "service-events.db",
        "report_dir": workdir / "report",
        "admin_key_hashes": [hash_key(admin_key)],
        "storefront_key": storefront_key,
    }
    run_server(settings, host, port, banner=f"admin key for this session: {admin_key}\n")
