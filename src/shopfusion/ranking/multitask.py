"""Multi-task fusion: one shared network, two heads — *engage* (the shopper interacts with the item
next, any event) and *convert* (the next event is an add-to-cart or a purchase).

Used when the event stream has more than one event type: purchases are rare, so a model
trained on them alone sees little data, while one trained on clicks alone ranks what
is clicked, not what sells. Sharing the representation lets the scarce purchase signal
borrow from the abundant click signal; the served score is
``engage + conversion_weight · convert``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import FloatArray
from shopfusion.data.schema import EventType
from shopfusion.errors import ConfigError
from shopfusion.ranking.fusion import Fusion, FusionInput, Labels
from shopfusion.ranking.groups import group_ids
from shopfusion.ranking.losses import listwise_softmax_loss

CONVERSION_KINDS = (EventType.ADD_TO_CART.code, EventType.PURCHASE.code)


class MultiTaskFusion(Fusion):
    name: ClassVar[str] = "multitask"

    def __init__(
        self,
        hidden: int = 64,
        epochs: int = 60,
        learning_rate: float = 0.01,
        conversion_weight: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.conversion_weight = conversion_weight
        self.random_state = random_state

    def _network(self, n_features: int) -> Any:
        import torch

        torch.manual_seed(self.random_state)
        return torch.nn.Sequential(
            torch.nn.Linear(n_features, self.hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(self.hidden, self.hidden // 2),
            torch.nn.ReLU(),
            torch.nn.Linear(self.hidden // 2, 2),  # column 0: engage, column 1: convert
        )

    def _standardise(self, data: FusionInput) -> FloatArray:
        x = np.nan_to_num(data.features, nan=0.0, posinf=0.0, neginf=0.0)
        standardised: FloatArray = ((x - self.mean_) / self.std_).astype(np.float32)
        return standardised

    def fit(self, data: FusionInput, labels: Labels, rng: np.random.Generator) -> Self:
        import torch

        if data.target_kinds is None:
            raise ConfigError(
                "multitask fusion needs event types in the training data; use lambdamart instead"
            )
        converting = np.isin(data.target_kinds, CONVERSION_KINDS)
        if converting.all() or not converting.any():
            raise ConfigError(
                "multitask fusion needs held-out targets of more than one kind (clicks/views and carts/"
                "purchases); this event stream has one kind: use lambdamart or weighted"
            )
        clean = np.nan_to_num(data.features, nan=0.0, posinf=0.0, neginf=0.0)
        self.mean_ = clean.mean(axis=0)
        self.std_ = np.maximum(clean.std(axis=0), 1e-6)
        x = torch.from_numpy(self._standardise(data))
        gid_np = group_ids(data.group_ptr)
        gid = torch.from_numpy(gid_np)
        positive = torch.from_numpy(labels)
        convert_positive = torch.from_numpy(labels & converting[gid_np])
        n_groups = len(data.group_ptr) - 1
        net = self._network(x.shape[1])
        optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=1e-5)

        for _ in range(self.epochs):
            optimizer.zero_grad()
            out = net(x)
            loss = listwise_softmax_loss(out[:, 0], positive, gid, n_groups) + listwise_softmax_loss(
                out[:, 1], convert_positive, gid, n_groups
            )
            loss.backward()
            optimizer.step()
        self.state_ = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
        return self

    def heads(self, data: FusionInput) -> FloatArray:
        """``(m, 2)``: engage and convert scores of each candidate."""
        import torch

        state: dict[str, FloatArray] = self._require("state_")
        net = self._network(data.features.shape[1])
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        with torch.inference_mode():
            return np.asarray(net(torch.from_numpy(self._standardise(data))).numpy(), dtype=np.float32)

    def predict(self, data: FusionInput) -> FloatArray:
        heads = self.heads(data)
        return (heads[:, 0] + self.conversion_weight * heads[:, 1]).astype(np.float32)

    def contributions(self, data: FusionInput) -> FloatArray:
        """Occlusion: how much the score drops when a source's features are set to their mean."""
        full = self.predict(data)
        out = np.zeros((len(data.features), len(data.sources)), dtype=np.float32)
        for s, source in enumerate(data.sources):
            cols = [i for i, n in enumerate(data.feature_names) if n.startswith(f"{source}_")]
            occluded = data.features.copy()
            occluded[:, cols] = self.mean_[cols]
            out[:, s] = full - self.predict(
                FusionInput(occluded, data.feature_names, data.sources, data.group_ptr)
            )
        return out

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        state: dict[str, FloatArray] = self._require("state_")
        out: dict[str, npt.NDArray[Any]] = {f"net.{k}": v for k, v in state.items()}
        out["mean"], out["std"] = self.mean_, self.std_
        return out

    def restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.state_ = {k[4:]: np.asarray(arrays[k]) for k in arrays if k.startswith("net.")}
        self.mean_, self.std_ = np.asarray(arrays["mean"]), np.asarray(arrays["std"])
