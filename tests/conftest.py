"""Shared fixtures: tiny data with a known answer, made by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest

from shopfusion.data.interactions import Histories


@pytest.fixture(scope="session")
def clustered_histories() -> Histories:
    """Two tastes: items 0-4 are bought together, items 5-9 are bought together; item 0 is the
    best seller. Any collaborative model must recommend within the cluster of the history."""
    rng = np.random.default_rng(3)
    rows: list[list[int]] = []
    for user in range(120):
        cluster = np.arange(5) if user % 2 == 0 else np.arange(5, 10)
        size = int(rng.integers(3, 6))
        picks = list(rng.choice(cluster, size=size, replace=False))
        if user % 2 == 0 and 0 not in picks:
            picks[0] = 0
        rows.append([int(i) for i in picks])
    rows += [[0, 1], [0, 2], [0, 3]]  # extra sales of item 0
    return Histories.from_lists(rows, n_items=12)  # items 10, 11 are never bought
