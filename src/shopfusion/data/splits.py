"""Train / validation / test splits that never leak a target into training.

* :func:`leave_one_out` — the S3-Rec protocol: per user, the last item is the test
  target, the second-last the validation target. Validation trains on everything
  before the validation target; test trains on everything before the test target
  (the validation item included: it is no longer a target then).
* :func:`temporal_split` — one global time cut for validation and one for test;
  targets are the items a user met after the cut that are not in their history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopfusion.data.interactions import Histories, IntArray, Interactions
from shopfusion.errors import DataError


@dataclass(frozen=True)
class EvalTask:
    """``train`` is what models fit on; row ``i`` of ``requests`` asks for a ranking that
    row ``i`` of ``targets`` answers."""

    train: Histories
    requests: Histories
    targets: Histories

    def __post_init__(self) -> None:
        if len(self.requests) != len(self.targets):
            raise DataError("EvalTask: requests and targets must have the same number of rows")


@dataclass(frozen=True)
class Split:
    protocol: str
    validation: EvalTask
    test: EvalTask


def leave_one_out(histories: Histories, min_length: int = 3) -> Split:
    """S3-Rec leave-one-out. Users shorter than ``min_length`` are only trained on, never evaluated."""
    lengths = histories.lengths()
    evaluated = np.flatnonzero(lengths >= min_length)
    if len(evaluated) == 0:
        raise DataError(f"leave-one-out needs users with at least {min_length} events; none has that many")
    short = lengths < min_length

    def task(n_held_out: int) -> EvalTask:
        cut = histories.drop_last(n_held_out)
        train = _replace_rows(cut, histories, short)
        requests = cut.rows(evaluated)
        targets = _single_targets(histories.last(n_held_out)[evaluated], histories)
        return EvalTask(train=train, requests=requests, targets=targets)

    return Split("s3rec-loo", validation=task(2), test=task(1))


def temporal_split(
    interactions: Interactions, validation_fraction: float = 0.1, test_fraction: float = 0.1
) -> Split:
    """Cut the event log at two global times (by quantile of timestamps)."""
    if (
        not 0 < validation_fraction < 1
        or not 0 < test_fraction < 1
        or validation_fraction + test_fraction >= 1
    ):
        raise DataError("temporal_split: fractions must be in (0, 1) and sum to less than 1")
    t_val, t_test = np.quantile(
        interactions.timestamp, [1 - validation_fraction - test_fraction, 1 - test_fraction]
    )
    return Split(
        "temporal",
        validation=_temporal_task(interactions, t_val, t_test),
        test=_temporal_task(interactions, t_test, np.inf),
    )


def _temporal_task(interactions: Interactions, cut: float, end: float) -> EvalTask:
    before = interactions.subset(interactions.timestamp < cut).histories()
    window = interactions.subset((interactions.timestamp >= cut) & (interactions.timestamp < end)).histories()
    rows: list[int] = []
    targets: list[IntArray] = []
    for user in range(len(before)):
        history = before.row(user)
        if len(history) == 0:
            continue
        fresh = np.setdiff1d(np.unique(window.row(user)), history)
        if len(fresh):
            rows.append(user)
            targets.append(fresh)
    if not rows:
        raise DataError("temporal split: no user has events on both sides of the cut; use leave-one-out")
    return EvalTask(
        train=before,
        requests=before.rows(rows),
        targets=Histories.from_lists(targets, interactions.n_items, rows),
    )


def _single_targets(items: IntArray, like: Histories) -> Histories:
    indptr = np.arange(len(items) + 1, dtype=np.int64)
    return Histories(indptr, items.astype(np.int64), np.arange(len(items), dtype=np.int64), like.n_items)


def _replace_rows(cut: Histories, full: Histories, take_full: np.ndarray) -> Histories:
    """``cut`` with the rows flagged in ``take_full`` replaced by their ``full`` version."""
    if not take_full.any():
        return cut
    source = [full if take_full[i] else cut for i in range(len(full))]
    rows = [h.row(i) for i, h in enumerate(source)]
    kinds = (
        None if full.kinds is None or cut.kinds is None else [h.row_kinds(i) for i, h in enumerate(source)]
    )
    return Histories.from_lists(rows, full.n_items, full.users, kinds)
