"""Markdown rows of ``shopfusion bench load --json`` summaries, as recorded in RESULTS.md.

Usage: python benchmarks/load_rows.py RUNS.json [LABEL ...]   (one label per run, optional)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HEADER = (
    "| run | mode | offered /s | ok /s | shed /s | 5xx (not 503) | errors + timeouts + unsent "
    "| ok p50 | ok p90 | ok p99 | ok p99 from send | shed p99 | send lag p99 |\n" + "|---" * 13 + "|"
)


def _ms(stats: dict[str, float] | None, key: str) -> str:
    return "–" if stats is None else f"{stats[key]:.1f} ms"


def row(run: dict[str, Any], label: str) -> str:
    offered = f"{run['target_rps']:.0f}" if run["target_rps"] else f"closed, {run['connections']} conn."
    failed = run["transport_errors"] + run["timeouts"] + run["unsent"]
    cells = [
        label or run["endpoint"],
        run["mode"],
        offered,
        f"{run['ok_rps']:,.1f}",
        f"{run['shed_rps']:,.1f}",
        str(run["server_errors_5xx_not_503"]),
        str(failed),
        _ms(run["ok_latency_ms"], "p50"),
        _ms(run["ok_latency_ms"], "p90"),
        _ms(run["ok_latency_ms"], "p99"),
        _ms(run.get("ok_wire_latency_ms"), "p99"),
        _ms(run["shed_latency_ms"], "p99"),
        _ms(run["send_lag_ms"], "p99"),
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str]) -> None:
    runs = json.loads(Path(argv[0]).read_text())
    labels = argv[1:] + [""] * len(runs)
    print(HEADER)
    for run, label in zip(runs, labels, strict=False):
        print(row(run, label))


if __name__ == "__main__":
    main(sys.argv[1:])
