"""``shopfusion demo``: the main job a new user runs first.

It builds the bilingual sample shop, ingests it into the embedded store (the same
path a real shop's files take), trains every candidate source, evaluates them
honestly and writes a Markdown report with a chart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shopfusion.cli.evaluate import results_table
from shopfusion.cli.ingest import print_summary
from shopfusion.data.ingest import ingest_catalog, ingest_events
from shopfusion.data.sample import write_sample
from shopfusion.data.store import SQLiteStore
from shopfusion.evaluation.benchmark import run_rec_benchmark
from shopfusion.evaluation.report import render_report

DEMO_MODELS = ("popularity", "item2item", "als")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    workdir: Annotated[Path, typer.Option(help="where the sample shop, store and report go")] = Path(
        "runs/demo"
    ),
    seed: Annotated[int, typer.Option(help="seed of the sample shop")] = 7,
    users: Annotated[int, typer.Option(help="number of shoppers in the sample")] = 600,
) -> None:
    """Generate the sample shop, ingest it, train and evaluate every source, write a report."""
    console = Console(width=None if sys.stdout.isatty() else 140)
    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("1/4 sample shop")
    files = write_sample(workdir / "sample", seed=seed, n_users=users)
    console.print(f"catalog {files['catalog']}\nevents  {files['events']}")

    console.rule("2/4 ingest into the embedded store")
    store_path = workdir / "shopfusion.db"
    store_path.unlink(missing_ok=True)  # the demo starts from scratch every time
    with SQLiteStore(store_path) as store:
        reports = [
            ingest_catalog(store, files["catalog"], {}, batch_size=1000),
            ingest_events(store, files["events"], {}, batch_size=1000, allow_unknown_items=False),
        ]
        print_summary(reports, store)
        dataset = store.to_dataset(name="sample-shop")

    console.rule("3/4 train and evaluate (leave-one-out, tuned on validation only)")
    report = run_rec_benchmark(dataset, DEMO_MODELS, seed=0, progress=sys.stderr.isatty())
    report["command"] = f"shopfusion demo --workdir {workdir} --seed {seed} --users {users}"
    console.print(results_table(report))

    console.rule("4/4 report")
    results_path = workdir / "evaluation.json"
    results_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    markdown = render_report(results_path, workdir / "report")
    console.print(f"results {results_path}\nreport  {markdown}")
