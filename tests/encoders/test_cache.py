"""The embedding cache: hits skip the encoder, shards are plain npz, writers never clash."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from shopfusion.encoders import cache as cache_module
from shopfusion.encoders.cache import EmbeddingCache, cache_dir, cached_encode, digest


class CountingEncoder:
    """A deterministic stand-in that records what it was asked to encode."""

    name = "counting"
    dim = 4

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.seen.extend(texts)
        rows = np.array([[len(t), t.count("a"), t.count("e"), 1.0] for t in texts], dtype=np.float32)
        return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def test_second_encode_is_served_from_disk(tmp_path: Path) -> None:
    texts = ["red lipstick", "smart tv", "red lipstick", "", "shoes"]
    first_encoder = CountingEncoder()
    first = cached_encode(first_encoder, texts, EmbeddingCache(tmp_path))
    assert first_encoder.seen == ["red lipstick", "smart tv", "shoes"]  # duplicates and blanks skipped
    assert np.all(first[3] == 0) and np.all(np.isfinite(first))

    again = CountingEncoder()  # a new process, say: only the disk is shared
    second = cached_encode(again, [*texts, "new item"], EmbeddingCache(tmp_path))
    assert again.seen == ["new item"]
    np.testing.assert_array_equal(second[:5], first)


def test_without_a_cache_everything_is_encoded() -> None:
    encoder = CountingEncoder()
    cached_encode(encoder, ["a", "b"], None)
    cached_encode(encoder, ["a", "b"], None)
    assert encoder.seen == ["a", "b", "a", "b"]


def test_shards_are_npz_without_pickle_and_namespaced(tmp_path: Path) -> None:
    cached_encode(CountingEncoder(), ["x", "y"], EmbeddingCache(tmp_path))
    (shard,) = (tmp_path / "counting-4").glob("*.npz")
    with np.load(shard, allow_pickle=False) as data:
        assert data["digests"].shape == (2, 32) and data["vectors"].shape == (2, 4)
    assert not list(tmp_path.rglob("*.tmp"))


def test_many_writes_merge_into_one_shard_without_losing_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "MERGE_AT", 3)
    cache = EmbeddingCache(tmp_path)
    for i in range(5):
        cache.put("ns", [digest(f"t{i}")], np.full((1, 2), i, dtype=np.float32))
    assert len(list((tmp_path / "ns").glob("*.npz"))) <= 3
    found, vectors = cache.get("ns", [digest(f"t{i}") for i in range(5)], dim=2)
    assert found.all()
    np.testing.assert_array_equal(vectors[:, 0], np.arange(5))


def test_unreadable_shard_is_ignored(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put("ns", [digest("a")], np.ones((1, 2), dtype=np.float32))
    (tmp_path / "ns" / "broken.npz").write_bytes(b"not a zip")
    found, _ = cache.get("ns", [digest("a"), digest("b")], dim=2)
    assert found.tolist() == [True, False]


def test_folder_comes_from_argument_then_environment_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFUSION_CACHE", str(tmp_path / "env"))
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv("SHOPFUSION_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "shopfusion" / "embeddings"
