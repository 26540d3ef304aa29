"""An on-disk cache of embeddings, so that re-training on the same catalog does not re-encode it.

Vectors are keyed by (namespace, sha256 of the content): the namespace names the encoder and its
width (``"minilm-384"``), the content is the text (or image bytes) that was encoded. Each write is
a new ``.npz`` shard (``digests`` as ``uint8 (n, 32)``, ``vectors`` as ``float32 (n, d)``; no
pickle) written to a temporary file and renamed into place, so concurrent writers never leave a
half-written shard and readers never see one. Many small shards are merged into one now and then.

The folder is, first match wins: the ``directory`` argument, ``$SHOPFUSION_CACHE``, or
``~/.cache/shopfusion/embeddings``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shopfusion.encoders.text import FloatArray, TextEncoder

logger = logging.getLogger(__name__)

ENV_VAR = "SHOPFUSION_CACHE"
DEFAULT_DIR = Path("~/.cache/shopfusion/embeddings")
#: Shards per namespace beyond which a write merges them into one.
MERGE_AT = 16

Digests = npt.NDArray[np.uint8]


def cache_dir(directory: Path | str | None = None) -> Path:
    """The cache folder: ``directory``, else ``$SHOPFUSION_CACHE``, else the default under ``~/.cache``."""
    chosen = directory if directory is not None else os.environ.get(ENV_VAR) or DEFAULT_DIR
    return Path(chosen).expanduser()


def digest(content: str | bytes) -> bytes:
    """sha256 of ``content`` (text is hashed as UTF-8)."""
    return hashlib.sha256(content.encode("utf-8") if isinstance(content, str) else content).digest()


class EmbeddingCache:
    """Embeddings by (namespace, content digest), persisted as npz shards under :func:`cache_dir`."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = cache_dir(directory)

    def _folder(self, namespace: str) -> Path:
        return self.directory / re.sub(r"[^A-Za-z0-9._-]", "_", namespace)

    def get(
        self, namespace: str, keys: Sequence[bytes], dim: int
    ) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        """``(found, vectors)``: ``vectors[i]`` is the cached vector of ``keys[i]`` where ``found[i]``."""
        found = np.zeros(len(keys), dtype=bool)
        vectors = np.zeros((len(keys), dim), dtype=np.float32)
        if not keys:
            return found, vectors
        wanted: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            wanted.setdefault(key, []).append(i)
        for shard_digests, shard_vectors in self._shards(namespace, dim):
            for row, key in enumerate(shard_digests):
                rows = wanted.pop(key.tobytes(), None)
                if rows is not None:
                    found[rows] = True
                    vectors[rows] = shard_vectors[row]
            if not wanted:
                break
        return found, vectors

    def put(self, namespace: str, keys: Sequence[bytes], vectors: FloatArray) -> None:
        """Store ``vectors[i]`` under ``keys[i]`` (one new shard), merging shards when there are many."""
        if not keys:
            return
        folder = self._folder(namespace)
        folder.mkdir(parents=True, exist_ok=True)
        self._write(folder, _as_digests(keys), np.asarray(vectors, dtype=np.float32))
        shards = sorted(folder.glob("*.npz"))
        if len(shards) > MERGE_AT:
            self._merge(folder, shards, vectors.shape[1])

    def _shards(self, namespace: str, dim: int) -> list[tuple[Digests, FloatArray]]:
        out = []
        for path in sorted(self._folder(namespace).glob("*.npz")):
            shard = _read(path)
            if shard is not None and shard[1].shape[1] == dim:
                out.append(shard)
        return out

    def _merge(self, folder: Path, shards: list[Path], dim: int) -> None:
        parts = [s for s in map(_read, shards) if s is not None and s[1].shape[1] == dim]
        if not parts:
            return
        keys = np.concatenate([d for d, _ in parts])
        vectors = np.concatenate([v for _, v in parts])
        _, first = np.unique(keys, axis=0, return_index=True)
        self._write(folder, keys[np.sort(first)], vectors[np.sort(first)])
        # Only now that the merged shard is in place may the parts go; a concurrent merge that
        # removes them first is harmless.
        for path in shards:
            path.unlink(missing_ok=True)

    @staticmethod
    def _write(folder: Path, keys: Digests, vectors: FloatArray) -> None:
        name = uuid.uuid4().hex
        tmp = folder / f".{name}.tmp"
        with tmp.open("wb") as file:
            np.savez(file, digests=keys, vectors=vectors)
        os.replace(tmp, folder / f"{name}.npz")


def _as_digests(keys: Sequence[bytes]) -> Digests:
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32).copy()


def _read(path: Path) -> tuple[Digests, FloatArray] | None:
    """A shard's arrays, or ``None`` when it vanished (merged away) or is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["digests"]), np.asarray(data["vectors"], dtype=np.float32)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("ignoring unreadable embedding cache shard %s (%s); delete it", path, exc)
        return None


def cached_encode(
    encoder: TextEncoder,
    texts: Sequence[str],
    cache: EmbeddingCache | None = None,
    batch_size: int = 64,
) -> FloatArray:
    """``encoder.encode(texts)`` through ``cache``: only texts not seen before are encoded.

    Blank texts get a zero row and never reach the encoder.
    """
    return cached_vectors(
        namespace=f"{encoder.name}-{encoder.dim}",
        dim=encoder.dim,
        keys=[digest(t) if t.strip() else None for t in texts],
        compute=lambda positions: encoder.encode([texts[i] for i in positions], batch_size=batch_size),
        cache=cache,
    )


def cached_vectors(
    namespace: str,
    dim: int,
    keys: Sequence[bytes | None],
    compute: Callable[[list[int]], FloatArray],
    cache: EmbeddingCache | None,
) -> FloatArray:
    """One row per key: from ``cache`` where present, else ``compute(positions)`` (then stored).

    A ``None`` key gives a zero row. Each distinct key is computed once, however often it occurs
    (duplicate titles are common): ``compute`` gets the position of its first occurrence.
    """
    out = np.zeros((len(keys), dim), dtype=np.float32)
    live = [i for i, k in enumerate(keys) if k is not None]
    live_keys = [k for k in keys if k is not None]
    found = np.zeros(len(live), dtype=bool)
    if cache is not None and live:
        found, hits = cache.get(namespace, live_keys, dim)
        out[[live[j] for j in np.flatnonzero(found)]] = hits[found]
    missing: dict[bytes, list[int]] = {}
    for j in np.flatnonzero(~found):
        missing.setdefault(live_keys[j], []).append(live[j])
    if missing:
        rows = list(missing.values())
        fresh = np.asarray(compute([r[0] for r in rows]), dtype=np.float32)
        for vector, targets in zip(fresh, rows, strict=True):
            out[targets] = vector
        if cache is not None:
            cache.put(namespace, list(missing), fresh)
    return out
