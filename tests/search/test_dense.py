"""The dense index's catalog product: float16 items through fbgemm, or numpy's float32 product."""

from __future__ import annotations

import numpy as np
import pytest

from shopfusion.search.index import DenseIndex, HalfProduct


def _unit_rows(rng: np.random.Generator, n: int, dim: int = 64) -> np.ndarray:
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("n_queries", [1, 2, 5])
def test_similarities_are_each_querys_cosines_with_every_item(n_queries: int) -> None:
    rng = np.random.default_rng(n_queries)
    items, queries = _unit_rows(rng, 3000), _unit_rows(rng, n_queries)
    index = DenseIndex(("use-multilingual",), {"use-multilingual": items})
    got = index.similarities({"use-multilingual": queries})["use-multilingual"]
    assert got.shape == (n_queries, 3000) and got.dtype == np.float32 and got.flags.c_contiguous
    # float16 items: each cosine within ~1e-4 of the float32 one, and the best items the same
    np.testing.assert_allclose(got, queries @ items.T, atol=2e-4)
    for row, exact in zip(got, queries @ items.T, strict=True):
        assert set(np.argsort(-row)[:20]) == set(np.argsort(-exact)[:20])


def test_without_fbgemm_the_product_is_numpys_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HalfProduct, "of", classmethod(lambda cls, items: None))
    rng = np.random.default_rng(0)
    items, queries = _unit_rows(rng, 500), _unit_rows(rng, 3)
    index = DenseIndex(("use-multilingual",), {"use-multilingual": items})
    got = index.similarities({"use-multilingual": queries})["use-multilingual"]
    np.testing.assert_allclose(got, queries @ items.T, rtol=1e-6, atol=1e-6)
    alone = index.similarities({"use-multilingual": queries[:1]})["use-multilingual"]
    assert np.array_equal(alone[0], items @ queries[0])  # one query: numpy's matrix-vector product


def test_half_product_is_used_where_pytorch_has_fbgemm() -> None:
    torch = pytest.importorskip("torch")
    product = HalfProduct.of(_unit_rows(np.random.default_rng(1), 10))
    assert (product is not None) == ("fbgemm" in torch.backends.quantized.supported_engines)
