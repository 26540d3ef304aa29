"""Serve-time source pruning: backward elimination on the selection requests, one-standard-error rule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shopfusion.data.interactions import FloatArray, Histories
from shopfusion.ranking.candidates import generate_candidates
from shopfusion.ranking.pipeline import FusionRetriever
from shopfusion.ranking.pruning import GainsOf, prune_sources
from shopfusion.retrieval import ItemToItemRetriever, PopularityRetriever, TrainData
from shopfusion.retrieval.transition import TransitionRetriever


def test_a_restricted_batch_is_the_batch_its_sources_alone_make(clustered_histories: Histories) -> None:
    data = TrainData(clustered_histories)
    sources = {
        "item2item": ItemToItemRetriever().fit(data),
        "transition": TransitionRetriever().fit(data),
        "popularity": PopularityRetriever().fit(data),
    }
    per_source = {"item2item": 4, "transition": 5, "popularity": 2}
    requests = Histories.from_lists([[5, 6], [0], [], [1, 2, 3]], 12)
    whole = generate_candidates(sources, requests, per_source)
    for subset in (["item2item"], ["transition", "popularity"], ["popularity", "item2item"]):
        wanted = {name: per_source[name] for name in subset}
        alone = generate_candidates({name: sources[name] for name in subset}, requests, wanted)
        got = whole.restricted(wanted)
        assert got.sources == alone.sources and got.n_per_source == alone.n_per_source
        for field in ("row", "item", "source_scores", "source_ranks", "group_ptr"):
            np.testing.assert_array_equal(getattr(got, field), getattr(alone, field), err_msg=field)


def _gains(effects: Mapping[str, float], noise: FloatArray) -> GainsOf:
    """Per-request gains of a pipeline: a base, plus each present source's effect, plus noise."""

    def gains_of(per_source: Mapping[str, int], seed: int) -> FloatArray:
        total = 0.3 + sum(effects[name] for name in per_source)
        return np.asarray(total + noise, dtype=np.float64)

    return gains_of


def test_sources_that_add_nothing_are_dropped_and_useful_ones_kept() -> None:
    noise = np.random.default_rng(0).normal(0, 0.05, 500)
    kept, report = prune_sources(
        {"useful": 100, "useless": 100, "also_useful": 50, "harmful": 20},
        _gains({"useful": 0.05, "useless": 0.0, "also_useful": 0.03, "harmful": -0.01}, noise),
        seed=0,
    )
    assert kept == ("useful", "also_useful")
    assert report["kept"] == ["useful", "also_useful"]
    assert [r["cheapest"] for r in report["rounds"]] == ["harmful", "useless", "also_useful"]
    assert [r["dropped"] for r in report["rounds"]] == [True, True, False]
    assert report["rounds"][-1]["cost"] > report["rounds"][-1]["standard_error"]


def test_a_small_but_consistent_gain_is_kept() -> None:
    """Paired differences: a source that helps every request by a little is not noise."""

    def gains_of(per_source: Mapping[str, int], seed: int) -> FloatArray:
        base = np.random.default_rng(1).uniform(0, 1, 400)
        return base + (0.002 if "small" in per_source else 0.0)

    kept, _ = prune_sources({"small": 10, "other": 10}, gains_of, seed=0)
    assert "small" in kept


SOURCES = [
    {"name": "item2item", "candidates": 6},
    {"name": "transition", "candidates": 6},
    # The same source twice: the second copy cannot add anything.
    {"name": "popularity", "candidates": 3},
    {"name": "popularity_again", "type": "popularity", "candidates": 3},
]


def _config(prune: bool = True) -> dict[str, object]:
    fusion = {"method": "select", "params": {"methods": ["weighted"]}, "prune_sources": prune}
    return {"sources": SOURCES, "fusion": fusion}


def test_the_pipeline_serves_only_the_kept_sources(clustered_histories: Histories, tmp_path: Path) -> None:
    model = FusionRetriever(_config()).fit(TrainData(clustered_histories))
    report = model.fit_summary()["source_pruning"]
    assert set(model.sources_) == set(report["kept"]) and len(model.sources_) < 4
    names = [str(source["name"]) for source in SOURCES]
    assert [s.name for s in model.pipeline.sources] == [n for n in names if n in report["kept"]]
    assert report["rounds"] and report["rounds"][0]["dropped"]
    requests = clustered_histories.rows([0, 1, 2])
    batch, _ = model.candidates(requests)
    assert batch.sources == tuple(report["kept"])
    model.save(tmp_path / "m")
    loaded = FusionRetriever.load(tmp_path / "m")
    assert set(loaded.sources_) == set(model.sources_)
    assert loaded.fit_summary()["source_pruning"] == report
    np.testing.assert_allclose(loaded.score(clustered_histories), model.score(clustered_histories), rtol=1e-5)


def test_pruning_can_be_turned_off(clustered_histories: Histories) -> None:
    model = FusionRetriever(_config(prune=False)).fit(TrainData(clustered_histories))
    assert len(model.sources_) == 4 and "source_pruning" not in model.fit_summary()
