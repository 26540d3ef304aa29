"""``shopfusion evaluate rec``: benchmark candidate sources on a dataset folder."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shopfusion.artifact import load_artifact
from shopfusion.config import default_config, load_config
from shopfusion.data.layouts import load_dataset
from shopfusion.errors import ConfigError, ShopfusionError
from shopfusion.evaluation.ablation import run_ablation
from shopfusion.evaluation.benchmark import Protocol, run_rec_benchmark
from shopfusion.evaluation.latency import measure_latency

TABLE_METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR@10", "Recall@100", "coverage@10")

evaluate_app = typer.Typer(help="Measure models on real data (full ranking, tuned on validation only).")


def register(app: typer.Typer) -> None:
    app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("rec")
def evaluate_rec(
    data: Annotated[
        Path, typer.Option(help="dataset folder: s3rec or timestamped layout, or a shopfusion export/store")
    ],
    models: Annotated[
        str | None,
        typer.Option(help="comma-separated single sources, each tuned on validation, instead of a pipeline"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="pipeline config (YAML); default: the packaged default pipeline")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the machine-readable report here")
    ] = None,
    protocol: Annotated[str, typer.Option(help="s3rec-loo (leave-one-out) or temporal")] = "s3rec-loo",
    seed: Annotated[int, typer.Option(help="seed of tie-breaking and bootstrap")] = 0,
    tune: Annotated[
        bool, typer.Option(help="search each model's hyper-parameters on the validation target")
    ] = True,
) -> None:
    """Train on the training part, tune on the validation target, report the test target."""
    console = Console(stderr=True)
    if protocol not in ("s3rec-loo", "temporal"):
        raise typer.BadParameter("use s3rec-loo or temporal", param_hint="--protocol")
    try:
        if models and config:
            raise ConfigError("give --models or --config, not both")
        pipeline = load_config(config) if config else None
        dataset = load_dataset(data)
        report = run_rec_benchmark(
            dataset,
            [m.strip() for m in models.split(",") if m.strip()] if models else None,
            protocol=_protocol(protocol),
            seed=seed,
            tune=tune,
            progress=sys.stderr.isatty(),
            config=pipeline,
        )
    except ShopfusionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    report["command"] = "shopfusion " + shlex.join(sys.argv[1:]) if sys.argv else ""
    wide = None if sys.stdout.isatty() else 140  # pipes and CI logs get the whole table
    Console(width=wide).print(results_table(report))
    if json_out is not None:
        _write_json(json_out, report)
        console.print(f"wrote {json_out}")


def _write_json(path: Path, report: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    tmp.replace(path)


def _protocol(name: str) -> Protocol:
    return "temporal" if name == "temporal" else "s3rec-loo"


def results_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"{report['dataset']} · {report['protocol']} · {report['split']} "
        f"({report['n_users_evaluated']} users, {report['n_items']} items)"
    )
    table.add_column("model")
    for metric in TABLE_METRICS:
        table.add_column(metric, justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("eval s", justify="right")
    for name, result in report["results"].items():
        cells = [f"{result[m]:.4f}" if m in result else "-" for m in TABLE_METRICS]
        table.add_row(name, *cells, f"{result['fit_seconds']:.1f}", f"{result['eval_seconds']:.1f}")
    return table


@evaluate_app.command("ablation")
def evaluate_ablation(
    data: Annotated[Path, typer.Option(help="dataset folder (any layout `evaluate rec` reads)")],
    config: Annotated[Path | None, typer.Option(help="pipeline config; default: the packaged one")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the machine-readable table here")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of tie-breaking and bootstrap")] = 0,
    max_users: Annotated[
        int | None, typer.Option(help="evaluate on a random sample of this many test users (all train)")
    ] = None,
) -> None:
    """The pipeline, the pipeline minus each source, and each fusion method, on the test target."""
    console = Console(stderr=True)
    try:
        pipeline = load_config(config) if config else default_config()
        report = run_ablation(
            load_dataset(data), pipeline, seed=seed, progress=sys.stderr.isatty(), max_users=max_users
        )
    except ShopfusionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    report["command"] = "shopfusion " + shlex.join(sys.argv[1:]) if sys.argv else ""
    table = Table(title=f"ablation · {report['dataset']} · test ({report['n_users_evaluated']} users)")
    for column in ("variant", "HR@10", "NDCG@10", "NDCG@10 95% CI", "HR@20", "NDCG@20", "s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for label, row in report["results"].items():
        lo, hi = row["ci95"]["NDCG@10"]
        table.add_row(
            label,
            f"{row['HR@10']:.4f}",
            f"{row['NDCG@10']:.4f}",
            f"{lo:.4f}–{hi:.4f}",
            f"{row['HR@20']:.4f}",
            f"{row['NDCG@20']:.4f}",
            f"{row['fusion_and_eval_seconds']:.0f}",
        )
    Console(width=None if sys.stdout.isatty() else 140).print(table)
    if json_out is not None:
        _write_json(json_out, report)
        console.print(f"wrote {json_out}")


@evaluate_app.command("latency")
def evaluate_latency(
    artifact: Annotated[Path, typer.Option(help="artifact directory written by `shopfusion train`")],
    requests: Annotated[int, typer.Option(help="number of timed single-user requests")] = 500,
    k: Annotated[int, typer.Option(help="items returned per request")] = 10,
) -> None:
    """Time one user's full ranking (every source, candidates, fusion, top-k) on this machine."""
    try:
        result = measure_latency(load_artifact(artifact), n_requests=requests, k=k)
    except ShopfusionError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    Console().print_json(data=result)
