"""The fused pipeline behind the retriever contract, its config and its artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from shopfusion.artifact import config_hash, load_artifact
from shopfusion.cli import app
from shopfusion.config import default_config, load_config, parse_config
from shopfusion.data.interactions import Histories
from shopfusion.errors import ArtifactError, ConfigError
from shopfusion.ranking.candidates import generate_candidates
from shopfusion.ranking.features import ItemStatistics, build_features, feature_names
from shopfusion.ranking.fusion import FusionInput
from shopfusion.ranking.pipeline import FusionRetriever
from shopfusion.retrieval import ItemToItemRetriever, PopularityRetriever, TrainData

SMALL = {
    "sources": [
        {"name": "item2item", "candidates": 6},
        {"name": "transition", "candidates": 6},
        {"name": "popularity", "candidates": 3},
    ],
    "fusion": {"method": "weighted"},
}


@pytest.fixture(scope="module")
def fitted(clustered_histories: Histories) -> FusionRetriever:
    return FusionRetriever(SMALL).fit(TrainData(clustered_histories))


def test_candidates_keep_each_sources_rank_and_exclude_history(clustered_histories: Histories) -> None:
    data = TrainData(clustered_histories)
    sources = {"item2item": ItemToItemRetriever().fit(data), "popularity": PopularityRetriever().fit(data)}
    requests = Histories.from_lists([[5, 6], [0]], 12)
    batch = generate_candidates(sources, requests, {"item2item": 3, "popularity": 2})
    for row in range(2):
        items = batch.item[batch.group_ptr[row] : batch.group_ptr[row + 1]]
        assert not set(items) & set(requests.row(row))
    proposed = batch.source_ranks <= batch.n_per_source
    assert proposed.any(axis=1).all()  # every candidate was proposed by someone
    assert (proposed[:, 0].sum(), proposed[:, 1].sum()) == (6, 4)
    features = build_features(batch, requests, ItemStatistics.fit(clustered_histories, None))
    assert features.shape == (len(batch), len(feature_names(batch.sources)))
    assert np.isfinite(features[:, :-1]).all()  # price ratio is NaN without prices


def test_fusion_recommends_within_the_cluster(fitted: FusionRetriever) -> None:
    got = fitted.retrieve(Histories.from_lists([[6, 7], [1, 2]], 12), k=3)
    assert set(got.ids[0]) <= {5, 8, 9}
    assert set(got.ids[1]) <= {0, 3, 4}


def test_batch_equals_single_and_scores_are_finite(
    fitted: FusionRetriever, clustered_histories: Histories
) -> None:
    batch = fitted.score(clustered_histories.rows([0, 1, 2]))
    assert np.isfinite(batch).all()
    for i in range(3):
        np.testing.assert_allclose(fitted.score(clustered_histories.rows([i]))[0], batch[i], rtol=1e-5)


def test_a_scores_only_fusion_serves_without_the_other_features(
    fitted: FusionRetriever, clustered_histories: Histories
) -> None:
    """Weighted fusion reads only the source scores; skipping the other features must not change a
    single score, and the fast path must really be taken."""
    requests = clustered_histories.rows([0, 1, 2])
    batch, fast = fitted.candidates(requests)
    assert fast.feature_names == tuple(f"{s}_score" for s in fast.sources)
    names = tuple(fitted.sources_)
    full = FusionInput(
        build_features(batch, requests, fitted.stats_), tuple(feature_names(names)), names, batch.group_ptr
    )
    np.testing.assert_allclose(fitted.fusion_.predict(fast), fitted.fusion_.predict(full), rtol=1e-6)


def test_select_fusion_chooses_on_whole_candidate_lists(
    clustered_histories: Histories, tmp_path: Path
) -> None:
    config = {**SMALL, "fusion": {"method": "select", "params": {"methods": ["weighted", "lambdamart"]}}}
    model = FusionRetriever(config).fit(TrainData(clustered_histories))
    fusion = model.fusion_
    assert fusion.chosen_ in {"weighted", "lambdamart"}
    assert set(fusion.selection_ndcg_) <= {"weighted", "lambdamart"} and fusion.selection_ndcg_
    assert fusion.selection_ndcg_[fusion.chosen_] == max(fusion.selection_ndcg_.values())
    assert model.fit_summary()["fusion"] == fusion.chosen_
    model.save(tmp_path / "m")
    loaded = FusionRetriever.load(tmp_path / "m")
    assert loaded.fusion_.chosen_ == fusion.chosen_
    np.testing.assert_allclose(loaded.score(clustered_histories), model.score(clustered_histories), rtol=1e-5)


def test_save_load_round_trip(
    fitted: FusionRetriever, clustered_histories: Histories, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "fusion")
    loaded = FusionRetriever.load(tmp_path / "fusion")
    np.testing.assert_allclose(
        loaded.score(clustered_histories), fitted.score(clustered_histories), rtol=1e-5
    )


def test_config_errors_name_the_broken_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'sasrek'"):
        parse_config({"sources": [{"name": "x", "type": "sasrek"}]})
    with pytest.raises(ConfigError, match=r"fusion\.method"):
        parse_config({"sources": [{"name": "item2item"}], "fusion": {"method": "magic"}})
    with pytest.raises(ConfigError, match="repeated"):
        parse_config({"sources": [{"name": "item2item"}, {"name": "item2item"}]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_packaged_default_config_is_valid() -> None:
    config = default_config()
    assert config.fusion.method == "select"
    assert len(config.sources) >= 3


def test_train_writes_an_artifact_the_service_can_load(tmp_path: Path) -> None:
    from tests_support import write_s3rec_folder

    data = write_s3rec_folder(tmp_path / "tiny")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "artifact"
    result = CliRunner().invoke(
        app, ["train", "--config", str(config), "--data", str(data), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    artifact = load_artifact(out)
    assert artifact.manifest["data"]["n_users"] == 80
    assert len(artifact.item_map) == artifact.histories.n_items
    scores = artifact.model.score(artifact.histories.rows([0]))
    assert scores.shape == (1, len(artifact.item_map))
    from shopfusion.search.engine import SearchEngine

    found = SearchEngine.load(out / "search").search("product 7", k=3)
    assert artifact.item_map.to_external(int(found.items[0])) == "7"
    # An artifact written before a config key existed (here `fusion.prune_sources`) still loads:
    # the hash covers the file as written, and the missing key takes its default.
    written = yaml.safe_load((out / "config.yaml").read_text())
    del written["fusion"]["prune_sources"]
    (out / "config.yaml").write_text(yaml.safe_dump(written))
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "config_hash": config_hash(written)}))
    assert load_artifact(out).config.fusion.prune_sources
    (out / "config.yaml").write_text(yaml.safe_dump({**SMALL, "seed": 3}))
    with pytest.raises(ArtifactError, match="altered"):
        load_artifact(out)


def test_ablation_reports_every_variant(tmp_path: Path) -> None:
    from tests_support import write_s3rec_folder

    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    data = write_s3rec_folder(tmp_path / "tiny")
    out = tmp_path / "ablation.json"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "ablation",
            "--data",
            str(data),
            "--config",
            str(config),
            "--json",
            str(out),
            "--max-users",
            "40",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(out.read_text())["results"]
    assert {"fusion minus item2item", "fusion minus transition", "fusion minus popularity"} <= set(rows)
    assert any("lambdamart" in label for label in rows) and any("attention" in label for label in rows)


def test_new_user_gets_popular_items_and_a_session_gets_related_ones(fitted: FusionRetriever) -> None:
    cold = fitted.retrieve(Histories.from_lists([[]], 12), k=1)
    assert cold.ids[0][0] == 0  # the best seller
    session = fitted.retrieve(Histories.from_lists([[7]], 12), k=3)
    assert set(session.ids[0]) <= {5, 6, 8, 9}


def test_latency_command_reports_percentiles(tmp_path: Path) -> None:
    import json

    from tests_support import write_s3rec_folder

    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    data = write_s3rec_folder(tmp_path / "tiny")
    out = tmp_path / "artifact"
    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["train", "--config", str(config), "--data", str(data), "--out", str(out)]
        ).exit_code
        == 0
    )
    result = runner.invoke(app, ["evaluate", "latency", "--artifact", str(out), "--requests", "30"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"]
    assert 0 < report["cpu_p50_ms"] <= report["cpu_p99_ms"]
    assert set(report["sources_cpu_ms"]) == {"item2item", "transition", "popularity"}
    assert all(v >= 0 for v in report["sources_cpu_ms"].values())


def test_a_never_bought_item_reaches_shoppers_through_its_text(
    clustered_histories: Histories, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from content_support import clustered_catalog

    monkeypatch.setenv("SHOPFUSION_CACHE", str(tmp_path / "cache"))
    config = {
        "sources": [
            {"name": "item2item", "candidates": 4},
            {"name": "content", "params": {"scoring": "profile"}, "candidates": 4},
        ],
        "fusion": {"method": "weighted"},
    }
    model = FusionRetriever(config).fit(TrainData(clustered_histories, clustered_catalog()))
    # Item 10 is a lipstick nobody bought; item 11 a TV nobody bought.
    lipstick_fan = model.retrieve(Histories.from_lists([[0, 1, 2, 3, 4]], 12), k=2)
    tv_fan = model.retrieve(Histories.from_lists([[5, 6, 7, 8, 9]], 12), k=2)
    assert 10 in lipstick_fan.ids[0]
    assert 11 in tv_fan.ids[0]


def test_multitask_fusion_on_a_yoochoose_style_stream_with_buys(tmp_path: Path) -> None:
    """Clicks + buys (two event types): the multi-task fusion trains both heads and competes in
    `select`; on clicks alone it cannot, and `select` falls back to the other methods."""
    from tests_support import write_yoochoose_folder

    from shopfusion.data.layouts import load_dataset

    sources = [{"name": "transition", "candidates": 10}, {"name": "item2item", "candidates": 10}]
    select = {"method": "select", "params": {"methods": ["multitask", "weighted"]}}
    with_buys = load_dataset(write_yoochoose_folder(tmp_path / "buys", n_sessions=400))
    histories = with_buys.interactions.histories()
    assert histories.kinds is not None and len(set(histories.kinds.tolist())) == 2
    multitask = FusionRetriever(
        {"sources": sources, "fusion": {"method": "multitask"}, "holdout_min_length": 2}
    )
    multitask.fit(TrainData(histories, with_buys.catalog))
    heads = multitask.fusion_.heads(multitask.candidates(histories.rows([0, 1, 2]))[1])
    assert heads.shape[1] == 2 and np.isfinite(heads).all()
    chooser = FusionRetriever({"sources": sources, "fusion": select, "holdout_min_length": 2})
    chooser.fit(TrainData(histories, with_buys.catalog))
    assert set(chooser.fusion_.selection_ndcg_) == {"multitask", "weighted"}

    clicks = load_dataset(write_yoochoose_folder(tmp_path / "clicks", n_sessions=400, buys=False))
    chooser = FusionRetriever({"sources": sources, "fusion": select, "holdout_min_length": 2})
    chooser.fit(TrainData(clicks.interactions.histories(), clicks.catalog))
    assert set(chooser.fusion_.selection_ndcg_) == {"weighted"}


def test_ablation_keeps_the_chosen_method_for_the_minus_source_variants() -> None:
    from shopfusion.evaluation.ablation import ablation_variants

    config = parse_config(
        {**SMALL, "fusion": {"method": "select", "params": {"methods": ["weighted", "lambdamart"]}}}, "test"
    )
    variants = ablation_variants(config, chosen="weighted")
    assert variants["fusion minus item2item"].fusion.method == "weighted"
    assert [s.name for s in variants["fusion minus item2item"].sources] == ["transition", "popularity"]
    assert variants["fusion (select, all sources)"].fusion.method == "select"
    assert {"fusion (lambdamart, all sources)", "fusion (attention, all sources)"} <= set(variants)
    assert ablation_variants(config)["fusion minus item2item"].fusion.method == "select"


def test_fit_summary_says_how_an_iterative_source_stopped(clustered_histories: Histories) -> None:
    sasrec = {"hidden_size": 8, "max_len": 4, "max_epochs": 2, "patience": 5, "n_negatives": None}
    config = {
        "sources": [{"name": "item2item", "candidates": 6}, {"name": "sasrec", "params": sasrec}],
        "fusion": {"method": "weighted"},
    }
    summary = FusionRetriever(config).fit(TrainData(clustered_histories)).fit_summary()
    assert summary["sasrec_training"]["epochs"] == 2
    assert summary["sasrec_training"]["stopped_by"] == "max_epochs"
    assert "item2item_training" not in summary


def test_a_dataset_without_item_text_still_trains_and_evaluates_with_a_content_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3-Rec folder with no items.tsv (sequences only, as other Amazon categories may come):
    the content source has nothing to embed, but the pipeline must still train, fuse and report."""
    import json

    from tests_support import write_s3rec_folder

    monkeypatch.setenv("SHOPFUSION_CACHE", str(tmp_path / "cache"))
    data = write_s3rec_folder(tmp_path / "no_text")
    (data / "items.tsv").unlink()
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"name": "item2item", "candidates": 6},
                    {"name": "content", "params": {"encoder": "use-multilingual"}, "candidates": 6},
                    {"name": "popularity", "candidates": 3},
                ],
                "fusion": {"method": "select", "params": {"methods": ["weighted", "lambdamart"]}},
            }
        )
    )
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app, ["evaluate", "rec", "--data", str(data), "--config", str(config), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"item2item", "content", "popularity", "fusion"}
    # Without text the fusion has to lean on behaviour: it keeps up with item2item.
    assert results["fusion"]["NDCG@10"] >= 0.9 * results["item2item"]["NDCG@10"] > 0
