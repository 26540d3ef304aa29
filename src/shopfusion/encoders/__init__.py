"""Pretrained encoders that load offline from PyPI packages, and an on-disk embedding cache.

Importing this package is cheap: models (and torch) load on first use.
"""

from shopfusion.encoders.cache import EmbeddingCache, cache_dir, cached_encode
from shopfusion.encoders.image import EfficientNetLite0Encoder, image_embeddings, image_encoder
from shopfusion.encoders.text import (
    TEXT_ENCODERS,
    MiniLMEncoder,
    MultilingualEncoder,
    TextEncoder,
    item_text,
    item_texts,
    text_encoder,
)

__all__ = [
    "TEXT_ENCODERS",
    "EfficientNetLite0Encoder",
    "EmbeddingCache",
    "MiniLMEncoder",
    "MultilingualEncoder",
    "TextEncoder",
    "cache_dir",
    "cached_encode",
    "image_embeddings",
    "image_encoder",
    "item_text",
    "item_texts",
    "text_encoder",
]
