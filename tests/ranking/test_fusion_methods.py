"""Every fusion method learns from held-out targets on data with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fusion_support import SOURCES, synthetic

from shopfusion.data.schema import EventType
from shopfusion.errors import ConfigError, NotFittedError
from shopfusion.ranking.fusion import FusionInput
from shopfusion.ranking.fusion_registry import FUSIONS, fusion_class
from shopfusion.ranking.groups import ndcg_at_k, subsample_groups


def clicks_only(data: FusionInput) -> FusionInput:
    """The same requests, every held-out target a click: a stream with one event type."""
    kinds = np.full(len(data.group_ptr) - 1, EventType.CLICK.code, dtype=np.int8)
    return FusionInput(data.features, data.feature_names, data.sources, data.group_ptr, kinds)


def test_ndcg_known_answer_and_pessimistic_ties() -> None:
    labels = np.array([True, False, False, False, True, False])
    ptr = np.array([0, 3, 6])
    scores = np.array([3.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    # group 1: positive first (1.0); group 2: all tied, positive counted last of three (1/log2(4)).
    assert ndcg_at_k(scores, labels, ptr) == pytest.approx((1.0 + 1 / np.log2(4)) / 2)


def test_subsample_keeps_positive_and_drops_groups_without_one() -> None:
    labels = np.array([False, True, False, False, False, False, False, False])
    ptr = np.array([0, 4, 8])
    rows, new_ptr = subsample_groups(labels, ptr, np.arange(8, dtype=np.float32), 2, np.random.default_rng(0))
    assert new_ptr.tolist() == [0, 3]
    assert 1 in rows and set(rows) <= {0, 1, 2, 3}


@pytest.mark.parametrize("method", sorted(FUSIONS))
def test_each_method_beats_the_noise_source(method: str, tmp_path: Path) -> None:
    data, labels = synthetic()
    params = {"content_source": "content", "cf_source": "item2item"} if method == "alpha" else {}
    model = fusion_class(method)(**params)
    with pytest.raises(NotFittedError):
        model.predict(data)
    model.fit(data, labels, np.random.default_rng(0))
    test, test_labels = synthetic(seed=1)
    fused = ndcg_at_k(model.predict(test), test_labels, test.group_ptr)
    noise = ndcg_at_k(test.column("noise_score"), test_labels, test.group_ptr)
    assert fused > noise + 0.3
    contributions = model.contributions(test)
    assert contributions.shape == (len(test.features), len(SOURCES))
    informative = SOURCES.index("item2item")
    assert (
        np.abs(contributions[:, informative]).mean() > np.abs(contributions[:, SOURCES.index("noise")]).mean()
    )
    # Persist through named arrays only, and predict identically after a restore.
    arrays = model.arrays()
    np.savez(tmp_path / "f.npz", **arrays)
    restored = fusion_class(method)(**params)
    with np.load(tmp_path / "f.npz", allow_pickle=False) as loaded:
        restored.restore(dict(loaded))
    np.testing.assert_allclose(restored.predict(test), model.predict(test), rtol=1e-5, atol=1e-6)


def test_weighted_learns_more_weight_for_the_informative_source() -> None:
    data, labels = synthetic()
    model = fusion_class("weighted")().fit(data, labels, np.random.default_rng(0))
    weights = dict(zip(SOURCES, model.weights_, strict=True))
    assert weights["item2item"] > weights["noise"]
    assert 0 < model.cv_ndcg_ <= 1


def test_alpha_names_a_missing_source() -> None:
    data, labels = synthetic()
    with pytest.raises(ConfigError, match="'image'"):
        fusion_class("alpha")(content_source="image").fit(data, labels, np.random.default_rng(0))


def test_multitask_refuses_a_single_kind_stream() -> None:
    data, labels = synthetic()
    single = clicks_only(data)
    with pytest.raises(ConfigError, match="more than one kind"):
        fusion_class("multitask")().fit(single, labels, np.random.default_rng(0))


def test_multitask_convert_head_prefers_what_sells() -> None:
    data, labels = synthetic(n_groups=400)
    model = fusion_class("multitask")(epochs=80).fit(data, labels, np.random.default_rng(0))
    heads = model.heads(data)
    assert heads.shape == (len(data.features), 2)
    assert ndcg_at_k(heads[:, 1], labels, data.group_ptr) > 0.5


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="lambdamart"):
        fusion_class("magic")


def test_select_keeps_the_method_that_ranks_held_out_requests_best() -> None:
    data, labels = synthetic()
    # alpha over two weak sources cannot match a weighted average that finds item2item.
    params = {"alpha": {"content_source": "noise", "cf_source": "content"}}
    model = fusion_class("select")(methods=["alpha", "weighted"], params=params)
    model.fit(data, labels, np.random.default_rng(0))
    assert model.chosen_ == "weighted"
    assert model.selection_ndcg_["weighted"] > model.selection_ndcg_["alpha"]


def test_select_skips_a_method_the_data_cannot_support() -> None:
    data, labels = synthetic()
    single = clicks_only(data)
    model = fusion_class("select")(methods=["multitask", "weighted"]).fit(
        single, labels, np.random.default_rng(0)
    )
    assert model.chosen_ == "weighted"
    assert set(model.selection_ndcg_) == {"weighted"}


def test_select_refuses_unknown_or_recursive_methods() -> None:
    with pytest.raises(ConfigError, match="lambdamart"):
        fusion_class("select")(methods=["magic"])
    with pytest.raises(ConfigError, match="other fusion"):
        fusion_class("select")(methods=["select"])
