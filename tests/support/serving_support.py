"""A small trained artifact of the sample shop and a fake search engine, for the service tests.

The fake :class:`KeywordSearcher` fulfils the ``Searcher`` contract with plain keyword matching
so the HTTP layer (filters, facets, rules, caching) is tested without the real engine.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from fastapi.testclient import TestClient
from tests_support import search_alone

from shopfusion.artifact import load_artifact, save_artifact
from shopfusion.config import parse_config
from shopfusion.data.layouts import load_dataset
from shopfusion.data.sample import write_sample
from shopfusion.ranking.pipeline import FusionRetriever
from shopfusion.retrieval.base import TrainData
from shopfusion.search.api import FacetValue, IntArray, SearchFilters, SearchRequest, SearchResult
from shopfusion.serving.security import hash_key
from shopfusion.serving.settings import ServiceSettings

INGEST_KEY = "ingest-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"
READ_KEY = "read-key-for-tests"

#: ``client_factory(search=True, **settings)`` of tests/serving/conftest.py.
ClientFactory = Callable[..., TestClient]

#: Cheap sources: the artifact trains in a few seconds.
SERVICE_PIPELINE = {
    "sources": [
        {"name": "item2item", "candidates": 40},
        {"name": "transition", "candidates": 30},
        {"name": "als", "params": {"factors": 16, "iterations": 5}, "candidates": 30},
        {"name": "popularity", "candidates": 20},
    ],
    "fusion": {"method": "lambdamart"},
}


def train_sample_artifact(
    folder: Path, n_users: int = 200, seed: int = 7, fusion: str = "lambdamart"
) -> Path:
    """Write the sample shop under ``folder/sample`` and train ``folder/artifact`` from it."""
    files = write_sample(folder / "sample", seed=seed, n_users=n_users)
    dataset = load_dataset(files["catalog"].parent)
    config = parse_config({**SERVICE_PIPELINE, "fusion": {"method": fusion}}, "service test pipeline")
    histories = dataset.interactions.histories()
    model = FusionRetriever(config.model_dump()).fit(TrainData(histories, dataset.catalog))
    return save_artifact(folder / "artifact", model, dataset, histories)


def make_settings(artifact: Path, tmp_path: Path, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "artifact": artifact,
        "store": tmp_path / "events.db",
        "ingest_key_hashes": [hash_key(INGEST_KEY)],
        "admin_key_hashes": [hash_key(ADMIN_KEY)],
        "read_key_hashes": [hash_key(READ_KEY)],
        "pseudonym_secret": "test-secret",
        # A busy test machine can stall the loop and the scoring threads for tens of ms; shedding
        # then would make tests flaky. tests/serving/test_overload.py turns it on where tested.
        "loop_delay_target_ms": 0.0,
        "model_delay_target_ms": 0.0,
    }
    values.update(overrides)
    return ServiceSettings(**values)


def copy_artifact(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def write_pipeline_yaml(path: Path) -> Path:
    path.write_text(yaml.safe_dump(SERVICE_PIPELINE))
    return path


class KeywordSearcher:
    """Items whose title, brand or category contains every query term (characters for Chinese)."""

    def __init__(self, catalog: pd.DataFrame) -> None:
        self.catalog = catalog.reset_index(drop=True)
        text = (
            self.catalog["title"].fillna("")
            + " "
            + self.catalog["brand"].fillna("")
            + " "
            + self.catalog["category"].fillna("")
        )
        self.text = text.str.lower().tolist()
        self.calls: list[tuple[str, SearchFilters | None]] = []
        self.explained: list[int] = []  # every item whose explanation was asked for
        self.batches: list[int] = []  # the size of each search_many call

    @classmethod
    def from_artifact(cls, artifact_dir: Path) -> KeywordSearcher:
        return cls(load_artifact(artifact_dir).catalog)

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        history: IntArray | None = None,
        filters: SearchFilters | None = None,
        exclude_history: bool = False,
        explain: bool = True,
    ) -> SearchResult:
        self.calls.append((query, filters))
        terms = [t for t in query.lower().split() if t]
        hits = np.array([all(t in text for t in terms) for text in self.text], dtype=bool)
        cat = self.catalog
        if filters is not None:
            if filters.categories:
                hits &= cat["category"].isin(filters.categories).to_numpy()
            if filters.brands:
                hits &= cat["brand"].isin(filters.brands).to_numpy()
            price = pd.to_numeric(cat["price"], errors="coerce").to_numpy()
            if filters.min_price is not None:
                hits &= price >= filters.min_price
            if filters.max_price is not None:
                hits &= price <= filters.max_price
            if filters.in_stock_only:
                hits &= ~(pd.to_numeric(cat["stock"], errors="coerce").to_numpy() <= 0)
        matches = np.flatnonzero(hits)
        facets = {
            name: [FacetValue(str(v), int(c)) for v, c in cat[name].iloc[matches].value_counts().items()]
            for name in ("category", "brand")
        }
        # Shorter titles first: a crude but deterministic relevance.
        lengths = cat["title"].str.len().to_numpy()[matches]
        order = matches[np.lexsort((matches, lengths))][:k]
        scores = (1.0 / (1.0 + lengths[np.searchsorted(matches, order)])).astype(np.float32)
        score_of = dict(zip(order.tolist(), scores.tolist(), strict=True))

        def explainer(items: IntArray) -> list[dict[str, float]]:
            self.explained += items.tolist()
            return [{"lexical": score_of[int(i)]} for i in items]

        explanations = explainer(order) if explain else []
        return SearchResult(order.astype(np.int64), scores, facets, explanations, None, explainer)

    def search_many(self, requests: Sequence[SearchRequest]) -> list[SearchResult]:
        self.batches.append(len(requests))
        return [search_alone(self, r) for r in requests]


def find_chromium() -> str | None:
    """The system Chromium (Debian's package); browser tests skip without it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class ServerThread:
    """A real uvicorn server on a free loopback port, in a thread (for browser and load tests)."""

    def __init__(self, app: object) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, access_log=False, log_level="warning")  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
