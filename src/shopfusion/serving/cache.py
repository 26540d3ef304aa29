"""An in-process LRU for hot responses, with hit/miss counts and generation-based invalidation.

Keys carry the model generation, so swapping in a new artifact invalidates every entry at once
without a scan; a user's new event drops that user's entries (see :meth:`LRUCache.drop_user`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._by_user: dict[str, set[Hashable]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` is cached (a peek: no hit or miss counted, recency unchanged)."""
        return key in self._data

    def get(self, key: Hashable, count_miss: bool = True) -> V | None:
        """The value under ``key`` (now the most recent), or ``None``; ``count_miss=False`` for a
        look that will be repeated on a miss (the repeat counts it)."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += count_miss
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: V, user: str | None = None) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            if user is not None:
                self._by_user.setdefault(user, set()).add(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def drop_user(self, user: str) -> list[Hashable]:
        """Forget every entry computed for ``user`` (their history just changed); returns the keys
        that were still cached."""
        with self._lock:
            keys = self._by_user.pop(user, set())
            return [key for key in keys if self._data.pop(key, None) is not None]

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._by_user.clear()
