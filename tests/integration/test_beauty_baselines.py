"""Reproduce the reference baselines of ../shared/datasets/README.md on real data (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfusion.data.layouts import load_dataset
from shopfusion.evaluation.benchmark import run_rec_benchmark

BEAUTY = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "amazon-beauty" / "s3rec"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BEAUTY.exists(), reason=f"{BEAUTY} is absent (run beside ../shared)"),
]


def test_popularity_and_item2item_match_the_reference_within_ten_percent() -> None:
    report = run_rec_benchmark(load_dataset(BEAUTY), ["popularity", "item2item"], progress=False)
    results = report["results"]
    assert report["n_users_evaluated"] == 22363
    assert results["popularity"]["NDCG@10"] == pytest.approx(0.0062, rel=0.10)
    assert results["item2item"]["NDCG@10"] == pytest.approx(0.046, rel=0.10)
