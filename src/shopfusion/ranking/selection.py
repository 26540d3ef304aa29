"""``select`` fusion: try several fusion methods and keep the one that ranks held-out requests best.

No single method wins everywhere: a LambdaMART stack needs many requests to beat a weighted
average of standardised source scores, and which side of that line a shop is on depends on
its data. So the choice itself is learned: each candidate method is fitted on most of the
fusion's training requests and scored (NDCG@10) on the rest, the winner is refitted on all of
them. Like every fusion, it sees only held-out *training* targets, never an evaluation target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from shopfusion.errors import ConfigError, ModelFitError
from shopfusion.ranking.fusion import Fusion, FusionInput, Labels
from shopfusion.ranking.groups import group_ids, ndcg_at_k


def take_groups(
    data: FusionInput, labels: Labels, groups: npt.NDArray[np.bool_]
) -> tuple[FusionInput, Labels]:
    """The requests flagged in ``groups`` (one flag per group), with their labels and target kinds."""
    rows = groups[group_ids(data.group_ptr)]
    sizes = np.diff(data.group_ptr)[groups]
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    kinds = None if data.target_kinds is None else data.target_kinds[groups]
    subset = FusionInput(data.features[rows], data.feature_names, data.sources, ptr, kinds)
    return subset, labels[rows]


def concat_inputs(*parts: tuple[FusionInput, Labels]) -> tuple[FusionInput, Labels]:
    """Requests of several inputs (same features and sources) as one input."""
    first = parts[0][0]
    sizes = np.concatenate([np.diff(p.group_ptr) for p, _ in parts])
    kinds = [p.target_kinds for p, _ in parts]
    return (
        FusionInput(
            np.concatenate([p.features for p, _ in parts]),
            first.feature_names,
            first.sources,
            np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            None if any(k is None for k in kinds) else np.concatenate([k for k in kinds if k is not None]),
        ),
        np.concatenate([labels for _, labels in parts]),
    )


class SelectedFusion(Fusion):
    """Fit each of ``methods`` on ``1 - selection_fraction`` of the requests, keep the best on the
    rest (NDCG@10), refit it on all. ``params`` maps a method name to its hyper-parameters."""

    name: ClassVar[str] = "select"

    def __init__(
        self,
        methods: Sequence[str] = ("weighted", "lambdamart"),
        params: Mapping[str, Mapping[str, Any]] | None = None,
        selection_fraction: float = 0.2,
    ) -> None:
        self.methods = list(methods)
        self.params = {k: dict(v) for k, v in (params or {}).items()}
        self.selection_fraction = selection_fraction
        if not self.methods or "select" in self.methods:
            raise ConfigError("select fusion: `methods` must name one or more other fusion methods")
        if not 0.0 < selection_fraction < 1.0:
            raise ConfigError(
                f"select fusion: selection_fraction must be in (0, 1), got {selection_fraction}"
            )
        for method in self.methods:
            self._make(method)  # an unknown method or parameter fails at load, not after training

    def make_chosen(self) -> Fusion:
        """A new, unfitted fusion of the chosen method and its parameters."""
        return self._make(self._require("chosen_"))

    def _make(self, method: str) -> Fusion:
        from shopfusion.ranking.fusion_registry import fusion_class

        return fusion_class(method)(**self.params.get(method, {}))

    def fit(self, data: FusionInput, labels: Labels, rng: np.random.Generator) -> Self:
        """Select on a random ``selection_fraction`` of ``data``'s requests. The pipeline calls
        :meth:`fit_and_select` instead, with those requests' *whole* candidate lists."""
        n_groups = len(data.group_ptr) - 1
        held = rng.random(n_groups) < self.selection_fraction
        if held.all() or not held.any():
            raise ModelFitError("select fusion needs at least two requests with a held-out target")
        fit_part, fit_labels = take_groups(data, labels, ~held)
        check_part, check_labels = take_groups(data, labels, held)
        return self.fit_and_select(
            (fit_part, fit_labels), (check_part, check_labels), (check_part, check_labels), rng
        )

    def fit_and_select(
        self,
        train: tuple[FusionInput, Labels],
        check: tuple[FusionInput, Labels],
        check_as_training: tuple[FusionInput, Labels],
        rng: np.random.Generator,
    ) -> Self:
        """Fit each method on ``train``, score it on ``check`` and refit the best on ``train`` plus
        ``check_as_training`` (the same requests as ``check``, subsampled like ``train``).

        ``check`` should hold whole candidate lists, as served: a ranker fitted on subsampled
        negatives can look best on subsampled lists and still lose on the full ones (it did on
        Amazon Beauty), and serving ranks the full lists."""
        self.selection_ndcg_: dict[str, float] = {}
        for method in self.methods:
            try:
                fusion = self._make(method).fit(*train, np.random.default_rng(rng.integers(2**31)))
            except (ModelFitError, ConfigError):
                # A method that cannot learn from these data (e.g. multitask on a stream with one
                # event type, alpha without a content source) simply does not compete.
                continue
            check_data, check_labels = check
            self.selection_ndcg_[method] = ndcg_at_k(
                fusion.predict(check_data), check_labels, check_data.group_ptr
            )
        if not self.selection_ndcg_:
            raise ModelFitError(f"select fusion: none of {', '.join(self.methods)} could be fitted")
        self.chosen_ = max(self.selection_ndcg_, key=lambda m: self.selection_ndcg_[m])
        everything = concat_inputs(train, check_as_training)
        self.fusion_ = self._make(self.chosen_).fit(*everything, rng)
        return self

    @property
    def needs_features(self) -> bool:
        fusion: Fusion = self._require("fusion_")
        return fusion.needs_features

    def predict(self, data: FusionInput) -> npt.NDArray[np.float32]:
        fusion: Fusion = self._require("fusion_")
        return fusion.predict(data)

    def contributions(self, data: FusionInput) -> npt.NDArray[np.float32]:
        fusion: Fusion = self._require("fusion_")
        return fusion.contributions(data)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        fusion: Fusion = self._require("fusion_")
        arrays = {f"chosen.{k}": v for k, v in fusion.arrays().items()}
        arrays["chosen"] = np.array(self.chosen_)
        arrays["selection_methods"] = np.array(list(self.selection_ndcg_))
        arrays["selection_ndcg"] = np.array(list(self.selection_ndcg_.values()), dtype=np.float64)
        return arrays

    def restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.chosen_ = str(arrays["chosen"])
        self.selection_ndcg_ = {
            str(m): float(v)
            for m, v in zip(arrays["selection_methods"], arrays["selection_ndcg"], strict=True)
        }
        fusion = self._make(self.chosen_)
        fusion.restore({k[len("chosen.") :]: v for k, v in arrays.items() if k.startswith("chosen.")})
        self.fusion_ = fusion
