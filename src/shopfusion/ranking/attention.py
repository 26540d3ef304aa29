"""Attention-style fusion: a small network chooses each request's source weights from context.

Context of a request: its history length, the popularity of what it proposed, and
for every source the share of candidates it proposed and its agreement with the
others. The network outputs softmax weights over sources; the candidate's score is
``Σ_s w_s(context) · z_s`` (``z_s`` the per-request standardised score of source s),
trained with a listwise softmax loss on held-out targets. Short histories can lean
on popularity, long ones on sequence models — per request, not once for everyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import FloatArray
from shopfusion.ranking.fusion import Fusion, FusionInput, Labels
from shopfusion.ranking.groups import group_ids
from shopfusion.ranking.losses import listwise_softmax_loss


def request_context(data: FusionInput) -> FloatArray:
    """Per-request context features, shape ``(n_groups, 2 + 2·n_sources)``."""
    gid = group_ids(data.group_ptr)
    n_groups = len(data.group_ptr) - 1
    sizes = np.maximum(np.diff(data.group_ptr), 1).astype(np.float64)

    def group_mean(values: FloatArray) -> FloatArray:
        return (np.bincount(gid, weights=values, minlength=n_groups) / sizes).astype(np.float32)

    history = np.zeros(n_groups, dtype=np.float32)
    history[gid] = data.column("history_length")
    columns = [np.log1p(history), group_mean(data.column("item_log_popularity"))]
    n_proposers = data.column("n_proposers")
    for source in data.sources:
        rank = data.column(f"{source}_rank")
        proposed = (rank < rank.max(initial=0.0)).astype(np.float64)
        columns.append(group_mean(proposed))
        columns.append(group_mean(proposed * (n_proposers > 1)))
    return np.column_stack(columns).astype(np.float32)


class AttentionFusion(Fusion):
    name: ClassVar[str] = "attention"

    def __init__(
        self, hidden: int = 32, epochs: int = 30, learning_rate: float = 0.01, random_state: int = 0
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.random_state = random_state

    def _network(self, n_context: int, n_sources: int) -> Any:
        import torch

        torch.manual_seed(self.random_state)
        return torch.nn.Sequential(
            torch.nn.Linear(n_context, self.hidden), torch.nn.ReLU(), torch.nn.Linear(self.hidden, n_sources)
        )

    def fit(self, data: FusionInput, labels: Labels, rng: np.random.Generator) -> Self:
        import torch

        context = request_context(data)
        self.context_mean_ = context.mean(axis=0)
        self.context_std_ = np.maximum(context.std(axis=0), 1e-6)
        ctx = torch.from_numpy((context - self.context_mean_) / self.context_std_)
        z = torch.from_numpy(data.normalised_scores())
        gid = torch.from_numpy(group_ids(data.group_ptr))
        positive = torch.from_numpy(labels)
        n_groups = len(data.group_ptr) - 1
        net = self._network(ctx.shape[1], z.shape[1])
        optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        for _ in range(self.epochs):
            optimizer.zero_grad()
            weights = torch.softmax(net(ctx), dim=1)
            scores = (weights[gid] * z).sum(dim=1)
            loss = listwise_softmax_loss(scores, positive, gid, n_groups)
            loss.backward()
            optimizer.step()
        self.state_ = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
        return self

    def source_weights(self, data: FusionInput) -> FloatArray:
        import torch

        state: dict[str, FloatArray] = self._require("state_")
        context = (request_context(data) - self.context_mean_) / self.context_std_
        net = self._network(context.shape[1], len(data.sources))
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        with torch.inference_mode():
            weights = torch.softmax(net(torch.from_numpy(context.astype(np.float32))), dim=1).numpy()
        return np.asarray(weights, dtype=np.float32)

    def contributions(self, data: FusionInput) -> FloatArray:
        weights = self.source_weights(data)
        per_row = weights[group_ids(data.group_ptr)]
        shares: FloatArray = (per_row * data.normalised_scores()).astype(np.float32)
        return shares

    def predict(self, data: FusionInput) -> FloatArray:
        fused: FloatArray = self.contributions(data).sum(axis=1).astype(np.float32)
        return fused

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        state: dict[str, FloatArray] = self._require("state_")
        out: dict[str, npt.NDArray[Any]] = {f"net.{k}": v for k, v in state.items()}
        out["context_mean"] = self.context_mean_
        out["context_std"] = self.context_std_
        return out

    def restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.state_ = {k[4:]: np.asarray(arrays[k]) for k in arrays if k.startswith("net.")}
        self.context_mean_ = np.asarray(arrays["context_mean"])
        self.context_std_ = np.asarray(arrays["context_std"])
