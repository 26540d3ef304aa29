"""Evaluate candidate sources honestly: tune on the validation target, refit, report the test target.

For each model: every config of its ``search_space`` is fitted on the validation
task's training part and scored on the validation targets (NDCG@10 by default);
the best config is refitted on the test task's training part and evaluated once
on the test targets. The test target never influences a choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from shopfusion.data.interactions import Histories
from shopfusion.data.splits import EvalTask, Split
from shopfusion.evaluation import metrics as m
from shopfusion.evaluation.ranking import rank_requests
from shopfusion.retrieval.base import Retriever, TrainData

#: Cut-offs reported for the final ranking; larger ones measure candidate-generation recall.
RANKING_KS = (10, 20)
RETRIEVAL_KS = (50, 100, 200)
DIVERSITY_SAMPLE = 2000


@dataclass
class EvaluationResult:
    """Mean metrics over evaluated rows, with bootstrap 95% intervals for the ranking metrics."""

    metrics: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    n_rows: int
    eval_seconds: float


@dataclass
class ModelReport:
    name: str
    params: dict[str, Any]
    test: EvaluationResult
    fit_seconds: float
    validation: list[dict[str, Any]] = field(default_factory=list)
    learned: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.test.metrics)
        out["fit_seconds"] = round(self.fit_seconds, 3)
        out["eval_seconds"] = round(self.test.eval_seconds, 3)
        out["ci95"] = {k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in self.test.ci95.items()}
        out["params"] = self.params
        out["validation"] = self.validation
        if self.learned:
            out["learned"] = self.learned
        out["n_users_evaluated"] = self.test.n_rows
        return out


ScoreFn = Callable[[Histories], np.ndarray]


def evaluate_scores(
    score: ScoreFn,
    task: EvalTask,
    rng: np.random.Generator,
    ks: Sequence[int] = RANKING_KS,
    retrieval_ks: Sequence[int] = RETRIEVAL_KS,
    batch_size: int = 1024,
    beyond_accuracy: bool = True,
    bootstrap: bool = True,
    progress: str | None = None,
) -> EvaluationResult:
    """Rank all items for every request of ``task`` (history excluded) and average the metrics."""
    started = time.perf_counter()
    max_k = max([*ks, *retrieval_ks])
    per_row: dict[str, list[np.ndarray]] = {}
    tops: list[np.ndarray] = []
    n = len(task.requests)
    batches = range(0, n, batch_size)
    for start in tqdm(batches, desc=progress, disable=None if progress else True, leave=False, unit="batch"):
        rows = np.arange(start, min(start + batch_size, n))
        requests = task.requests.rows(rows)
        targets = task.targets.rows(rows)
        top = rank_requests(score(requests), requests, max_k, rng)
        hits = m.hit_matrix(top, targets)
        for k in ks:
            for name, row_values in m.ranking_metrics(hits, targets.lengths(), k).items():
                per_row.setdefault(name, []).append(row_values)
        for k in retrieval_ks:
            per_row.setdefault(f"Recall@{k}", []).append(
                hits[:, :k].sum(axis=1) / np.maximum(targets.lengths(), 1)
            )
        tops.append(top[:, : max(ks)])
    values = {name: np.concatenate(parts) for name, parts in per_row.items()}
    result = {name: float(v.mean()) for name, v in values.items()}
    ci = {}
    if bootstrap:
        for name in (f"{metric}@{k}" for metric in ("HR", "NDCG", "MRR") for k in ks):
            ci[name] = m.bootstrap_ci(values[name], rng)
    if beyond_accuracy:
        result.update(_beyond_accuracy(np.concatenate(tops), task.train, ks, rng))
    return EvaluationResult(result, ci, n, time.perf_counter() - started)


def _beyond_accuracy(
    top: np.ndarray, train: Histories, ks: Sequence[int], rng: np.random.Generator
) -> dict[str, float]:
    users_items = train.to_csr()
    popularity = np.asarray(users_items.sum(axis=0)).ravel()
    # Items are described by who bought them: rows of the L2-normalised item x user matrix.
    item_vectors = users_items.T.tocsr().astype(np.float64)
    norms = np.sqrt(np.asarray(item_vectors.multiply(item_vectors).sum(axis=1)).ravel())
    item_vectors = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ item_vectors
    sample = rng.choice(len(top), size=min(DIVERSITY_SAMPLE, len(top)), replace=False)
    out = {}
    for k in ks:
        out[f"coverage@{k}"] = m.coverage(top[:, :k], train.n_items)
        out[f"novelty@{k}"] = float(m.novelty(top[:, :k], popularity, len(train)).mean())
        out[f"diversity@{k}"] = float(m.intra_list_diversity(top[sample, :k], item_vectors.tocsr()).mean())
    return out


def tune_and_test(
    model: Retriever,
    split: Split,
    catalog: Any = None,
    seed: int = 0,
    selection_metric: str = "NDCG@10",
    search_space: Sequence[Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> ModelReport:
    """Pick the config with the best validation ``selection_metric``, refit it, evaluate on test."""
    space = list(search_space if search_space is not None else model.search_space) or [{}]
    validation: list[dict[str, Any]] = []
    best_params: dict[str, Any] = model.get_params()
    if len(space) > 1:
        best_value = -np.inf
        for params in space:
            candidate = model.with_params(**params)
            candidate.fit(TrainData(split.validation.train, catalog))
            result = evaluate_scores(
                candidate.score,
                split.validation,
                np.random.default_rng(seed),
                retrieval_ks=(),
                beyond_accuracy=False,
                bootstrap=False,
                progress=f"{model.name} validation {dict(params)}" if progress else None,
            )
            value = result.metrics[selection_metric]
            validation.append({"params": dict(params), selection_metric: round(value, 6)})
            if value > best_value:
                best_value, best_params = value, candidate.get_params()
    final = model.with_params(**best_params)
    started = time.perf_counter()
    final.fit(TrainData(split.test.train, catalog))
    fit_seconds = time.perf_counter() - started
    test = evaluate_scores(
        final.score,
        split.test,
        np.random.default_rng(seed + 1),
        progress=f"{model.name} test" if progress else None,
    )
    return ModelReport(model.name, best_params, test, fit_seconds, validation, final.fit_summary())
