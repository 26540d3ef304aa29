"""Every candidate source passes the same contract (as implicit's RecommenderBase tests do)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from content_support import clustered_catalog
from tests_support import proposed

from shopfusion.data.interactions import Histories
from shopfusion.errors import ArtifactError, ConfigError, NotFittedError
from shopfusion.retrieval import RETRIEVERS, Retriever, TrainData
from shopfusion.retrieval.scores import DenseScores

# Two clusters need two factors; more would fit noise on ten items.
SMALL_PARAMS: dict[str, dict[str, object]] = {
    "als": {"factors": 2, "iterations": 10, "alpha": 10.0, "regularization": 0.1},
    "sasrec": {"hidden_size": 8, "max_len": 5, "max_epochs": 3, "n_negatives": 4, "n_threads": 1},
}


def make(name: str) -> Retriever:
    return RETRIEVERS[name](**SMALL_PARAMS.get(name, {}))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pd.DataFrame]:
    """Text and images of the 12 items, for content sources (the others ignore it); their
    embeddings are cached in a temporary folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHOPFUSION_CACHE", str(tmp_path_factory.mktemp("embeddings")))
        yield clustered_catalog(tmp_path_factory.mktemp("images"))


@pytest.fixture(params=sorted(RETRIEVERS))
def fitted(
    request: pytest.FixtureRequest, clustered_histories: Histories, catalog: pd.DataFrame
) -> Retriever:
    return make(request.param).fit(TrainData(clustered_histories, catalog))


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_fit_returns_self_and_unfitted_model_refuses(
    name: str, clustered_histories: Histories, catalog: pd.DataFrame
) -> None:
    model = make(name)
    with pytest.raises(NotFittedError, match="fit"):
        model.score(clustered_histories)
    assert model.fit(TrainData(clustered_histories, catalog)) is model


def test_scores_cover_every_item_and_are_finite(fitted: Retriever, clustered_histories: Histories) -> None:
    scores = fitted.score(clustered_histories)
    assert scores.shape == (len(clustered_histories), 12)
    assert np.all(np.isfinite(scores))


def test_batch_equals_single(fitted: Retriever, clustered_histories: Histories) -> None:
    batch = fitted.retrieve(clustered_histories.rows([0, 1, 2, 3]), k=5)
    for i in range(4):
        single = fitted.retrieve(clustered_histories.rows([i]), k=5)
        np.testing.assert_array_equal(single.ids[0], batch.ids[i])
        np.testing.assert_allclose(single.scores[0], batch.scores[i], rtol=1e-5, atol=1e-6)


def test_compact_scores_answer_as_the_full_matrix_does(
    fitted: Retriever, clustered_histories: Histories
) -> None:
    """What candidate generation reads (``score_compact``) is ``score``, entry for entry."""
    requests = Histories.from_lists(
        [
            [],
            [0],
            [0, 1, 2],
            [5, 5, 7, 5],
            list(range(12))[::-1],
            *(list(clustered_histories.row(i)) for i in range(len(clustered_histories))),
        ],
        n_items=12,
    )
    compact, dense = fitted.score_compact(requests), fitted.score(requests)
    np.testing.assert_array_equal(compact.dense(), dense)
    for k in (1, 4, 12, 20):
        assert proposed(compact.proposals(requests, k)) == proposed(DenseScores(dense).proposals(requests, k))
    rows, items = np.divmod(np.arange(len(requests) * 12), 12)
    np.testing.assert_array_equal(compact.at(rows, items), dense[rows, items])


def test_history_is_excluded_and_more_than_catalog_is_padded(fitted: Retriever) -> None:
    request = Histories.from_lists([[0, 1, 2]], n_items=12)
    got = fitted.retrieve(request, k=20)
    assert got.ids.shape == (1, 20)
    real = got.ids[0][got.ids[0] >= 0]
    assert len(real) == 9 and not set(real) & {0, 1, 2}
    assert np.all(got.ids[0][9:] == -1) and np.all(np.isneginf(got.scores[0][9:]))
    assert np.all(np.diff(got.scores[0][:9]) <= 0)


def test_empty_history_is_served(fitted: Retriever) -> None:
    got = fitted.retrieve(Histories.from_lists([[]], n_items=12), k=3)
    assert got.ids.shape == (1, 3)


def test_save_load_round_trip_without_pickle(
    fitted: Retriever, clustered_histories: Histories, tmp_path: Path
) -> None:
    path = fitted.save(tmp_path / fitted.name)
    assert (path / "manifest.json").exists()
    with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
        assert all(arrays[key].dtype != object for key in arrays.files)
    loaded = type(fitted).load(path)
    np.testing.assert_allclose(
        loaded.score(clustered_histories), fitted.score(clustered_histories), rtol=1e-5
    )


def test_load_refuses_another_models_artifact(fitted: Retriever, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "m")
    other = next(cls for name, cls in RETRIEVERS.items() if name != fitted.name)
    with pytest.raises(ArtifactError, match="not"):
        other.load(path)


def test_wrong_catalog_size_is_refused(fitted: Retriever) -> None:
    with pytest.raises(ConfigError, match="retrain"):
        fitted.score(Histories.from_lists([[0]], n_items=13))


@pytest.mark.parametrize("name", ["item2item", "als"])
def test_known_answer_recommends_within_the_cluster(name: str, clustered_histories: Histories) -> None:
    model = make(name).fit(TrainData(clustered_histories))
    got = model.retrieve(Histories.from_lists([[6, 7], [1, 2]], n_items=12), k=3)
    assert set(got.ids[0]) <= {5, 8, 9}
    assert set(got.ids[1]) <= {0, 3, 4}


def test_popularity_known_answer(clustered_histories: Histories) -> None:
    model = make("popularity").fit(TrainData(clustered_histories))
    got = model.retrieve(Histories.from_lists([[5]], n_items=12), k=2)
    assert got.ids[0][0] == 0
    assert got.scores[0][-1] >= model.score(Histories.from_lists([[]], n_items=12))[0][10]


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match="factorz"):
        make("als").with_params(factorz=3)
