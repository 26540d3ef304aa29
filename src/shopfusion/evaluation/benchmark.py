"""The recommendation benchmark behind ``shopfusion evaluate rec``: split, tune, test, report as JSON."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from shopfusion import __version__
from shopfusion.data.dataset import Dataset
from shopfusion.data.splits import Split, leave_one_out, temporal_split
from shopfusion.evaluation.harness import tune_and_test
from shopfusion.retrieval.registry import retriever_class

Protocol = Literal["s3rec-loo", "temporal"]


def make_split(dataset: Dataset, protocol: Protocol) -> Split:
    if protocol == "s3rec-loo":
        return leave_one_out(dataset.interactions.histories())
    return temporal_split(dataset.interactions)


def run_rec_benchmark(
    dataset: Dataset,
    models: Sequence[str],
    protocol: Protocol = "s3rec-loo",
    seed: int = 0,
    tune: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate each named model on the test target after tuning on the validation target."""
    classes = [retriever_class(name) for name in models]  # fail on a typo before any work
    split = make_split(dataset, protocol)
    results: dict[str, Any] = {}
    for cls in classes:
        model = cls()
        report = tune_and_test(
            model,
            split,
            catalog=dataset.catalog,
            seed=seed,
            search_space=None if tune else [{}],
            progress=progress,
        )
        results[cls.name] = report.to_json()
    return {
        "dataset": dataset.name,
        "protocol": protocol,
        "split": "test",
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "n_interactions": len(dataset.interactions),
        "n_users_evaluated": len(split.test.requests),
        "selection": "best NDCG@10 on the validation target; refitted on train+validation for test",
        "ranking": "full ranking over all items, history excluded, ties broken at random",
        "seed": seed,
        "results": results,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "shopfusion_version": __version__,
        "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()}",
    }
