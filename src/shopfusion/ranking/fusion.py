"""Fusion methods: how the candidates' per-source evidence becomes one score.

Each method learns from held-out targets (``labels``: is this candidate the item the
shopper took next?) grouped by request, never from the evaluation target:

* ``weighted``   — ``ŷ = Σ wᵢ ŷᵢ`` over normalised source scores, weights by coordinate ascent,
                   cross-validated over requests;
* ``alpha``      — ``α·sim(user, item) + (1-α)·CF``: one content and one CF source;
* ``attention``  — a small network gives per-request source weights from context;
* ``lambdamart`` — LightGBM LambdaMART over every feature (stacking);
* ``multitask``  — see :mod:`shopfusion.ranking.multitask`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import FloatArray, IntArray
from shopfusion.errors import ConfigError, ModelFitError, NotFittedError
from shopfusion.ranking.compiled import CompiledTrees
from shopfusion.ranking.groups import group_ids, ndcg_at_k
from shopfusion.retrieval.base import constructor_params

Labels = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class FusionInput:
    """Candidate features of many requests; rows of one request are contiguous (``group_ptr``)."""

    features: FloatArray
    feature_names: tuple[str, ...]
    sources: tuple[str, ...]
    group_ptr: IntArray
    #: Event type code of each group's held-out target (training only; None when unknown).
    target_kinds: npt.NDArray[np.int8] | None = None

    def column(self, name: str) -> FloatArray:
        try:
            return self.features[:, self.feature_names.index(name)]
        except ValueError:
            raise ConfigError(
                f"feature {name!r} is not built; known: {', '.join(self.feature_names)}"
            ) from None

    def normalised_scores(self) -> FloatArray:
        """Each source's score standardised within its request's candidates, shape ``(m, n_sources)``:
        sources on different scales become comparable, and a constant source contributes 0."""
        raw = np.column_stack([self.column(f"{s}_score") for s in self.sources]).astype(np.float64)
        gid = group_ids(self.group_ptr)
        counts = np.maximum(np.diff(self.group_ptr), 1)[:, None]
        mean = _group_sums(raw, self.group_ptr) / counts
        centred = raw - mean[gid]
        std = np.sqrt(_group_sums(centred**2, self.group_ptr) / counts)
        return (centred / np.maximum(std[gid], 1e-9)).astype(np.float32)

    def take(self, rows: IntArray, group_ptr: IntArray) -> FusionInput:
        return FusionInput(self.features[rows], self.feature_names, self.sources, group_ptr)


def _group_sums(values: npt.NDArray[np.float64], group_ptr: IntArray) -> npt.NDArray[np.float64]:
    """Column sums per group of contiguous rows (prefix sums: far faster than ``np.add.at``)."""
    prefix = np.zeros((len(values) + 1, values.shape[1]))
    np.cumsum(values, axis=0, out=prefix[1:])
    sums: npt.NDArray[np.float64] = prefix[group_ptr[1:]] - prefix[group_ptr[:-1]]
    return sums


class Fusion(ABC):
    """Constructor stores hyper-parameters; ``fit`` learns and returns ``self``."""

    name: ClassVar[str]
    #: True when ``predict`` reads only the ``{source}_score`` columns: serving then skips building
    #: the other features (the larger part of a request's cost after the sources themselves).
    scores_only: ClassVar[bool] = False

    def get_params(self) -> dict[str, Any]:
        return constructor_params(self)

    @property
    def needs_features(self) -> bool:
        return not self.scores_only

    @abstractmethod
    def fit(self, data: FusionInput, labels: Labels, rng: np.random.Generator) -> Self: ...

    @abstractmethod
    def predict(self, data: FusionInput) -> FloatArray: ...

    def contributions(self, data: FusionInput) -> FloatArray:
        """Each source's share in each candidate's score, ``(m, n_sources)`` (for explanations)."""
        return data.normalised_scores()

    @abstractmethod
    def arrays(self) -> dict[str, npt.NDArray[Any]]: ...

    @abstractmethod
    def restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None: ...

    def _require(self, attribute: str) -> Any:
        if not hasattr(self, attribute):
            raise NotFittedError(f"{self.name} fusion is not fitted: train the pipeline first")
        return getattr(self, attribute)


class WeightedFusion(Fusion):
    """``ŷ = Σ wᵢ zᵢ`` with ``zᵢ`` the per-request standardised score of source ``i``.

    Weights start equal and are improved one at a time over ``grid`` multipliers
    (coordinate ascent on NDCG@10). ``cv_ndcg_`` is the k-fold cross-validated NDCG
    of the procedure (fit on k-1 folds of requests, score the held-out fold)."""

    name: ClassVar[str] = "weighted"
    scores_only: ClassVar[bool] = True

    def __init__(self, rounds: int = 3, folds: int = 5) -> None:
        self.rounds = rounds
        self.folds = folds

    def fit(self, data: FusionInput, labels: Labels, rng: np.random.Generator) -> Self:
        z = data.normalised_scores()
        self.weights_ = _coordinate_ascent(z, labels, data.group_ptr, self.rounds)
        self.cv_ndcg_ = _cross_validate(
            lambda zz, ll, gp: _coordinate_ascent(zz, ll, gp, self.rounds),
            z,
            labels,
            data.group_ptr,
            self.folds,
            rng,
        )
        return self

    def predict(self, data: FusionInput) -> FloatArray:
        weights: FloatArray = self._require("weights_")
        fused: FloatArray = (data.normalised_scores() @ weights).astype(np.float32)
        return fused

    def contributions(self, data: FusionInput) -> FloatArray:
        weights: FloatArray = self._require("weights_")
        return (data.normalised_scores() * weights).astype(np.float32)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"weights": self._require("weights_"), "cv_ndcg": np.array(self.cv_ndcg_)}

    def restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.weights_ = np.asarray(arrays["weights"], dtype=np.float32)
        self.cv_ndcg_ = float(arrays["cv_ndcg"])


class AlphaBlendFusion(Fusion):
    """``α·sim(user, item) + (1-α)·CF`` — the content source against one collaborative source,
    both standardised per request; ``α`` picked on a grid by cross-validated NDCG@10."""

    name: ClassVar[str] = "alpha"
    scores_only: ClassVar[bool] = True

    def __init__(self, content_source: str = "content", cf_source: str = "item2item", folds: int = 5) -> None:
        self.content_source = content_source
        self.cf_source = cf_source
        self.folds = folds

    def _pair(self, data: FusionInput) -> FloatArray:
        for source in (self.content_source, self.cf_source):
            if source not in data.sources:
                raise ConfigError(
                    f"alpha fusion needs source {source!r} but the pipeline has {', '.join(data.sources)}; "
                    "add it to `sources` or set fusion.params.content_source / cf_source"
                )
        z = data.normalised_scores()
        return z[:, [data.sources.index(self.content_source), data.sources.index(self.cf_source)]]

    def fit(self, data: FusionInput, labels: Labels, rng: np.random.Generator) -> Self:
        pair = self._pair(data)

        def best_alpha(z: FloatArray, lab: Labels, gp: IntArray) -> FloatArray:
            grid = np.linspace(0.0, 1.0, 21)
            values = [ndcg_at_k(z @ np.array([a, 1 - a]), lab, gp) for a in grid]
            a = grid[int(np.argmax(values))]
            return np.array([a, 1 - a], dtype=np.float32)

        self.alpha_ = float(best_alpha(pair, labels, data.group_ptr)[0])
        self.cv_ndcg_ = _cross_validate(best_alpha, pair, labels, data.group_ptr, self.folds, rng)
        return self

    def predict(self, data: FusionInput) -> FloatArray:
        alpha: float = self._require("alpha_")
        fused: FloatArray = (self._pair(data) @ np.array([alpha, 1 - alpha])).astype(np.float32)
        return fused

    def contributions(self, data: FusionInput) -> FloatArray:
        alpha: float = self._require("alpha_")
        out = np.zeros((len(data.features), len(data.sources)), dtype=np.float32)
        pair = self._pair(data)
        out[:, data.sources.index(self.content_source)] = alpha * pair[:, 0]
        out[:, data.sources.index(self.cf_source)] = (1 - alpha) * pair[:, 1]
        return out

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"alpha": np.array(self._require("alpha_")), "cv_ndcg": np.array(self.cv_ndcg_)}

    def restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.alpha_ = float(arrays["alpha"])
        self.cv_ndcg_ = float(arrays["cv_ndcg"])


class LambdaMARTFusion(Fusion):
    """Stacking: a LightGBM LambdaMART ranker over every candidate feature (each source's score
    and rank, popularity, catalog matches, …). Early-stops on a held-out fifth of the requests."""

    name: ClassVar[str] = "lambdamart"

    def __init__(
        self,
        n_estimators: int = 600,
        learning_rate: float = 0.02,
        num_leaves: int = 15,
        min_child_samples: int = 100,
        early_stopping_rounds: int = 60,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state

    def fit(self, data: FusionInput, labels: Labels, rng: np.random.Generator) -> Self:
        import lightgbm as lgb

        n_groups = len(data.group_ptr) - 1
        if n_groups < 2 or not labels.any():
            raise ModelFitError(
                "lambdamart fusion needs held-out targets among the candidates; too little data"
            )
        is_valid = rng.random(n_groups) < 0.2
        gid = group_ids(data.group_ptr)
        sizes = np.diff(data.group_ptr)
        train_rows, valid_rows = ~is_valid[gid], is_valid[gid]
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "lambdarank_truncation_level": 20,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": self.random_state,
            "num_threads": 0,
            "deterministic": True,
            "verbose": -1,
        }
        names = [n.replace(" ", "_") for n in data.feature_names]
        train = lgb.Dataset(
            data.features[train_rows],
            labels[train_rows].astype(np.int32),
            group=sizes[~is_valid],
            feature_name=names,
            free_raw_data=True,
        )
        valid = lgb.Dataset(
            data.features[valid_rows],
            labels[valid_rows].astype(np.int32),
            group=sizes[is_valid],
            reference=train,
        )
        booster = lgb.train(
            params,
            train,
            num_boost_round=self.n_estimators,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        self.model_text_ = booster.model_to_string(num_iteration=booster.best_iteration)
        self.booster_ = lgb.Booster(model_str=self.model_text_)
        self.best_iteration_ = int(booster.best_iteration)
        # Not compiled: training predicts few times, and compiling costs seconds (see restore).
        self.compiled_: CompiledTrees | None = None
        return self

    def predict(self, data: FusionInput) -> FloatArray:
        booster = self._require("booster_")
        if self.compiled_ is not None:
            return self.compiled_.predict(data.features).astype(np.float32)
        return np.asarray(booster.predict(data.features, num_threads=1), dtype=np.float32)

    def contributions(self, data: FusionInput) -> FloatArray:
        """Per-source share of the score: the SHAP values of that source's features, summed."""
        booster = self._require("booster_")
        shap = np.asarray(booster.predict(data.features, pred_contrib=True), dtype=np.float32)[:, :-1]
        out = np.zeros((len(data.features), len(data.sources)), dtype=np.float32)
        for s, source in enumerate(data.sources):
            cols = [i for i, n in enumerate(data.feature_names) if n.startswith(f"{source}_")]
            out[:, s] = shap[:, cols].sum(axis=1)
        return out

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"model_text": np.array(self._require("model_text_"))}

    def restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        import lightgbm as lgb

        self.model_text_ = str(arrays["model_text"])
        self.booster_ = lgb.Booster(model_str=self.model_text_)
        # A loaded model is about to serve: its trees as machine code, the same scores ~10x
        # faster (None without lleaves; see shopfusion.ranking.compiled).
        self.compiled_ = CompiledTrees.of(self.model_text_, self.booster_)


def _coordinate_ascent(z: FloatArray, labels: Labels, group_ptr: IntArray, rounds: int) -> FloatArray:
    weights = np.ones(z.shape[1], dtype=np.float32)
    best = ndcg_at_k(z @ weights, labels, group_ptr)
    grid = (0.0, 0.25, 0.5, 0.8, 1.25, 2.0, 4.0)
    for _ in range(rounds):
        improved = False
        for s in range(z.shape[1]):
            base = weights[s]
            for factor in grid:
                trial = weights.copy()
                trial[s] = base * factor if base > 0 else factor
                value = ndcg_at_k(z @ trial, labels, group_ptr)
                if value > best + 1e-6:
                    best, weights, improved = value, trial, True
        if not improved:
            break
    return weights


def _cross_validate(
    fit_weights: Any, z: FloatArray, labels: Labels, group_ptr: IntArray, folds: int, rng: np.random.Generator
) -> float:
    n_groups = len(group_ptr) - 1
    fold_of = rng.integers(0, folds, size=n_groups)
    gid = group_ids(group_ptr)
    sizes = np.diff(group_ptr)
    scores: list[float] = []
    for fold in range(folds):
        train_rows, test_rows = fold_of[gid] != fold, fold_of[gid] == fold
        if not test_rows.any() or not train_rows.any():
            continue
        train_ptr = np.concatenate([[0], np.cumsum(sizes[fold_of != fold])])
        test_ptr = np.concatenate([[0], np.cumsum(sizes[fold_of == fold])])
        weights = fit_weights(z[train_rows], labels[train_rows], train_ptr)
        scores.append(ndcg_at_k(z[test_rows] @ weights, labels[test_rows], test_ptr))
    return float(np.mean(scores)) if scores else float("nan")
