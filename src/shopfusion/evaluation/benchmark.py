"""The recommendation benchmark behind ``shopfusion evaluate rec``: split, tune, test, report as JSON."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from shopfusion import __version__
from shopfusion.config import PipelineConfig, default_config
from shopfusion.data.dataset import Dataset
from shopfusion.data.splits import Split, leave_one_out, temporal_split
from shopfusion.evaluation.harness import tune_and_test
from shopfusion.ranking.pipeline import FusionRetriever, build_source
from shopfusion.retrieval.base import Retriever
from shopfusion.retrieval.registry import retriever_class

Protocol = Literal["s3rec-loo", "temporal"]


ModelPlan = tuple[str, Retriever, Sequence[Mapping[str, Any]] | None]


def _candidates(models: Sequence[str] | None, config: PipelineConfig | None, tune: bool) -> list[ModelPlan]:
    if models:
        classes = [retriever_class(name) for name in models]  # fail on a typo before any work
        return [(cls.name, cls(), None if tune else [{}]) for cls in classes]
    pipeline = config or default_config()
    plans: list[ModelPlan] = [(s.name, build_source(s), [{}]) for s in pipeline.sources]
    plans.append(("fusion", FusionRetriever(pipeline.model_dump()), [{}]))
    return plans


def make_split(dataset: Dataset, protocol: Protocol) -> Split:
    if protocol == "s3rec-loo":
        return leave_one_out(dataset.interactions.histories())
    return temporal_split(dataset.interactions)


def run_rec_benchmark(
    dataset: Dataset,
    models: Sequence[str] | None = None,
    protocol: Protocol = "s3rec-loo",
    seed: int = 0,
    tune: bool = True,
    progress: bool = True,
    config: PipelineConfig | None = None,
) -> dict[str, Any]:
    """Evaluate models on the test target after tuning on the validation target.

    With ``models``: each named source, tuned over its own search space. Without: the
    pipeline of ``config`` (the packaged default if None) — each of its sources with the
    config's parameters, then the whole pipeline as ``fusion``.
    """
    candidates = _candidates(models, config, tune)
    split = make_split(dataset, protocol)
    results: dict[str, Any] = {}
    for name, model, space in candidates:
        report = tune_and_test(
            model, split, catalog=dataset.catalog, seed=seed, search_space=space, progress=progress
        )
        results[name] = report.to_json()
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
