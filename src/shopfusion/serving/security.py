"""API keys (only their SHA-256 is kept), per-key rate limits and pseudonymous user ids.

Keys are compared by hash with :func:`hmac.compare_digest`, so neither the settings nor a memory
dump reveals them and the comparison leaks no timing. User ids are replaced by a keyed hash
(HMAC-SHA256) before they reach storage or logs: the same shopper always maps to the same
pseudonym, yet the pseudonym cannot be turned back into the id without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from enum import StrEnum


class Role(StrEnum):
    READ = "read"
    INGEST = "ingest"
    ADMIN = "admin"


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which an API key is configured."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Which roles each configured key hash grants. Admin keys may do everything; ingest keys
    may also read."""

    def __init__(self, read: list[str], ingest: list[str], admin: list[str]) -> None:
        self._roles: dict[str, set[Role]] = {}
        for digest in read:
            self._roles.setdefault(digest, set()).add(Role.READ)
        for digest in ingest:
            self._roles.setdefault(digest, set()).update({Role.READ, Role.INGEST})
        for digest in admin:
            self._roles.setdefault(digest, set()).update(Role)

    def roles(self, key: str | None) -> set[Role]:
        if not key:
            return set()
        digest = hash_key(key)
        for known, roles in self._roles.items():
            if hmac.compare_digest(known, digest):
                return roles
        return set()


class Pseudonymizer:
    """Keyed hash of user ids; a random secret (ids stable only for this process) when none is set."""

    def __init__(self, secret: str) -> None:
        self._secret = (secret or secrets.token_hex(32)).encode()

    def __call__(self, user_id: str) -> str:
        return "u_" + hmac.new(self._secret, user_id.encode(), hashlib.sha256).hexdigest()[:32]


class RateLimiter:
    """A token bucket per client (API key hash or address): ``rate`` per second, ``burst`` at once.

    Buckets of the least recently seen clients are forgotten beyond ``max_clients`` so that a flood
    of distinct addresses cannot grow memory without bound.
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate, self.burst, self.max_clients = rate, float(burst), max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> tuple[bool, float]:
        """Whether ``client`` may make a request now, and else after how many seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return allowed, 0.0 if allowed else (1.0 - tokens) / self.rate
