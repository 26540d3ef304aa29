"""The image source: product photos drawn by the tests, red lipsticks and blue TVs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from content_support import RED, clustered_catalog

from shopfusion.data.interactions import Histories
from shopfusion.retrieval import RETRIEVERS, TrainData
from shopfusion.retrieval.image import ImageRetriever


@pytest.fixture(scope="module")
def data(clustered_histories: Histories, tmp_path_factory: pytest.TempPathFactory) -> TrainData:
    return TrainData(clustered_histories, clustered_catalog(tmp_path_factory.mktemp("photos")))


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPFUSION_CACHE", str(tmp_path_factory.getbasetemp() / "image-embeddings"))


def test_red_items_neighbour_red_items(data: TrainData) -> None:
    model = ImageRetriever().fit(data)
    assert RETRIEVERS["image"] is ImageRetriever and model.missing_images_ == 0
    ids, _ = model.similar_items(list(range(12)), k=1)
    for item, (nearest,) in enumerate(ids):
        assert (nearest in RED) == (item in RED), f"item {item}'s nearest neighbour is {nearest}"
    got = model.retrieve(Histories.from_lists([[0, 2], [5]], n_items=12), k=1)
    assert set(got.ids[0]) <= set(RED) and not set(got.ids[1]) & set(RED)


def test_missing_images_score_zero_and_are_counted(
    clustered_histories: Histories, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = clustered_catalog(tmp_path / "photos")
    catalog.loc[3, "image"] = "https://cdn.example/3.jpg"
    catalog.loc[7, "image"] = str(tmp_path / "deleted.png")
    catalog.loc[8, "image"] = None
    with caplog.at_level(logging.WARNING, logger="shopfusion.retrieval.image"):
        model = ImageRetriever(scoring="profile").fit(TrainData(clustered_histories, catalog))
    assert model.missing_images_ == 3 and "3 of 12" in caplog.text
    scores = model.score(Histories.from_lists([[0], [7]], n_items=12))
    assert np.all(np.isfinite(scores)) and np.all(scores[:, [3, 7, 8]] == 0) and np.all(scores[1] == 0)


def test_relative_paths_resolve_against_image_root(clustered_histories: Histories, tmp_path: Path) -> None:
    catalog = clustered_catalog(tmp_path)
    catalog["image"] = [Path(p).name for p in catalog["image"]]
    model = ImageRetriever(image_root=str(tmp_path)).fit(TrainData(clustered_histories, catalog))
    assert model.missing_images_ == 0
