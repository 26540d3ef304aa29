"""Ablations of the fused pipeline: the whole, the whole minus each source, and each fusion method.

Sources are fitted once (on the held-in part, and refitted on the full training part)
and shared by every variant, so the table costs one pipeline fit plus one fusion fit
and one evaluation per variant. Same protocol as ``evaluate rec``: the fusion learns
from held-out targets of the training part; the test target is seen only when scoring.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from shopfusion.config import PipelineConfig
from shopfusion.data.dataset import Dataset
from shopfusion.data.splits import EvalTask
from shopfusion.evaluation.benchmark import Protocol, make_split
from shopfusion.evaluation.harness import evaluate_scores
from shopfusion.ranking.pipeline import FusionRetriever, HeldOut, build_source
from shopfusion.retrieval.base import TrainData

FUSION_METHODS = ("select", "lambdamart", "weighted", "attention")


def ablation_variants(config: PipelineConfig, chosen: str | None = None) -> dict[str, PipelineConfig]:
    """The whole pipeline, the pipeline minus each source, and each other fusion method.

    ``chosen``: the method a ``select`` fusion picked for the whole pipeline. The minus-one-source
    variants then keep that method fixed, so they measure the source, not a re-run of the choice
    (and cost one cheap fit each instead of fitting every candidate method again)."""
    variants = {f"fusion ({config.fusion.method}, all sources)": config}
    for_sources = config
    if chosen is not None and chosen != config.fusion.method:
        params = dict(config.fusion.params.get("params", {}).get(chosen, {}))
        fusion = config.fusion.model_copy(update={"method": chosen, "params": params})
        for_sources = config.model_copy(update={"fusion": fusion})
    if len(config.sources) > 1:
        for source in config.sources:
            kept = [s for s in config.sources if s.name != source.name]
            variants[f"fusion minus {source.name}"] = for_sources.model_copy(update={"sources": kept})
    for method in FUSION_METHODS:
        if method != config.fusion.method:
            fusion = config.fusion.model_copy(update={"method": method, "params": {}})
            variants[f"fusion ({method}, all sources)"] = config.model_copy(update={"fusion": fusion})
    return variants


def run_ablation(
    dataset: Dataset,
    config: PipelineConfig,
    protocol: Protocol = "s3rec-loo",
    seed: int = 0,
    progress: bool = True,
    max_users: int | None = None,
) -> dict[str, Any]:
    """``max_users`` evaluates every variant on the same random sample of test users (faster, wider CIs);
    training always uses every user."""
    split = make_split(dataset, protocol)
    test = split.test
    if max_users is not None and len(test.requests) > max_users:
        sample = np.sort(np.random.default_rng(seed).choice(len(test.requests), max_users, replace=False))
        test = EvalTask(test.train, test.requests.rows(sample), test.targets.rows(sample))
    train = TrainData(split.test.train, dataset.catalog)
    started = time.perf_counter()
    holdout = HeldOut.of(train.histories, config, np.random.default_rng(config.seed))
    held_in = TrainData(holdout.held_in, dataset.catalog)
    held_out_sources = {s.name: build_source(s).fit(held_in) for s in config.sources}
    full_sources = {
        s.name: build_source(s).fit(train) if s.refit else held_out_sources[s.name] for s in config.sources
    }
    fit_seconds = time.perf_counter() - started

    def run_variant(label: str, variant: PipelineConfig) -> dict[str, Any]:
        t0 = time.perf_counter()
        model = FusionRetriever(variant.model_dump())
        model.learn_fusion(held_out_sources, holdout, train)
        model.use_sources(full_sources, train)
        result = evaluate_scores(
            model.score,
            test,
            np.random.default_rng(seed + 1),
            beyond_accuracy=False,
            progress=label if progress else None,
        )
        return {
            **result.metrics,
            "ci95": {k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in result.ci95.items()},
            "learned": model.fit_summary(),
            "fusion_and_eval_seconds": round(time.perf_counter() - t0, 1),
        }

    # The whole pipeline first: the other variants depend on the method its fusion chose.
    whole_label = f"fusion ({config.fusion.method}, all sources)"
    rows: dict[str, Any] = {whole_label: run_variant(whole_label, config)}
    chosen = str(rows[whole_label]["learned"]["fusion"])
    for label, variant in ablation_variants(config, chosen).items():
        if label != whole_label:
            rows[label] = run_variant(label, variant)
    return {
        "dataset": dataset.name,
        "protocol": protocol,
        "split": "test",
        "n_users_evaluated": len(test.requests),
        "sources": [s.name for s in config.sources],
        "shared_source_fit_seconds": round(fit_seconds, 1),
        "minus_source_fusion": chosen,
        "results": rows,
    }
