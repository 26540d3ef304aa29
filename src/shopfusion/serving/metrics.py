"""Prometheus metrics of one app (its own registry, so several apps in one process — tests —
never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Up to 2.5 s, dense around the 20/50 ms latency targets.
_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "shopfusion_request_seconds",
            "Request latency by route",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "shopfusion_requests", "Requests by route and status code", ["route", "status"], registry=r
        )
        self.errors = Counter(
            "shopfusion_errors", "Server errors (5xx, not 503 shedding) by route", ["route"], registry=r
        )
        self.rejected = Counter(
            "shopfusion_rejected",
            "Requests refused before work: rate limit, overload, too large",
            ["reason"],
            registry=r,
        )
        self.in_flight = Gauge("shopfusion_in_flight", "Requests being served now", registry=r)
        self.model_info = Gauge(
            "shopfusion_model_info", "The artifact being served (value 1)", ["version"], registry=r
        )
        self.reload_failures = Gauge(
            "shopfusion_reload_failures", "Refused artifact reloads since start", registry=r
        )
        self.event_lag = Gauge(
            "shopfusion_event_lag_seconds",
            "Age of the newest event of the last batch when it was stored",
            registry=r,
        )
        self.events = Gauge("shopfusion_events_received", "Events stored since start", registry=r)
        self.cache_hits = Gauge("shopfusion_cache_hits", "Response cache hits since start", registry=r)
        self.cache_misses = Gauge("shopfusion_cache_misses", "Response cache misses since start", registry=r)
        self.cache_hit_rate = Gauge(
            "shopfusion_cache_hit_rate", "Response cache hit rate since start", registry=r
        )

        self.query_vector_hit_rate = Gauge(
            "shopfusion_query_vector_hit_rate",
            "Share of search queries whose vectors came from the query-vector cache, since start",
            registry=r,
        )
        self.precomputed = Gauge(
            "shopfusion_precomputed_lists",
            "Lists cached by the start-up precomputation (WARM_USERS, WARM_ITEMS) so far",
            registry=r,
        )
        self.shed_probability = Gauge(
            "shopfusion_shed_probability",
            "Share of new requests refused now, by queue (loop: all requests, model: cache misses)",
            ["queue"],
            registry=r,
        )

    def set_model(self, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)

    def bind(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Read ``gauge`` from ``read`` at every scrape (no bookkeeping on the request path)."""
        gauge.set_function(read)
