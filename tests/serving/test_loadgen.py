"""The open-loop load generator against a real server on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from serving_support import ServerThread, make_settings

from shopfusion.serving.app import create_app
from shopfusion.serving.loadgen import request_paths, run_load


def test_open_loop_load_reports_rate_statuses_and_latency(sample_artifact: Path, tmp_path: Path) -> None:
    users = (sample_artifact / "users.txt").read_text().split()
    items = (sample_artifact / "items.txt").read_text().split()
    paths = request_paths("recommend", users, items, ["tv"], 60, seed=1)
    assert paths == request_paths("recommend", users, items, ["tv"], 60, seed=1)  # reproducible mix
    # Burst 20, then 10/s: a 60 request burst at 40/s must see some 429s, and never a 500.
    app = create_app(make_settings(sample_artifact, tmp_path, rate_limit_per_s=10, rate_limit_burst=20))
    with ServerThread(app) as server:
        result = asyncio.run(run_load(server.url, paths, rate=40, duration_s=1.5, endpoint="recommend"))
    summary = result.summary()
    assert summary["sent"] == 60
    assert summary["statuses"].get("200", 0) >= 20 and summary["statuses"].get("429", 0) >= 10
    assert summary["server_errors_5xx_not_503"] == 0 and summary["transport_errors"] == 0
    assert 0 < summary["ok_latency_ms"]["p50"] <= summary["ok_latency_ms"]["p99"]


def test_paths_are_url_encoded() -> None:
    paths = request_paths("search", ["u 1"], ["i/1"], ["电视 4K"], 2)
    assert paths[0].startswith("/v1/search?q=%E7%94%B5%E8%A7%86%204K&user_id=u%201")
    assert request_paths("similar", ["u"], ["i/1"], ["q"], 1) == ["/v1/similar/i%2F1?k=10"]


def test_bench_load_command_appends_a_summary(sample_artifact: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from shopfusion.cli import app as cli

    out = tmp_path / "load.json"
    with ServerThread(create_app(make_settings(sample_artifact, tmp_path))) as server:
        for endpoint in ("recommend", "similar"):
            args = ["bench", "load", "--url", server.url, "--artifact", str(sample_artifact), "--endpoint"]
            args += [endpoint, "--rate", "20", "--duration", "1", "--warmup", "0", "--json", str(out)]
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 0, result.output
    runs = json.loads(out.read_text())
    assert [r["endpoint"] for r in runs] == ["recommend", "similar"]
    assert all(r["sent"] == 20 and r["statuses"] == {"200": 20} for r in runs)
