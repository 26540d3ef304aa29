"""The dense index's catalog product: int8 items through fbgemm (approximate, rescored exactly where
it matters), or numpy's float32 product."""

from __future__ import annotations

import numpy as np
import pytest

from shopfusion.search.index import DenseIndex, Int8Product


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
    exact = queries @ items.T
    if Int8Product.of(items) is not None:  # int8 items: each cosine within a few thousandths
        assert np.abs(got - exact).max() < 1e-2 and not np.array_equal(got, exact)
    else:
        np.testing.assert_allclose(got, exact, rtol=1e-6, atol=1e-6)
    for row, truth in zip(got, exact, strict=True):  # the best items survive the approximation
        assert set(np.argsort(-truth)[:10]) <= set(np.argsort(-row)[:40])


def test_cosines_are_exact_float32_for_any_rows() -> None:
    rng = np.random.default_rng(7)
    items, query = _unit_rows(rng, 400), _unit_rows(rng, 1)[0]
    index = DenseIndex(("use-multilingual",), {"use-multilingual": items})
    rows = np.array([399, 0, 17, 17], dtype=np.int64)
    assert np.array_equal(index.cosines("use-multilingual", query, rows), items[rows] @ query)
    assert np.array_equal(index.cosines("use-multilingual", query), items @ query)


def test_without_fbgemm_the_product_is_numpys_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Int8Product, "of", classmethod(lambda cls, items: None))
    rng = np.random.default_rng(0)
    items, queries = _unit_rows(rng, 500), _unit_rows(rng, 3)
    index = DenseIndex(("use-multilingual",), {"use-multilingual": items})
    got = index.similarities({"use-multilingual": queries})["use-multilingual"]
    np.testing.assert_allclose(got, queries @ items.T, rtol=1e-6, atol=1e-6)
    alone = index.similarities({"use-multilingual": queries[:1]})["use-multilingual"]
    assert np.array_equal(alone[0], items @ queries[0])  # one query: numpy's matrix-vector product


def test_int8_product_is_used_where_pytorch_has_fbgemm() -> None:
    torch = pytest.importorskip("torch")
    product = Int8Product.of(_unit_rows(np.random.default_rng(1), 10))
    assert (product is not None) == ("fbgemm" in torch.backends.quantized.supported_engines)
