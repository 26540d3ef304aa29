"""The fused recommender: named sources -> merged candidates -> features -> fusion.

``fit`` learns the fusion from held-out targets: every training history long enough
gives up its last item; sources are fitted on what remains, propose candidates for
those histories, and the fusion learns which candidate was taken next. Then the
sources are refitted on all training data (unless a source says ``refit: false``)
and serve. The evaluation target is never seen: in the harness's test stage the
held-out item is the validation target.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from shopfusion.config import PipelineConfig, SourceConfig, default_config, parse_config
from shopfusion.data.interactions import FloatArray, Histories, IntArray
from shopfusion.data.splits import _replace_rows
from shopfusion.errors import ModelFitError
from shopfusion.ranking.candidates import CandidateBatch, generate_candidates
from shopfusion.ranking.features import ItemStatistics, build_features, feature_names
from shopfusion.ranking.fusion import Fusion, FusionInput
from shopfusion.ranking.fusion_registry import fusion_class
from shopfusion.ranking.groups import ndcg_gains, subsample_groups
from shopfusion.ranking.pruning import prune_sources
from shopfusion.ranking.selection import SelectedFusion
from shopfusion.retrieval.base import Retriever, TrainData, read_manifest
from shopfusion.retrieval.blas import single_blas_thread_if_small
from shopfusion.retrieval.registry import retriever_class

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankedCandidates:
    """Each request's candidates (grouped by request, see :class:`CandidateBatch`) and their fused
    scores. Every item that is not a candidate scores below all of its request's candidates."""

    batch: CandidateBatch
    fused: FloatArray

    def of_request(self, row: int) -> tuple[IntArray, FloatArray]:
        """Request ``row``'s candidate items and fused scores (item order)."""
        start, end = self.batch.group_ptr[row], self.batch.group_ptr[row + 1]
        return self.batch.item[start:end], self.fused[start:end]


@dataclass(frozen=True)
class HeldOut:
    """Each long-enough history gives up its last item: ``held_in`` trains the sources, and
    ``requests`` (those histories without it) must find ``targets`` (the items given up)."""

    held_in: Histories
    requests: Histories
    targets: npt.NDArray[np.int64]
    target_kinds: npt.NDArray[np.int8] | None

    @classmethod
    def of(cls, histories: Histories, config: PipelineConfig, rng: np.random.Generator) -> HeldOut:
        long = np.flatnonzero(histories.lengths() >= config.holdout_min_length)
        if len(long) == 0:
            raise ModelFitError(
                f"fusion needs users with at least {config.holdout_min_length} events to learn from; none has"
            )
        if len(long) > config.max_fusion_requests:
            long = np.sort(rng.choice(long, config.max_fusion_requests, replace=False))
        short = histories.lengths() < config.holdout_min_length
        held_in = _replace_rows(histories.drop_last(1), histories, short)
        kinds = None if histories.kinds is None else histories.last_kind(1)[long]
        return cls(held_in, held_in.rows(long), histories.last(1)[long], kinds)


@dataclass(frozen=True)
class TrainingRows:
    """What the fusion learns from: subsampled candidate lists (``train``) and, for selecting a
    method, other requests' whole lists (``check``) and the same subsampled (``check_subsampled``)."""

    train: tuple[FusionInput, npt.NDArray[np.bool_]]
    check: tuple[FusionInput, npt.NDArray[np.bool_]] | None
    check_subsampled: tuple[FusionInput, npt.NDArray[np.bool_]] | None


class _RowSink:
    """Collects candidate rows batch by batch; ``build`` makes one :class:`FusionInput`."""

    def __init__(self, sources: tuple[str, ...]) -> None:
        self.sources = sources
        self.features: list[FloatArray] = []
        self.labels: list[npt.NDArray[np.bool_]] = []
        self.sizes: list[npt.NDArray[np.int64]] = []
        self.kinds: list[npt.NDArray[np.int8]] | None = []

    @property
    def n_groups(self) -> int:
        return sum(len(s) for s in self.sizes)

    def add(
        self,
        features: FloatArray,
        labels: npt.NDArray[np.bool_],
        sizes: npt.NDArray[np.int64],
        kinds: npt.NDArray[np.int8] | None,
    ) -> None:
        self.features.append(features)
        self.labels.append(labels)
        self.sizes.append(np.asarray(sizes, dtype=np.int64))
        if kinds is None or self.kinds is None:
            self.kinds = None
        else:
            self.kinds.append(kinds)

    def build(self) -> tuple[FusionInput, npt.NDArray[np.bool_]]:
        sizes = np.concatenate(self.sizes)
        group_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        kinds = None if self.kinds is None else np.concatenate(self.kinds)
        names = tuple(feature_names(self.sources))
        return (
            FusionInput(np.concatenate(self.features), names, self.sources, group_ptr, kinds),
            np.concatenate(self.labels),
        )


def _restricted(
    batches: list[tuple[IntArray, Histories, CandidateBatch]], per_source: Mapping[str, int]
) -> list[tuple[IntArray, Histories, CandidateBatch]]:
    """The held-out batches as if only the sources in ``per_source`` had run."""
    return [(rows, requests, batch.restricted(per_source)) for rows, requests, batch in batches]


def _group_ptr_of(rows: IntArray, kept_requests: IntArray, n_requests: int) -> IntArray:
    """CSR pointer over the kept requests' candidates (``rows``: request of each candidate, sorted)."""
    counts = np.bincount(rows, minlength=n_requests)[kept_requests]
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def build_source(config: SourceConfig) -> Retriever:
    return retriever_class(config.kind)().with_params(**config.params)


class FusionRetriever(Retriever):
    """A whole pipeline behind the same contract as a single source (name ``fusion``)."""

    name: ClassVar[str] = "fusion"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config = dict(config) if config is not None else default_config().model_dump()

    @property
    def pipeline(self) -> PipelineConfig:
        # Validated once per config: it was ~2% of a served scoring call (RESULTS.md, session 7).
        parsed = self.__dict__.get("_pipeline")
        if parsed is None or parsed[0] is not self.config:
            parsed = self._pipeline = (self.config, parse_config(self.config, "pipeline config"))
        return parsed[1]

    # --- training --------------------------------------------------------------------------
    def _fit(self, data: TrainData) -> None:
        cfg = self.pipeline
        started = time.perf_counter()
        holdout = HeldOut.of(data.histories, cfg, np.random.default_rng(cfg.seed))
        held_in_data = TrainData(holdout.held_in, data.catalog)
        held_out_sources = {s.name: build_source(s).fit(held_in_data) for s in cfg.sources}
        self.learn_fusion(held_out_sources, holdout, data)
        self.timings_ = {"held_out_fit_and_fusion_s": time.perf_counter() - started}
        refit_started = time.perf_counter()
        full = TrainData(data.histories, data.catalog)
        self.use_sources(
            {s.name: build_source(s).fit(full) if s.refit else held_out_sources[s.name] for s in cfg.sources},
            data,
        )
        self.timings_["refit_s"] = time.perf_counter() - refit_started

    def learn_fusion(
        self, held_out_sources: Mapping[str, Retriever], holdout: HeldOut, data: TrainData
    ) -> None:
        """Learn the fusion from sources fitted without the held-out items (``holdout``)."""
        cfg = self.pipeline
        sources = {s.name: held_out_sources[s.name] for s in cfg.sources}
        names = tuple(sources)
        stats = ItemStatistics.fit(holdout.held_in, data.catalog)
        fusion = fusion_class(cfg.fusion.method)(**cfg.fusion.params)
        self.pruning_: dict[str, Any] | None = None
        if not isinstance(fusion, SelectedFusion):
            rng = np.random.default_rng(cfg.seed)
            batches = self._candidate_batches(sources, holdout)
            rows = self._training_rows(batches, names, stats, holdout, rng, None)
            fusion.fit(*rows.train, rng)
            self.fusion_, self.training_groups_, self.timings_ = fusion, len(rows.train[0].group_ptr) - 1, {}
            return
        if not (cfg.fusion.prune_sources and len(sources) > 1):
            rows, _ = self._select(fusion, self._candidate_batches(sources, holdout), names, stats, holdout)
        else:
            # Pruning weighs the pipeline without each source on these same candidates: kept.
            kept_batches = list(self._candidate_batches(sources, holdout))
            rows, whole = self._select(fusion, kept_batches, names, stats, holdout)
            chosen = fusion
            kept, self.pruning_ = prune_sources(
                {s.name: s.candidates for s in cfg.sources},
                lambda per_source, seed: self._check_gains(
                    kept_batches, per_source, chosen, stats, holdout, whole, seed
                ),
                cfg.seed,
            )
            if len(kept) < len(sources):  # serve the kept sources, with a fusion chosen for them
                served = [s for s in cfg.sources if s.name in kept]
                self.config = {**self.config, "sources": [s.model_dump() for s in served]}
                per_source = {s.name: s.candidates for s in served}
                restricted = _restricted(kept_batches, per_source)
                fusion = fusion_class(cfg.fusion.method)(**cfg.fusion.params)
                assert isinstance(fusion, SelectedFusion)
                rows, _ = self._select(fusion, restricted, kept, stats, holdout)
        assert rows.check_subsampled is not None
        self.fusion_ = fusion
        self.training_groups_ = len(rows.train[0].group_ptr) + len(rows.check_subsampled[0].group_ptr) - 2
        self.timings_ = {}

    def _select(
        self,
        fusion: SelectedFusion,
        batches: Iterable[tuple[IntArray, Histories, CandidateBatch]],
        names: tuple[str, ...],
        stats: ItemStatistics,
        holdout: HeldOut,
    ) -> tuple[TrainingRows, npt.NDArray[np.bool_]]:
        """Fit ``fusion`` (it chooses its method on a random part of the held-out requests' whole
        lists); returns the rows it learned from and which requests it chose on."""
        rng = np.random.default_rng(self.pipeline.seed)
        whole = rng.random(len(holdout.requests)) < fusion.selection_fraction
        rows = self._training_rows(batches, names, stats, holdout, rng, whole)
        if rows.check is None or rows.check_subsampled is None:
            raise ModelFitError("select fusion: too few held-out requests to choose a method on")
        fusion.fit_and_select(rows.train, rows.check, rows.check_subsampled, rng)
        return rows, whole

    def _check_gains(
        self,
        batches: list[tuple[IntArray, Histories, CandidateBatch]],
        per_source: Mapping[str, int],
        selected: SelectedFusion,
        stats: ItemStatistics,
        holdout: HeldOut,
        whole: npt.NDArray[np.bool_],
        seed: int,
    ) -> FloatArray:
        """NDCG@10 of each selection request's whole list, for the method ``selected`` chose fitted
        on the other requests, as if only the sources in ``per_source`` had run."""
        restricted = _restricted(batches, per_source)
        rng = np.random.default_rng(seed)
        rows = self._training_rows(restricted, tuple(per_source), stats, holdout, rng, whole)
        assert rows.check is not None
        fusion = selected.make_chosen().fit(*rows.train, rng)
        check, labels = rows.check
        return ndcg_gains(fusion.predict(check), labels, check.group_ptr)

    def use_sources(self, sources: Mapping[str, Retriever], data: TrainData) -> None:
        """Serve with these fitted sources (fitted on ``data``) and the learned fusion."""
        self.sources_ = {s.name: sources[s.name] for s in self.pipeline.sources}
        self.stats_ = ItemStatistics.fit(data.histories, data.catalog)
        self.n_items_ = data.n_items

    def _candidate_batches(
        self, sources: Mapping[str, Retriever], holdout: HeldOut
    ) -> Iterator[tuple[IntArray, Histories, CandidateBatch]]:
        """The held-out requests' candidates, a batch at a time: (request rows, requests, batch)."""
        cfg = self.pipeline
        per_source = {s.name: s.candidates for s in cfg.sources if s.name in sources}
        requests = holdout.requests
        for start in range(0, len(requests), cfg.batch_size):
            rows = np.arange(start, min(start + cfg.batch_size, len(requests)))
            batch_requests = requests.rows(rows)
            yield rows, batch_requests, generate_candidates(sources, batch_requests, per_source)

    def _training_rows(
        self,
        batches: Iterable[tuple[IntArray, Histories, CandidateBatch]],
        names: tuple[str, ...],
        stats: ItemStatistics,
        holdout: HeldOut,
        rng: np.random.Generator,
        whole: npt.NDArray[np.bool_] | None,
    ) -> TrainingRows:
        """Candidates of the held-out requests with their features and labels. Requests flagged in
        ``whole`` also keep their full candidate lists (to compare fusions as they will serve)."""
        cfg = self.pipeline
        train, check, check_sub = _RowSink(names), _RowSink(names), _RowSink(names)
        requests, targets, target_kinds = holdout.requests, holdout.targets, holdout.target_kinds
        flags = np.zeros(len(requests), dtype=bool) if whole is None else whole
        for rows, batch_requests, batch in batches:
            features = build_features(batch, batch_requests, stats)
            label = batch.item == targets[rows][batch.row]
            kinds = None if target_kinds is None else target_kinds[rows]
            priority = features[:, feature_names(names).index("best_rank")]
            in_check = flags[rows]
            for sink, selected in ((train, ~in_check), (check_sub, in_check)):
                keep_rows = selected[batch.row]
                ptr = _group_ptr_of(batch.row[keep_rows], np.flatnonzero(selected), len(rows))
                keep, sub_ptr = subsample_groups(
                    label[keep_rows], ptr, priority[keep_rows], cfg.fusion.max_negatives, rng
                )
                has_positive = np.bincount(batch.row[keep_rows][label[keep_rows]], minlength=len(rows)) > 0
                sink.add(
                    features[keep_rows][keep],
                    label[keep_rows][keep],
                    np.diff(sub_ptr),
                    None if kinds is None else kinds[has_positive & selected],
                )
            if in_check.any():
                keep_rows = in_check[batch.row]
                sizes = np.bincount(batch.row[keep_rows], minlength=len(rows))[in_check]
                check.add(
                    features[keep_rows], label[keep_rows], sizes, None if kinds is None else kinds[in_check]
                )
        if train.n_groups == 0:
            raise ModelFitError("no held-out target was among the candidates: raise `candidates` per source")
        return TrainingRows(
            train.build(),
            check.build() if check.n_groups else None,
            check_sub.build() if check_sub.n_groups else None,
        )

    def fit_summary(self) -> dict[str, Any]:
        self._check_fitted()
        summary: dict[str, Any] = {"fusion": self.fusion_.name, "training_groups": self.training_groups_}
        if isinstance(self.fusion_, SelectedFusion):
            summary["fusion"] = self.fusion_.chosen_
            summary["selection_ndcg@10"] = {k: round(v, 6) for k, v in self.fusion_.selection_ndcg_.items()}
        if getattr(self, "pruning_", None) is not None:
            summary["source_pruning"] = self.pruning_
        for name, source in self.sources_.items():
            # Iteratively trained sources say how training ended (e.g. stopped by a time budget).
            training = getattr(source, "training_summary", None)
            if callable(training) and hasattr(source, "epochs_"):
                full = training()
                summary[f"{name}_training"] = {
                    "epochs": len(full["epochs"]),
                    "best_epoch": full["best_epoch"],
                    "stopped_by": full["stopped_by"],
                    "seconds": round(full["epochs"][-1][3], 1) if full["epochs"] else 0.0,
                }
        return summary

    # --- serving ---------------------------------------------------------------------------
    def candidates(self, requests: Histories) -> tuple[CandidateBatch, FusionInput]:
        self._check_fitted()
        cfg = self.pipeline
        batch = generate_candidates(self.sources_, requests, {s.name: s.candidates for s in cfg.sources})
        names = tuple(self.sources_)
        if not self.fusion_.needs_features:
            score_names = tuple(f"{name}_score" for name in names)
            return batch, FusionInput(batch.source_scores, score_names, names, batch.group_ptr)
        fusion_input = FusionInput(
            build_features(batch, requests, self.stats_), tuple(feature_names(names)), names, batch.group_ptr
        )
        return batch, fusion_input

    def _score(self, requests: Histories) -> FloatArray:
        out = np.empty((len(requests), requests.n_items), dtype=np.float32)
        step = self.pipeline.batch_size
        for start in range(0, len(requests), step):
            rows = np.arange(start, min(start + step, len(requests)))
            out[rows] = self._score_batch(requests.rows(rows))
        return out

    def rank(self, requests: Histories) -> RankedCandidates:
        """The fused score of each request's candidates: what :meth:`score` spreads over the
        catalog, without building the ``(requests, n_items)`` matrix (a served list needs only
        its best candidates)."""
        with single_blas_thread_if_small(len(requests)):  # one limit for every source's work
            batch, fusion_input = self.candidates(requests)
            fused = self.fusion_.predict(fusion_input) if len(batch) else np.zeros(0, np.float32)
        return RankedCandidates(batch, np.asarray(fused, dtype=np.float32))

    def spread(self, ranked: RankedCandidates) -> FloatArray:
        """Every item's score: the candidates' fused scores; below every candidate, the items no
        source proposed, ordered by popularity."""
        batch, fused = ranked.batch, ranked.fused
        n_requests = batch.n_requests
        floor = np.full(n_requests, 0.0, dtype=np.float32)
        if len(batch):
            lowest = np.full(n_requests, np.inf, dtype=np.float32)
            np.minimum.at(lowest, batch.row, fused)
            floor = np.where(np.isfinite(lowest), lowest, 0.0).astype(np.float32)
        popularity = self.stats_.log_popularity
        scale = 1.0 / (1.0 + float(popularity.max(initial=0.0)))
        out = (floor[:, None] - 1.0 + scale * popularity[None, :]).astype(np.float32)
        out[batch.row, batch.item] = fused
        return out

    def _score_batch(self, requests: Histories) -> FloatArray:
        return self.spread(self.rank(requests))

    # --- persistence -----------------------------------------------------------------------
    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        arrays: dict[str, npt.NDArray[Any]] = {f"stats.{k}": v for k, v in self.stats_.arrays().items()}
        arrays.update({f"fusion.{k}": v for k, v in self.fusion_.arrays().items()})
        training = {"timings": self.timings_, "groups": self.training_groups_, "pruning": self.pruning_}
        arrays["training"] = np.array(json.dumps(training))
        return arrays

    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.stats_ = ItemStatistics.from_arrays({k[6:]: arrays[k] for k in arrays if k.startswith("stats.")})
        cfg = self.pipeline
        fusion: Fusion = fusion_class(cfg.fusion.method)(**cfg.fusion.params)
        fusion.restore({k[7:]: arrays[k] for k in arrays if k.startswith("fusion.")})
        self.fusion_ = fusion
        training = json.loads(str(arrays["training"]))
        self.timings_, self.training_groups_ = training["timings"], training["groups"]
        self.pruning_ = training.get("pruning")  # absent from artifacts made before pruning

    def save(self, path: Path) -> Path:
        super().save(path)
        for name, source in self.sources_.items():
            source.save(path / "sources" / name)
        return path

    @classmethod
    def load(cls, path: Path) -> Self:
        model = super().load(path)
        model.sources_ = {}
        for source in model.pipeline.sources:
            manifest = read_manifest(path / "sources" / source.name)
            model.sources_[source.name] = retriever_class(manifest["name"]).load(
                path / "sources" / source.name
            )
        return model
