"""Training losses over candidate groups, shared by the neural fusion heads (needs PyTorch)."""

from __future__ import annotations

from typing import Any


def listwise_softmax_loss(scores: Any, positive: Any, group: Any, n_groups: int) -> Any:
    """Mean ``-log P(positive | its group's candidates)`` under a softmax over each group.

    ``scores``: float tensor (m,); ``positive``: bool tensor (m,), one per group that has one;
    ``group``: long tensor (m,) of group ids. Stabilised by each group's maximum.
    """
    import torch

    top = torch.zeros(n_groups).scatter_reduce(0, group, scores.detach(), reduce="amax", include_self=False)
    log_norm = torch.log(torch.zeros(n_groups).index_add(0, group, torch.exp(scores - top[group]))) + top
    return (log_norm[group[positive]] - scores[positive]).mean()
