"""The evaluation report: Markdown tables and bar charts from any results JSON."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from shopfusion.cli.report import register
from shopfusion.errors import DataError
from shopfusion.evaluation.report import load_results, render_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def results(**models: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": "toy",
        "protocol": "s3rec-loo",
        "split": "test",
        "n_users": 1234,
        "n_items": 567,
        "results": models,
        "created_at": "2025-01-01T00:00:00+00:00",
        "command": "shopfusion evaluate rec --dataset toy",
    }


RESULTS = results(
    popularity={
        "HR@10": 0.014,
        "NDCG@10": 0.006,
        "MRR@10": 0.004,
        "HR@20": 0.022,
        "NDCG@20": 0.008,
        "coverage@10": 0.01,
        "novelty@10": 9.5,
        "fit_seconds": 0.1,
        "eval_seconds": 2.0,
        "ci95": {"HR@10": [0.012, 0.016], "NDCG@10": [0.005, 0.007]},
        "params": {},
        "validation": [],
    },
    item2item={
        "HR@10": 0.061,
        "NDCG@10": 0.031,
        "MRR@10": 0.022,
        "HR@20": 0.09,
        "NDCG@20": 0.038,
        "coverage@10": 0.4,
        "novelty@10": 11.2,
        "fit_seconds": 1.5,
        "eval_seconds": 2.5,
        "ci95": {"HR@10": [0.058, 0.064], "NDCG@10": [0.029, 0.033]},
        "params": {"neighbours": 200},
    },
    my_new_model={"HR@10": 0.05, "Recall@100": 0.4, "n_users_evaluated": 1200},  # no CI, other keys
)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_and_chart_from_a_dict(tmp_path: Path) -> None:
    path = render_report(RESULTS, tmp_path / "out")
    assert path == tmp_path / "out" / "report.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Evaluation report: toy · s3rec-loo · test")
    assert "![" in text and "(metrics.png)" in text
    chart = tmp_path / "out" / "metrics.png"
    width, height = png_size(chart)
    assert width >= 600 and height >= 400
    assert chart.stat().st_size > 10_000


def test_table_lists_every_model_and_metric(tmp_path: Path) -> None:
    text = render_report(RESULTS, tmp_path).read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for model in RESULTS["results"]:
        assert any(row.startswith(f"| {model} |") for row in rows), model
    metrics = {k for m in RESULTS["results"].values() for k, v in m.items() if isinstance(v, float | int)}
    headers = " ".join(row for row in rows if row.startswith("| model |"))
    for metric in metrics - {"fit_seconds", "eval_seconds"}:
        assert f" {metric} " in headers, metric
    assert "fit (s)" in headers and "eval (s)" in headers


def test_cells_show_values_intervals_and_best(tmp_path: Path) -> None:
    text = render_report(RESULTS, tmp_path).read_text(encoding="utf-8")
    assert "**0.0610** [0.0580, 0.0640]" in text  # best HR@10, with its interval
    assert "0.0140 [0.0120, 0.0160]" in text
    assert "| my_new_model | 0.0500 | – |" in text  # a metric the model lacks
    assert "neighbours=200" in text
    assert "shopfusion evaluate rec --dataset toy" in text
    assert "n_users: 1,234" in text


def test_several_files_get_a_section_and_chart_each(tmp_path: Path) -> None:
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps(RESULTS), encoding="utf-8")
    search = results(bm25={"NDCG@10": 0.41, "MRR@10": 0.38}, dense={"NDCG@10": 0.47, "MRR@10": 0.43})
    search["dataset"] = "shop-search"
    report = render_report([rec, search], tmp_path / "out").read_text(encoding="utf-8")
    assert "## 1. toy · s3rec-loo · test" in report
    assert "## 2. shop-search · s3rec-loo · test" in report
    assert "(metrics.png)" in report and "(metrics-2.png)" in report
    assert png_size(tmp_path / "out" / "metrics-2.png")[0] > 0


def test_chart_falls_back_to_the_smallest_cutoff_and_skips_without_metrics(tmp_path: Path) -> None:
    render_report(results(a={"NDCG@5": 0.2, "HR@5": 0.3}), tmp_path / "k5")
    assert (tmp_path / "k5" / "metrics.png").exists()
    text = render_report(results(a={"throughput": 12.5}), tmp_path / "none").read_text(encoding="utf-8")
    assert not (tmp_path / "none" / "metrics.png").exists()
    assert "| a | 12.500 |" in text and "metrics.png" not in text


def test_markdown_special_characters_in_names_are_escaped(tmp_path: Path) -> None:
    text = render_report(results(**{"a|b": {"HR@10": 0.1}}), tmp_path).read_text(encoding="utf-8")
    assert "| a\\|b |" in text


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"results": {', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json.*not valid JSON"):
        render_report(bad, tmp_path / "out")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "'results'"),
        ('{"results": {}}', "'results'"),
        ('{"results": {"m": 3}}', r"results\['m'\]"),
        ('{"results": {"m": {"HR@10": 0.1, "ci95": {"HR@10": [0.1]}}}}', r"\[low, high\]"),
    ],
)
def test_wrong_shape_names_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "shape.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"shape\.json.*{message}"):
        load_results(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.json"):
        render_report([tmp_path / "nope.json"], tmp_path / "out")


def test_cli_renders_several_files(tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)  # keep "report" a sub-command, as in the real CLI
    register(app)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(RESULTS), encoding="utf-8")
    second.write_text(json.dumps(results(x={"NDCG@10": 0.3})), encoding="utf-8")
    runner = CliRunner()
    ok = runner.invoke(
        app, ["report", "--json", str(first), "--json", str(second), "--out", str(tmp_path / "r")]
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "r" / "report.md").exists() and (tmp_path / "r" / "metrics-2.png").exists()
    (tmp_path / "bad.json").write_text("not json", encoding="utf-8")
    bad = runner.invoke(app, ["report", "--json", str(tmp_path / "bad.json"), "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 1
    assert "bad.json" in bad.output
