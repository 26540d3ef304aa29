"""PyTorch pieces of the neural candidate sources, imported only when such a model is used.

Keeping ``torch`` out of :mod:`shopfusion.retrieval`'s import path lets the command line and
the non-neural models work (and start fast) where PyTorch is not installed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional


@contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    """Run with ``n_threads`` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class FastDropout(nn.Module):
    """Inverted dropout whose mask is drawn from a numpy generator.

    On CPU, torch's Bernoulli sampling dominated a SASRec training step (~25% of its time);
    random bytes from numpy are ~5x cheaper. ``p`` is rounded to a multiple of 1/256. Without a
    generator (see :meth:`SASRecNet.set_dropout_rng`) it falls back to :func:`torch.nn.functional.dropout`.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = round(p * 256)
        self.rng: np.random.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        if self.rng is None:
            return functional.dropout(x, self.p, training=True)
        random_bytes = np.frombuffer(self.rng.bytes(x.numel()), dtype=np.uint8).reshape(x.shape)
        keep = (random_bytes >= self.threshold).astype(np.float32)
        keep *= 256.0 / (256 - self.threshold)
        return x * torch.from_numpy(keep)


class CausalSelfAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + ffn(norm(x))``.

    Written out instead of :class:`torch.nn.TransformerEncoderLayer` so that every dropout is a
    :class:`FastDropout` (histories are short, so plain attention costs little).
    """

    def __init__(self, hidden_size: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attention_out = nn.Linear(hidden_size, hidden_size)
        self.feed_forward_norm = nn.LayerNorm(hidden_size)
        self.feed_forward_in = nn.Linear(hidden_size, hidden_size)
        self.feed_forward_out = nn.Linear(hidden_size, hidden_size)
        self.attention_dropout = FastDropout(dropout)
        self.residual_dropout = FastDropout(dropout)
        self.feed_forward_dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor, forbidden: torch.Tensor) -> torch.Tensor:
        batch, width, hidden = x.shape
        head = hidden // self.n_heads
        qkv = self.qkv(self.attention_norm(x)).view(batch, width, 3, self.n_heads, head)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, width, head)
        weights = (query @ key.transpose(-1, -2)) * head**-0.5
        weights = torch.softmax(weights.masked_fill(forbidden[:, None], -torch.inf), dim=-1)
        attended = (self.attention_dropout(weights) @ value).transpose(1, 2).reshape(batch, width, hidden)
        x = x + self.residual_dropout(self.attention_out(attended))
        inner = self.feed_forward_dropout(functional.gelu(self.feed_forward_in(self.feed_forward_norm(x))))
        out: torch.Tensor = x + self.residual_dropout(self.feed_forward_out(inner))
        return out


class SASRecNet(nn.Module):
    """Self-attentive sequential recommender (Kang & McAuley 2018) with pre-norm blocks.

    Token ``0`` is padding, item ``i`` is token ``i + 1``. Positions are learned and counted so
    that the last slot of a ``max_len`` window is always the same position, whatever the width
    of the batch. The output layer is tied to the item embedding.
    """

    def __init__(
        self, n_items: int, hidden_size: int, n_blocks: int, n_heads: int, max_len: int, dropout: float
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.item_embedding = nn.Embedding(n_items + 1, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, hidden_size)
        self.embedding_dropout = FastDropout(dropout)
        self.blocks = nn.ModuleList(
            CausalSelfAttentionBlock(hidden_size, n_heads, dropout) for _ in range(n_blocks)
        )
        self.final_norm = nn.LayerNorm(hidden_size)
        nn.init.normal_(self.item_embedding.weight, std=hidden_size**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def set_dropout_rng(self, rng: np.random.Generator | None) -> None:
        """Draw every dropout mask from ``rng`` (training is then reproducible from its seed)."""
        for module in self.modules():
            if isinstance(module, FastDropout):
                module.rng = rng

    def item_vectors(self) -> torch.Tensor:
        """Output embeddings of the real items, ``(n_items, hidden_size)``."""
        return self.item_embedding.weight[1:]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden state of every position of left-padded ``tokens`` ``(batch, width)``."""
        width = tokens.shape[1]
        positions = torch.arange(self.max_len - width, self.max_len, device=tokens.device)
        scale = math.sqrt(self.item_embedding.embedding_dim)
        x = self.embedding_dropout(self.item_embedding(tokens) * scale + self.position_embedding(positions))
        forbidden = self._attention_mask(tokens)
        for block in self.blocks:
            x = block(x, forbidden)
        out: torch.Tensor = self.final_norm(x)
        return out

    @staticmethod
    def _attention_mask(tokens: torch.Tensor) -> torch.Tensor:
        """``True`` where attention is forbidden: the future, and padding keys; ``(batch, width, width)``.

        A padding query may attend to itself, so no row of the mask is all ``True`` (which would
        give NaN that leaks through later blocks); its output is never used.
        """
        width = tokens.shape[1]
        future = torch.ones(width, width, dtype=torch.bool, device=tokens.device).triu(1)
        not_self = ~torch.eye(width, dtype=torch.bool, device=tokens.device)
        return future | ((tokens == 0)[:, None, :] & not_self)


def state_arrays(module: nn.Module) -> dict[str, npt.NDArray[np.float32]]:
    """The state dict as named float32 arrays (what artifacts store, instead of a pickle)."""
    return {
        name: value.detach().cpu().numpy().astype(np.float32, copy=True)
        for name, value in module.state_dict().items()
    }


def load_state_arrays(module: nn.Module, arrays: Mapping[str, npt.NDArray[Any]], prefix: str = "") -> None:
    """Load what :func:`state_arrays` gave (stored under ``prefix``); every tensor must be there."""
    state = {
        name[len(prefix) :]: torch.from_numpy(np.array(arrays[name], dtype=np.float32))
        for name in arrays
        if name.startswith(prefix)
    }
    module.load_state_dict(state, strict=True)
