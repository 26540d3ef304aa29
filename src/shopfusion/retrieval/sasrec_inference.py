"""SASRec's forward pass for scoring, in numpy: the same arithmetic as
:class:`~shopfusion.retrieval._torch_utils.SASRecNet` in eval mode (tests compare the two).

Serving scores a handful of short histories at a time, and there PyTorch's per-operator overhead
was most of the cost: a lone request's forward took 1.6 ms through torch and 0.7 ms here
(RESULTS.md, session 7). Training stays in PyTorch; every score, offline and online, comes from
this one path. Only the last position's hidden state is needed, so the last block computes
attention and feed-forward for that position alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import erf

from shopfusion.data.interactions import FloatArray, Histories, IntArray

_LAYER_NORM_EPS = np.float32(1e-5)  # torch.nn.LayerNorm's default


def _layer_norm(x: FloatArray, weight: FloatArray, bias: FloatArray) -> FloatArray:
    # np.mean's own steps (a float32 sum, then a division by the count) without its Python-level
    # wrapper: a lone request's SASRec scoring 0.55 -> 0.50 ms (RESULTS.md, session 18). The
    # float32 quotient is the one mean's float64 division rounds to, so results keep every bit.
    count = np.float32(x.shape[-1])
    total: FloatArray = np.add.reduce(x, axis=-1, keepdims=True)
    centred = x - total / count
    squares: FloatArray = np.add.reduce(centred * centred, axis=-1, keepdims=True)
    variance = squares / count
    out: FloatArray = centred / np.sqrt(variance + _LAYER_NORM_EPS) * weight + bias
    return out


def _gelu(x: FloatArray) -> FloatArray:
    """The exact (erf) GELU, torch's default."""
    out: FloatArray = np.float32(0.5) * x * (np.float32(1.0) + erf(x * np.float32(2**-0.5)))
    return out


def pad_left(histories: Histories, max_len: int, width: int | None = None) -> IntArray:
    """The last ``max_len`` items of each row as tokens ``item + 1``, left-padded with ``0``.

    ``width`` defaults to the longest (clipped) row, at least 1, so an empty row is all padding.
    """
    lengths = np.minimum(histories.lengths(), max_len)
    width = width if width is not None else max(1, int(lengths.max(initial=0)))
    lengths = np.minimum(lengths, width)
    tokens = np.zeros((len(histories), width), dtype=np.int64)
    rows = np.repeat(np.arange(len(histories)), lengths)
    # Column of each kept item counted from the right edge: 1 for the last item of a row.
    offset_from_end = np.repeat(np.cumsum(lengths), lengths) - np.arange(int(lengths.sum()))
    source = np.repeat(histories.indptr[1:], lengths) - offset_from_end
    tokens[rows, width - offset_from_end] = histories.items[source] + 1
    return tokens


@dataclass(frozen=True)
class SASRecWeights:
    """The trained parameters as float32 arrays, named as in the torch state dict."""

    arrays: Mapping[str, FloatArray]
    n_blocks: int
    n_heads: int
    max_len: int

    @classmethod
    def of(cls, state: Mapping[str, npt.NDArray[np.floating]], n_heads: int, max_len: int) -> SASRecWeights:
        arrays = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in state.items()}
        n_blocks = len({name.split(".")[1] for name in arrays if name.startswith("blocks.")})
        # The output layer, laid out once for the product: a slice of the embedding cost a lone
        # request's logits twice their time.
        arrays["item_vectors.T"] = np.ascontiguousarray(arrays["item_embedding.weight"][1:].T)
        return cls(arrays, n_blocks, n_heads, max_len)

    def _linear(self, x: FloatArray, name: str) -> FloatArray:
        out: FloatArray = x @ self.arrays[f"{name}.weight"].T + self.arrays[f"{name}.bias"]
        return out

    def _norm(self, x: FloatArray, name: str) -> FloatArray:
        return _layer_norm(x, self.arrays[f"{name}.weight"], self.arrays[f"{name}.bias"])

    def last_hidden(self, tokens: IntArray) -> FloatArray:
        """The final hidden state at the last position of left-padded ``tokens`` ``(batch, width)``."""
        width = tokens.shape[1]
        embedding = self.arrays["item_embedding.weight"]
        hidden = embedding.shape[1]
        positions = self.arrays["position_embedding.weight"][self.max_len - width : self.max_len]
        x = embedding[tokens] * np.float32(np.sqrt(hidden)) + positions
        # The future, and padding keys (a padding query may still attend to itself).
        forbidden = np.triu(np.ones((width, width), dtype=bool), 1) | (
            (tokens == 0)[:, None, :] & ~np.eye(width, dtype=bool)
        )
        for block in range(self.n_blocks):
            last_only = block == self.n_blocks - 1
            x = self._block(x, forbidden[:, -1:] if last_only else forbidden, f"blocks.{block}", last_only)
        return self._norm(x[:, -1], "final_norm")

    def _block(
        self, x: FloatArray, forbidden: npt.NDArray[np.bool_], name: str, last_only: bool
    ) -> FloatArray:
        """Pre-norm block; with ``last_only`` only the last position's output is computed."""
        batch, width, hidden = x.shape
        heads, head = self.n_heads, hidden // self.n_heads
        qkv = self._linear(self._norm(x, f"{name}.attention_norm"), f"{name}.qkv")
        qkv = qkv.reshape(batch, width, 3, heads, head).transpose(2, 0, 3, 1, 4)  # (3, b, h, w, d)
        query, key, value = qkv[0], qkv[1], qkv[2]
        if last_only:
            query, x = query[:, :, -1:], x[:, -1:]
        weights = (query @ key.transpose(0, 1, 3, 2)) * np.float32(head**-0.5)
        weights = np.where(forbidden[:, None], np.float32(-np.inf), weights)
        weights = np.exp(weights - weights.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        queries = weights.shape[2]
        attended = (weights @ value).transpose(0, 2, 1, 3).reshape(batch, queries, hidden)
        x = x + self._linear(attended, f"{name}.attention_out")
        inner = _gelu(self._linear(self._norm(x, f"{name}.feed_forward_norm"), f"{name}.feed_forward_in"))
        out: FloatArray = x + self._linear(inner, f"{name}.feed_forward_out")
        return out

    def scores(self, tokens: IntArray) -> FloatArray:
        """Every item's score (the output layer is tied to the item embedding)."""
        out: FloatArray = self.last_hidden(tokens) @ self.arrays["item_vectors.T"]
        return out
