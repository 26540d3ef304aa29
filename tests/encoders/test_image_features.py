"""EfficientNet-Lite0 features of images the tests draw themselves."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from content_support import draw_item

from shopfusion.encoders.cache import EmbeddingCache
from shopfusion.encoders.image import EfficientNetLite0Encoder, image_embeddings, image_encoder
from shopfusion.errors import ConfigError

RED, BLUE = (210, 25, 30), (25, 45, 210)


def test_red_finds_red_and_broken_inputs_get_zero_vectors(tmp_path: Path) -> None:
    paths = [
        draw_item(tmp_path / "red-big.png", RED, "square", 130, 15),
        draw_item(tmp_path / "blue-big.png", BLUE, "square", 130, 15),
        draw_item(tmp_path / "red-small.png", RED, "square", 110, 25),
        draw_item(tmp_path / "blue-small.png", BLUE, "square", 110, 25),
    ]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    values = [*map(str, paths), "", "https://shop.example/a.jpg", str(tmp_path / "gone.png"), "broken.jpg"]
    vectors, missing = image_embeddings(values, root=tmp_path, cache=EmbeddingCache(tmp_path / "cache"))
    assert vectors.shape == (8, 1280) and vectors.dtype == np.float32
    assert missing == 4 and np.all(vectors[4:] == 0)
    np.testing.assert_allclose(np.linalg.norm(vectors[:4], axis=1), 1.0, atol=1e-5)
    sims = vectors[:4] @ vectors[:4].T
    # Each square's nearest neighbour is the other square of its colour, not the one of its size.
    np.fill_diagonal(sims, -1)
    assert sims.argmax(axis=1).tolist() == [2, 3, 0, 1]

    cached, _ = image_embeddings(
        values, encoder=_Refusing(), root=tmp_path, cache=EmbeddingCache(tmp_path / "cache")
    )
    np.testing.assert_array_equal(cached, vectors)


class _Refusing(EfficientNetLite0Encoder):
    """Fails if asked to encode anything: proves the second pass came from the cache."""

    def encode_bytes(self, blobs: object, batch_size: int = 32) -> np.ndarray:
        raise AssertionError("cache miss")


def test_transparent_pixels_count_as_white() -> None:
    from PIL import Image

    encoder = image_encoder()
    clear = encoder.pixels(Image.new("RGBA", (30, 30), (0, 0, 0, 0)))
    assert clear.shape == (3, 224, 224) and np.allclose(clear, 1.0)


def test_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    from PIL import Image

    with pytest.raises(ConfigError, match="pip install efficientnet-lite-pytorch"):
        EfficientNetLite0Encoder().encode([Image.new("RGB", (8, 8))])
