"""``shopfusion evaluate search`` and ``shopfusion search`` on a tiny s3rec folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shopfusion.cli import app
from shopfusion.data.layouts import load_dataset
from shopfusion.errors import ConfigError, DataError
from shopfusion.evaluation.search import read_queries
from shopfusion.search.engine import SearchConfig, SearchEngine, load_search_config

runner = CliRunner()
COLOURS = ("red", "blue", "green", "black", "white", "pink", "gold", "silver", "purple", "orange")
KINDS = ("lipstick", "shampoo", "mascara", "perfume")


def write_shop(folder: Path, n_users: int = 60, seed: int = 0) -> Path:
    """40 items (4 kinds x 10 colours, distinct titles); users buy within one kind."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    titles = [f"{c} {k} {b}" for k in KINDS for c, b in zip(COLOURS, "abcdefghij", strict=True)]
    lines = []
    for user in range(1, n_users + 1):
        kind = user % 4
        picks = rng.choice(10, size=int(rng.integers(4, 7)), replace=False) + 1 + kind * 10
        lines.append(" ".join(map(str, [user, *picks])))
    (folder / "sequences.txt").write_text("\n".join(lines) + "\n")
    rows = "\n".join(f"{i}\tB{i:05d}\t{t} edition" for i, t in enumerate(titles, start=1))
    (folder / "items.tsv").write_text("item_id\tasin\ttitle\n" + rows + "\n")
    return folder


def write_queries(folder: Path) -> tuple[Path, Path]:
    known = folder / "known.tsv"
    known.write_text("qid\tquery\titem_id\n0\tred lipstik\t1\n1\tblue shampoo\t12\n2\tgold mascara\t27\n")
    personal = folder / "personal.tsv"
    personal.write_text("qid\tuser_id\tquery\titem_id\n0\t4\tlipstick\t3\n1\t5\tshampoo\t14\n")
    return known, personal


def test_evaluate_search_writes_the_report_for_both_protocols(tmp_path: Path) -> None:
    data = write_shop(tmp_path / "shop")
    known, personal = write_queries(tmp_path)
    config = tmp_path / "search.yaml"
    config.write_text("encoders: [use-multilingual]\nknown_item_queries: 100\n")
    for queries, protocol in ((known, "known-item"), (personal, "personalized-search")):
        out = tmp_path / f"{protocol}.json"
        command = ["evaluate", "search", "--data", str(data), "--queries", str(queries), "--json", str(out)]
        result = runner.invoke(app, [*command, "--config", str(config), "--latency-queries", "3"])
        assert result.exit_code == 0, result.output
        report = json.loads(out.read_text())
        assert report["protocol"] == protocol
        assert {"fusion", "bm25", "dense"} <= set(report["results"])
        for metrics in report["results"].values():
            for key in ("MRR@10", "HR@10", "Recall@10", "NDCG@10"):
                assert 0.0 <= metrics[key] <= 1.0
        assert report["results"]["fusion"]["latency_p50_ms"] > 0
    # The typo'd and exact known-item queries all have a unique answer the system must find.
    assert json.loads((tmp_path / "known-item.json").read_text())["results"]["fusion"]["HR@10"] == 1.0


def test_both_query_files_can_share_one_engine_build(tmp_path: Path) -> None:
    data = write_shop(tmp_path / "shop")
    known, personal = write_queries(tmp_path)
    config = tmp_path / "search.yaml"
    config.write_text("encoders: [use-multilingual]\nknown_item_queries: 100\n")
    index = tmp_path / "index"
    reports = []
    for queries in (known, personal, known):
        out = tmp_path / "report.json"
        command = ["evaluate", "search", "--data", str(data), "--queries", str(queries), "--json", str(out)]
        result = runner.invoke(
            app, [*command, "--config", str(config), "--latency-queries", "0", "--index", str(index)]
        )
        assert result.exit_code == 0, result.output
        reports.append(json.loads(out.read_text()))
    assert reports[0]["engine_loaded_from"] is None and reports[1]["engine_loaded_from"] == str(index)
    assert reports[0]["results"]["fusion"]["MRR@10"] == reports[2]["results"]["fusion"]["MRR@10"]
    assert "validation" in reports[0]["engine"]
    # Another seed (or config) is another engine: the folder is not silently reused.
    command = ["evaluate", "search", "--data", str(data), "--queries", str(known), "--seed", "1"]
    result = runner.invoke(app, [*command, "--config", str(config), "--index", str(index)])
    # rich wraps the message at the console's width: compare with the line breaks undone
    assert result.exit_code == 1 and "another --index" in " ".join(result.output.split())


def test_a_bad_search_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "search.yaml"
    config.write_text("encoders: [use-multilingual]\nknown_item_querys: 100\n")
    with pytest.raises(ConfigError, match=r"search\.yaml: .*known_item_querys"):
        load_search_config(config)


def test_a_malformed_query_line_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("qid\tquery\titem_id\n0\tred lipstick\t1\n1\tno item id\n")
    with pytest.raises(DataError, match=r"bad\.tsv:3: expected 3 tab-separated fields"):
        read_queries(bad)
    (tmp_path / "header.tsv").write_text("id\tq\n")
    with pytest.raises(DataError, match=r"header\.tsv:1: header"):
        read_queries(tmp_path / "header.tsv")
    data = write_shop(tmp_path / "shop")
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text("qid\tquery\titem_id\n0\tred\t999\n")
    result = runner.invoke(app, ["evaluate", "search", "--data", str(data), "--queries", str(unknown)])
    assert result.exit_code == 1
    output = result.output.replace("\n", "")  # the console may wrap a long temporary path
    assert "unknown.tsv:2" in output and "999" in output


def test_search_command_prints_results_for_a_user(tmp_path: Path) -> None:
    data = write_shop(tmp_path / "shop")
    dataset = load_dataset(data)
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    histories = dataset.interactions.histories()
    dataset.item_map.save(artifact / "items.txt")
    dataset.user_map.save(artifact / "users.txt")
    dataset.catalog.to_parquet(artifact / "catalog.parquet", index=False)
    np.savez(
        artifact / "histories.npz", indptr=histories.indptr, items=histories.items, users=histories.users
    )
    SearchEngine(SearchConfig(encoders=("use-multilingual",))).fit(dataset.catalog, histories).save(
        artifact / "search"
    )
    result = runner.invoke(
        app, ["search", "red lipstik", "--artifact", str(artifact), "--user", "4", "--k", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "red lipstick" in result.output
    assert "showing results for" in result.output
    missing = runner.invoke(app, ["search", "red", "--artifact", str(tmp_path)])
    assert missing.exit_code == 1 and "shopfusion train" in missing.output
