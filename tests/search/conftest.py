"""A search engine built once on the bilingual sample shop (small, multilingual encoder only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfusion.data.dataset import Dataset
from shopfusion.data.layouts import load_dataset
from shopfusion.data.sample import write_sample
from shopfusion.search.engine import SearchConfig, SearchEngine

SMALL = SearchConfig(
    encoders=("use-multilingual",),
    known_item_queries=500,
    category_queries=200,
    personal_queries=300,
)


@pytest.fixture(scope="session")
def sample_shop(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    folder: Path = tmp_path_factory.mktemp("sample")
    write_sample(folder, n_users=200)
    return load_dataset(folder)


@pytest.fixture(scope="session")
def engine(sample_shop: Dataset) -> SearchEngine:
    return SearchEngine(SMALL).fit(
        sample_shop.catalog, sample_shop.interactions.histories(), sample_shop.search_clicks
    )
