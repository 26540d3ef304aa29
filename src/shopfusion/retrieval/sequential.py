"""SASRec: next-item prediction with a causal transformer over the recent history.

Trained as in "gSASRec" / Klenitskiy & Vasilev (2023): every position of every training
sequence predicts its next item with a softmax cross-entropy over the true item and a set of
negatives shared by the whole batch (or over the full catalog), which makes SASRec far stronger
than with its original binary loss. Training stops early on a held-out next item per user.

PyTorch is imported only when a model is fitted or loaded (``pip install torch==2.13.0``).

Defaults were chosen on the validation target of Amazon Beauty (S3-Rec leave-one-out: train on
``seq[:-2]``, rank all items for ``seq[-2]``, history excluded; 1 CPU thread). NDCG@10 / HR@10 /
Recall@200, best epoch / epochs run; every run had ``hidden_size=64``, two blocks, one head:

=========================================================  ==============================  =======
dropout, negatives, batch, learning rate                    NDCG@10 / HR@10 / Recall@200    epochs
=========================================================  ==============================  =======
0.2, 256 uniform, 128, 1e-3                                 .0487 / .0822 / .2531           15/20
0.5, 256 uniform, 128, 1e-3                                 .0519 / .0879 / .2776           31/36
0.2, 1024 uniform, 128, 1e-3                                .0536 / .0896 / .2671           20/25
0.5, 1024 uniform, 128, 1e-3                                .0544 / .0917 / .2830           29/34
0.5, 1024 uniform, 128, 2e-3                                .0530 / .0902 / .2865           20/25
0.5, 1024 uniform, 128, 1e-3, ``hidden_size=128``           .0533 / .0893 / .2810           13/18
0.5, 1024 popularity (logQ), 128, 1e-3                      .0551 / .0912 / .2846           27/32
0.5, 1024 popularity (logQ), 256, 2e-3 (seeds 42, 1)        .0549, .0535 / .0914 / .2897    25/30
0.5, 2048 popularity (logQ), 128, 1e-3                      .0548 / .0906 / .2785           20/25
0.5, 2048 uniform, 256, 2e-3                                .0546 / .0898 / .2856           23/28
0.5, 4096 uniform, 256, 2e-3                                .0537 / .0897 / .2804           17/22
0.5, 4096 uniform, 128, 1e-3 (~12 s an epoch: over budget)  .0570 / .0944 / .2836           24/29
**0.5, 2048 uniform, 128, 1e-3** (seeds 42, 1)              .0559, .0560 / .0933 / .2817    22/27
=========================================================  ==============================  =======

Seed-to-seed differences are about .001. An epoch of the default takes ~7 s on one core.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import FloatArray, Histories, IntArray
from shopfusion.errors import ConfigError, DataError, ModelFitError
from shopfusion.retrieval.base import Retriever, TrainData
from shopfusion.retrieval.blas import single_blas_thread_if_small
from shopfusion.retrieval.sasrec_inference import SASRecWeights, pad_left
from shopfusion.retrieval.scores import mask_history

if TYPE_CHECKING:
    import torch

    from shopfusion.retrieval._torch_utils import SASRecNet

logger = logging.getLogger(__name__)

#: Batches are formed from windows of this many batches' worth of users sorted by length, so a
#: batch is padded to about its own length instead of ``max_len`` (most histories are short).
_BUCKET_BATCHES = 64
_SCORE_BATCH = 1024


@dataclass(frozen=True)
class EpochRecord:
    """One training epoch: mean loss, early-stopping NDCG@10 (NaN without held-out users), seconds so far."""

    epoch: int
    loss: float
    ndcg_at_10: float
    seconds: float


class SASRecRetriever(Retriever):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), trained with sampled softmax.

    A request is encoded from its last ``max_len`` items; the hidden state of the last position
    is scored against every item embedding (the output layer is tied to the input embedding).

    Early stopping: for ``n_eval_users`` users (sampled among those with two or more items) the
    last training item is held out; after each epoch the model ranks all items for them (their
    history excluded) and the weights of the epoch with the best NDCG@10 are kept. Training stops
    after ``patience`` epochs without improvement, after ``max_epochs``, or once
    ``max_train_seconds`` have passed (the only non-deterministic stop: results are reproducible
    for a given ``random_state`` when training ends before the wall-clock budget). The budget is a
    safety cap, set well above what patience needs (Beauty: 27–34 epochs, 150–310 s on one core of
    a more or less busy 2-core machine), so that a busy machine trains the same model, only
    later; ``stopped_by_`` and the artifact record which rule ended training.

    The held-out items of those users stay out of training (a few percent of the events).

    ``n_negatives=None`` trains with the full softmax over the catalog (slow on CPU).
    ``n_threads=None`` uses every core available to the process. The default is one thread: the
    operations are small, and on a 2-core machine two threads were 1.7x faster when the machine
    was idle but 8x *slower* while another process kept one core busy (threads wait on each other).
    """

    name: ClassVar[str] = "sasrec"
    search_space: ClassVar[tuple[Mapping[str, Any], ...]] = ({},)

    def __init__(
        self,
        hidden_size: int = 64,
        n_blocks: int = 2,
        n_heads: int = 1,
        max_len: int = 50,
        dropout: float = 0.5,
        n_negatives: int | None = 2048,
        negative_sampling: str = "uniform",
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        max_epochs: int = 200,
        patience: int = 5,
        max_train_seconds: float = 600.0,
        n_eval_users: int = 5000,
        n_threads: int | None = 1,
        random_state: int = 42,
    ) -> None:
        self.hidden_size = hidden_size
        self.n_blocks = n_blocks
        self.n_heads = n_heads
        self.max_len = max_len
        self.dropout = dropout
        self.n_negatives = n_negatives
        self.negative_sampling = negative_sampling
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.max_train_seconds = max_train_seconds
        self.n_eval_users = n_eval_users
        self.n_threads = n_threads
        self.random_state = random_state

    # --- training ----------------------------------------------------------------------------
    def _fit(self, data: TrainData) -> None:
        self._check_params()
        import torch

        from shopfusion.retrieval._torch_utils import torch_threads

        rng = np.random.default_rng(self.random_state)
        train, eval_requests, eval_targets = _hold_out_last(data.histories, self.n_eval_users, rng)
        if not np.any(train.lengths() >= 2):
            raise DataError("sasrec needs at least one training history with two or more items")
        with torch_threads(self._threads()), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            net = self._new_net(data.n_items)
            net.set_dropout_rng(rng)
            self.epochs_, self.best_epoch_, self.stopped_by_ = self._train(
                net, train, eval_requests, eval_targets, rng
            )
            net.set_dropout_rng(None)
        self.net_ = net.eval()
        self._weights: SASRecWeights | None = None

    def _train(
        self,
        net: SASRecNet,
        train: Histories,
        eval_requests: Histories,
        eval_targets: IntArray,
        rng: np.random.Generator,
    ) -> tuple[list[EpochRecord], int, str]:
        import torch

        windows = pad_left(train, self.max_len + 1, width=self.max_len + 1)
        lengths = np.minimum(train.lengths(), self.max_len + 1)
        usable = np.flatnonzero(lengths >= 2)
        sampler = _NegativeSampler.build(self.negative_sampling, self.n_negatives or 1, train)
        optimizer = torch.optim.Adam(
            net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay, fused=True
        )
        started = time.perf_counter()
        records: list[EpochRecord] = []
        best_ndcg, best_epoch, best_state = -np.inf, 0, _copy_state(net)
        stopped_by = "max_epochs"
        for epoch in range(1, self.max_epochs + 1):
            net.train()
            losses = [
                self._step(net, optimizer, sampler, windows[batch], int(lengths[batch].max()) - 1, rng)
                for batch in _length_bucketed_batches(usable, lengths, self.batch_size, rng)
            ]
            ndcg = self._early_stopping_ndcg(net, eval_requests, eval_targets)
            records.append(EpochRecord(epoch, float(np.mean(losses)), ndcg, time.perf_counter() - started))
            logger.info("sasrec epoch %d: loss %.4f, NDCG@10 %.4f", epoch, records[-1].loss, ndcg)
            if len(eval_targets) == 0 or ndcg > best_ndcg:
                best_ndcg, best_epoch, best_state = ndcg, epoch, _copy_state(net)
            elif epoch - best_epoch >= self.patience:
                stopped_by = "patience"
                break
            if time.perf_counter() - started > self.max_train_seconds and epoch < self.max_epochs:
                logger.warning(
                    "sasrec: stopped by max_train_seconds=%s after %d epochs (best %d): the model "
                    "may be undertrained; raise the budget or train on a less busy machine",
                    self.max_train_seconds,
                    epoch,
                    best_epoch,
                )
                stopped_by = "max_train_seconds"
                break
        net.load_state_dict(best_state)
        logger.info("sasrec: %d epochs, best %d, stopped by %s", len(records), best_epoch, stopped_by)
        return records, best_epoch, stopped_by

    def _step(
        self,
        net: SASRecNet,
        optimizer: torch.optim.Optimizer,
        sampler: _NegativeSampler,
        windows: IntArray,
        width: int,
        rng: np.random.Generator,
    ) -> float:
        import torch
        from torch.nn import functional

        inputs = torch.from_numpy(windows[:, -width - 1 : -1])
        targets = torch.from_numpy(windows[:, -width:])
        hidden = net(inputs)[inputs > 0]
        positives = targets[inputs > 0]  # tokens (item + 1); left padding: a real input has a real target
        weights = net.item_embedding.weight
        if self.n_negatives is None:
            logits = hidden @ weights[1:].T
            loss = functional.cross_entropy(logits, positives - 1)
        else:
            loss = self._sampled_softmax_loss(hidden, positives, weights, sampler, rng)
        if not torch.isfinite(loss):
            raise ModelFitError("sasrec: the training loss is not finite; lower `learning_rate`")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        return float(loss.detach())

    def _sampled_softmax_loss(
        self,
        hidden: torch.Tensor,
        positives: torch.Tensor,
        weights: torch.Tensor,
        sampler: _NegativeSampler,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        """Cross-entropy of each target against ``n_negatives`` items shared by the batch.

        A negative that is the position's own target (an accidental hit) is masked out; logits
        are corrected by the log of each item's sampling probability (no-op when uniform).
        """
        import torch

        negatives, negative_correction = sampler.draw(rng)
        column = np.full(len(sampler.log_q) + 1, -1, dtype=np.int64)
        column[negatives] = np.arange(len(negatives))
        hit_columns = column[positives.numpy()]
        hit_rows = np.flatnonzero(hit_columns >= 0)
        positive_logits = (hidden * weights[positives]).sum(dim=1)
        negative_logits = hidden @ weights[torch.from_numpy(negatives)].T
        if sampler.corrected:
            positive_logits = positive_logits - torch.from_numpy(sampler.log_q[positives.numpy() - 1])
            negative_logits = negative_logits - torch.from_numpy(negative_correction)
        # In place is fine: neither the product's nor the subtraction's backward needs this output.
        negative_logits[torch.from_numpy(hit_rows), torch.from_numpy(hit_columns[hit_rows])] = -torch.inf
        # -log softmax of the positive, without concatenating the (rows x negatives) logits.
        log_partition = torch.logaddexp(positive_logits, torch.logsumexp(negative_logits, dim=1))
        return (log_partition - positive_logits).mean()

    def _early_stopping_ndcg(self, net: SASRecNet, requests: Histories, targets: IntArray) -> float:
        if len(targets) == 0:
            return float("nan")
        scores = _score_with(self._weights_of(net), requests)
        mask_history(scores, requests)
        target_scores = scores[np.arange(len(targets)), targets]
        rank = (scores > target_scores[:, None]).sum(axis=1)
        return float(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0).mean())

    # --- scoring -----------------------------------------------------------------------------
    def _score(self, requests: Histories) -> FloatArray:
        weights = self.__dict__.get("_weights")
        if weights is None:  # once per fit or load
            weights = self._weights = self._weights_of(self.net_)
        with single_blas_thread_if_small(len(requests)):
            return _score_with(weights, requests)

    def _weights_of(self, net: SASRecNet) -> SASRecWeights:
        from shopfusion.retrieval._torch_utils import state_arrays

        return SASRecWeights.of(state_arrays(net), self.n_heads, self.max_len)

    # --- persistence -------------------------------------------------------------------------
    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        from shopfusion.retrieval._torch_utils import state_arrays

        arrays: dict[str, npt.NDArray[Any]] = {
            f"net.{name}": value for name, value in state_arrays(self.net_).items()
        }
        if hasattr(self, "epochs_"):  # how training went, kept for the artifact's reader
            arrays["training"] = np.array(json.dumps(self.training_summary()))
        return arrays

    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        from shopfusion.retrieval._torch_utils import load_state_arrays

        n_items = int(arrays["net.item_embedding.weight"].shape[0]) - 1
        net = self._new_net(n_items)
        load_state_arrays(net, arrays, prefix="net.")
        self.net_ = net.eval()
        self._weights = None
        if "training" in arrays:
            summary = json.loads(str(arrays["training"]))
            self.epochs_ = [EpochRecord(*record) for record in summary["epochs"]]
            self.best_epoch_, self.stopped_by_ = summary["best_epoch"], summary["stopped_by"]

    def training_summary(self) -> dict[str, Any]:
        """Epochs run (epoch, loss, early-stopping NDCG@10, seconds), the kept epoch, the stop rule."""
        return {
            "epochs": [[r.epoch, r.loss, r.ndcg_at_10, r.seconds] for r in self.epochs_],
            "best_epoch": self.best_epoch_,
            "stopped_by": self.stopped_by_,
        }

    # --- helpers -----------------------------------------------------------------------------
    def _new_net(self, n_items: int) -> SASRecNet:
        from shopfusion.retrieval._torch_utils import SASRecNet

        return SASRecNet(n_items, self.hidden_size, self.n_blocks, self.n_heads, self.max_len, self.dropout)

    def _threads(self) -> int:
        return self.n_threads if self.n_threads is not None else len(os.sched_getaffinity(0))

    def _check_params(self) -> None:
        if self.hidden_size % self.n_heads:
            raise ConfigError(
                f"sasrec: hidden_size={self.hidden_size} must be a multiple of n_heads={self.n_heads}"
            )
        if self.max_len < 1 or self.batch_size < 1 or self.max_epochs < 1:
            raise ConfigError("sasrec: max_len, batch_size and max_epochs must be at least 1")
        if self.n_negatives is not None and self.n_negatives < 1:
            raise ConfigError("sasrec: n_negatives must be at least 1 (or None for the full softmax)")
        if self.negative_sampling not in ("uniform", "popularity"):
            raise ConfigError(
                f"sasrec: negative_sampling={self.negative_sampling!r}; use 'uniform' or 'popularity'"
            )


def _score_with(weights: SASRecWeights, requests: Histories) -> FloatArray:
    """Scores of every item from the last position's hidden state, in batches of similar length."""
    out = np.empty((len(requests), weights.arrays["item_embedding.weight"].shape[0] - 1), dtype=np.float32)
    # Sorting by length pads each batch only to its own longest history (most are short).
    order = np.argsort(np.minimum(requests.lengths(), weights.max_len), kind="stable")
    for start in range(0, len(requests), _SCORE_BATCH):
        rows = order[start : start + _SCORE_BATCH]
        out[rows] = weights.scores(pad_left(requests.rows(rows), weights.max_len))
    return out


def _hold_out_last(
    histories: Histories, n_users: int, rng: np.random.Generator
) -> tuple[Histories, Histories, IntArray]:
    """Remove the last item of up to ``n_users`` random rows with two or more items.

    Returns the remaining training histories, the shortened rows as requests, and their targets.
    """
    eligible = np.flatnonzero(histories.lengths() >= 2)
    chosen = np.sort(rng.choice(eligible, size=min(n_users, len(eligible)), replace=False))
    keep = np.ones(len(histories.items), dtype=bool)
    keep[histories.indptr[chosen + 1] - 1] = False
    lengths = histories.lengths()
    lengths[chosen] -= 1
    indptr = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    train = Histories(indptr, histories.items[keep], histories.users.copy(), histories.n_items)
    return train, train.rows(chosen), histories.last()[chosen]


def _length_bucketed_batches(
    rows: IntArray, lengths: IntArray, batch_size: int, rng: np.random.Generator
) -> list[IntArray]:
    """Shuffled batches of ``rows``, each drawn from users of similar length (less padding)."""
    shuffled = rng.permutation(rows)
    batches: list[IntArray] = []
    window = batch_size * _BUCKET_BATCHES
    for start in range(0, len(shuffled), window):
        chunk = shuffled[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass(frozen=True)
class _NegativeSampler:
    """Draws the negatives a batch shares: uniformly without replacement, or by popularity.

    ``log_q[i]`` is the log of the expected number of draws of item ``i`` in one batch; the loss
    subtracts it from the logits (the "logQ" correction), which matters only for popularity.
    """

    n_negatives: int
    log_q: FloatArray
    cumulative: npt.NDArray[np.float64] | None  # None: uniform

    @classmethod
    def build(cls, kind: str, n_negatives: int, histories: Histories) -> _NegativeSampler:
        n_items = histories.n_items
        if kind == "uniform":
            n = min(n_negatives, n_items)
            return cls(n, np.full(n_items, np.log(n / n_items), dtype=np.float32), None)
        counts = np.bincount(histories.items, minlength=n_items) + 1.0
        q = counts / counts.sum()
        return cls(n_negatives, np.log(n_negatives * q).astype(np.float32), np.cumsum(q))

    @property
    def corrected(self) -> bool:
        return self.cumulative is not None

    def draw(self, rng: np.random.Generator) -> tuple[IntArray, FloatArray]:
        """Distinct negative tokens (item + 1) and the correction to subtract from their logits."""
        n_items = len(self.log_q)
        if self.cumulative is None:
            items = rng.choice(n_items, size=self.n_negatives, replace=False)
            return items + 1, np.zeros(len(items), dtype=np.float32)
        draws = np.searchsorted(self.cumulative, rng.random(self.n_negatives) * self.cumulative[-1])
        items, counts = np.unique(np.minimum(draws, n_items - 1), return_counts=True)
        # An item drawn c times stands for c samples: log(c) less correction.
        return items + 1, (self.log_q[items] - np.log(counts)).astype(np.float32)


def _copy_state(net: SASRecNet) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in net.state_dict().items()}
