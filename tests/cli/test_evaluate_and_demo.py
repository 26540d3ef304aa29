"""End to end through the command line, on data the tests make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests_support import write_s3rec_folder
from typer.testing import CliRunner

from shopfusion.cli import app
from shopfusion.search.engine import SearchEngine

runner = CliRunner()


def test_evaluate_rec_writes_the_documented_json(tmp_path: Path) -> None:
    data = write_s3rec_folder(tmp_path / "tiny")
    out = tmp_path / "out.json"
    result = runner.invoke(
        app, ["evaluate", "rec", "--data", str(data), "--models", "popularity,item2item", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["protocol"] == "s3rec-loo" and report["split"] == "test"
    assert set(report["results"]) == {"popularity", "item2item"}
    for metrics in report["results"].values():
        for key in ("HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR@10", "fit_seconds", "eval_seconds"):
            assert 0 <= metrics[key] < 1e4
    assert report["results"]["item2item"]["NDCG@10"] > report["results"]["popularity"]["NDCG@10"]
    assert "item2item" in result.output  # the people's table


def test_evaluate_rec_names_an_unknown_model(tmp_path: Path) -> None:
    data = write_s3rec_folder(tmp_path / "tiny")
    result = runner.invoke(app, ["evaluate", "rec", "--data", str(data), "--models", "popularity,bert"])
    assert result.exit_code == 1
    assert "unknown model 'bert'" in result.output


def test_evaluate_rec_on_a_folder_without_data(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "rec", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "sequences.txt" in result.output


def test_demo_runs_end_to_end_and_ends_serving_the_storefront(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: dict[str, Any] = {}

    def fake_run_server(settings: dict[str, Any], host: str, port: int, banner: str = "") -> None:
        served.update(settings=settings, host=host, port=port, banner=banner)

    monkeypatch.setattr("shopfusion.cli.demo.run_server", fake_run_server)
    monkeypatch.delenv("SHOPFUSION_DEMO_NO_SERVE", raising=False)
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path), "--users", "150", "--port", "8123"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "evaluation.json").read_text())
    results = report["results"]
    assert set(results) == {"popularity", "item2item", "als"}
    assert results["item2item"]["NDCG@10"] > results["popularity"]["NDCG@10"]
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "report" / "metrics.png").exists()
    # The storefront is served on the artifact the demo trained (run_server prints the URL).
    assert served["port"] == 8123 and served["settings"]["artifact"] == tmp_path / "artifact"
    assert served["settings"]["storefront_key"] and served["settings"]["admin_key_hashes"]
    assert (tmp_path / "artifact" / "manifest.json").exists()
    # ... with its search index, so the storefront's search box answers (the Chinese sample too)
    engine = SearchEngine.load(tmp_path / "artifact" / "search")
    assert len(engine.search("手机", k=3).items) == 3
