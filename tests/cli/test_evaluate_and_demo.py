"""End to end through the command line, on data the tests make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from shopfusion.cli import app

runner = CliRunner()


def write_s3rec_folder(folder: Path, n_users: int = 80, seed: int = 0) -> Path:
    """Users buy within one of four item groups, in order: sequential signal a model can find."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    lines = []
    for user in range(1, n_users + 1):
        group = user % 4
        start = int(rng.integers(0, 5))
        items = [1 + group * 10 + (start + j) % 10 for j in range(int(rng.integers(5, 9)))]
        lines.append(" ".join(map(str, [user, *items])))
    (folder / "sequences.txt").write_text("\n".join(lines) + "\n")
    titles = "\n".join(f"{i}\tB{i:05d}\tProduct &amp; {i}" for i in range(1, 41))
    (folder / "items.tsv").write_text("item_id\tasin\ttitle\n" + titles + "\n")
    return folder


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


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path), "--users", "150"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "evaluation.json").read_text())
    results = report["results"]
    assert set(results) == {"popularity", "item2item", "als"}
    assert results["item2item"]["NDCG@10"] > results["popularity"]["NDCG@10"]
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "report" / "metrics.png").exists()
