"""One small trained artifact of the sample shop per test session, and apps built on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from serving_support import ClientFactory, KeywordSearcher, make_settings, train_sample_artifact

from shopfusion.serving.app import create_app


@pytest.fixture(scope="session")
def sample_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_sample_artifact(tmp_path_factory.mktemp("service"))


@pytest.fixture
def client_factory(sample_artifact: Path, tmp_path: Path) -> Iterator[ClientFactory]:
    """Build a started app; ``search=False`` gives an artifact without a search index."""
    clients: list[TestClient] = []

    def make(search: bool = True, **overrides: Any) -> TestClient:
        settings = make_settings(overrides.pop("artifact", sample_artifact), tmp_path, **overrides)
        loader = KeywordSearcher.from_artifact if search else (lambda _path: None)
        client = TestClient(create_app(settings, searcher_loader=loader))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_factory: ClientFactory) -> TestClient:
    return client_factory()
