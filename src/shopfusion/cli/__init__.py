"""The ``shopfusion`` command line. Each sub-module registers its own commands."""

from __future__ import annotations

import typer

from shopfusion.cli.bench import register as register_bench
from shopfusion.cli.demo import register as register_demo
from shopfusion.cli.evaluate import register as register_evaluate
from shopfusion.cli.ingest import register as register_ingest
from shopfusion.cli.report import register as register_report
from shopfusion.cli.sample import register as register_sample
from shopfusion.cli.search import register as register_search
from shopfusion.cli.serve import register as register_serve
from shopfusion.cli.train import register as register_train

app = typer.Typer(
    name="shopfusion",
    help="Product search and recommendations from pretrained encoders fused with behavioural models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for _register in (
    register_demo,
    register_sample,
    register_ingest,
    register_train,
    register_evaluate,
    register_search,
    register_report,
    register_serve,
    register_bench,
):
    _register(app)


def main() -> None:
    app()
