"""The app factory: ``create_app(settings)`` wires settings, the service, middleware and routes.

The model is loaded in the lifespan (not at import), so importing the app is cheap, readiness
turns green only once the artifact loaded, and tests can build as many apps as they like.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from shopfusion import __version__
from shopfusion.errors import ShopfusionError
from shopfusion.retrieval.blas import pinned_to_one_blas_thread
from shopfusion.search.index import query_vectors
from shopfusion.serving.admission import DelayShedder
from shopfusion.serving.batcher import MicroBatcher
from shopfusion.serving.fastpath import CachedListMiddleware, PlainLists
from shopfusion.serving.gate import ModelGate
from shopfusion.serving.guard import GuardMiddleware, LoopLag
from shopfusion.serving.metrics import Metrics
from shopfusion.serving.model import SearcherLoader, load_searcher
from shopfusion.serving.routes import admin, events, health, pages, recommend, search
from shopfusion.serving.security import KeyRing, RateLimiter, hash_key
from shopfusion.serving.service import FeedRequest, NotReadyError, Ranked, SearchCall, Service
from shopfusion.serving.settings import ServiceSettings

log = logging.getLogger(__name__)


def _telemetry(settings: ServiceSettings) -> dict[str, Any]:
    """FastAPI's native OpenTelemetry (FastAPI >= 0.16x) off unless asked for: the service exports
    its own Prometheus metrics, and the per-request check whether a global OpenTelemetry provider
    is configured took ~5% of the event loop's time under load (RESULTS.md, session 6)."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    on = settings.opentelemetry
    return {"telemetry": {"tracing": on, "metrics": on, "logs": on}}


def create_app(settings: ServiceSettings, searcher_loader: SearcherLoader = load_searcher) -> FastAPI:
    """``searcher_loader`` opens ``ARTIFACT/search``; tests pass a fake one."""
    service = Service(settings, searcher_loader)
    metrics = Metrics()
    loop_lag = LoopLag(DelayShedder(settings.loop_delay_target_ms / 1000))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(service.start)
        # BLAS on one thread while serving (see pinned_to_one_blas_thread); pinned after the start,
        # so the libraries the model brings are loaded and limited too.
        with pinned_to_one_blas_thread():
            metrics.set_model(service.model.version)
            warming = None
            if settings.warm_users or settings.warm_items:
                # Not awaited: the service is ready at once and serves while the cache fills.
                warming = asyncio.create_task(
                    asyncio.to_thread(
                        service.warm,
                        service.model,
                        settings.warm_users,
                        settings.warm_items,
                        busy=lambda: gate.pending > 0 or search_gate.pending > 0,
                    )
                )
            background = [asyncio.create_task(loop_lag.run())] if loop_lag.shedder.enabled else []
            if settings.reload_poll_s > 0:
                background.append(asyncio.create_task(_poll(service, metrics)))
            if settings.event_sync_s > 0:
                background.append(asyncio.create_task(_sync(service)))
            try:
                yield
            finally:
                if warming is not None:
                    service.stopping = True
                    await warming
                for task in background:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                service.close()

    app = FastAPI(
        title="shopfusion",
        version=__version__,
        summary="Product search, recommendations and explanations for an online shop.",
        lifespan=lifespan,
        **_telemetry(settings),
    )
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics
    app.state.gate = gate = ModelGate(
        settings.model_workers,
        settings.max_model_queue,
        metrics,
        DelayShedder(settings.model_delay_target_ms / 1000),
    )
    # No delay shedder for searches: the wait budget bounds their queue from its length, while one
    # late start (a collection, another tenant) moved the shedder's drop probability by up to 0.4
    # and refused searches at the target rate (RESULTS.md, session 5).
    app.state.search_gate = search_gate = ModelGate(
        settings.search_workers,
        settings.max_model_queue,
        metrics,
        wait_budget_s=settings.search_wait_budget_ms / 1000,
        overload_budget_s=settings.search_overload_budget_ms / 1000,
    )
    # Searches are batched the same way: a search that arrives while one runs waits for the thread
    # with the others that arrive meanwhile, and they run as one engine call (the query encoder
    # and the dense product cost about as much for a few queries as for one).
    app.state.search_batcher = MicroBatcher[SearchCall, Ranked](
        service.search_batch, search_gate, 0.0, settings.max_search_batch, settings.search_workers
    )
    app.state.batcher = batcher = MicroBatcher[FeedRequest, Ranked](
        service.rank_batch,
        gate,
        settings.batch_window_ms / 1000,
        settings.max_batch,
        settings.batch_threads,
        deadline_s=settings.model_deadline_ms / 1000,
    )
    ingest = settings.ingest_key_hashes + (
        [hash_key(settings.storefront_key)] if settings.storefront_key else []
    )
    app.state.keyring = KeyRing(settings.read_key_hashes, ingest, settings.admin_key_hashes)
    _bind_metrics(metrics, service)
    metrics.bind(metrics.shed_probability.labels("loop"), lambda: loop_lag.shedder.p)
    metrics.bind(metrics.shed_probability.labels("model"), lambda: gate.shedder.p)

    @app.exception_handler(NotReadyError)
    async def not_ready(_request: Request, exc: NotReadyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    for router in (
        health.router,
        recommend.router,
        search.router,
        events.router,
        admin.router,
        admin.stats_router,
        pages.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    app.add_middleware(
        CachedListMiddleware,
        service=service,
        max_k=recommend.MAX_K,
        gate=gate,
        batcher=batcher,
        search_batcher=app.state.search_batcher,
    )
    app.add_middleware(
        GuardMiddleware,
        metrics=metrics,
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        max_in_flight=settings.max_in_flight,
        max_body_bytes=settings.max_body_bytes,
        access_log=settings.access_log,
        shedder=loop_lag.shedder,
        # A cache hit costs about twice its refusal (most of either is HTTP parsing and writing):
        # refusing hits frees almost no CPU, so only work that costs far more is shed.
        exempt=PlainLists(service, recommend.MAX_K).is_hit,
    )
    return app


def _bind_metrics(metrics: Metrics, service: Service) -> None:
    metrics.bind(metrics.cache_hits, lambda: service.cache.hits)
    metrics.bind(metrics.cache_misses, lambda: service.cache.misses)
    metrics.bind(metrics.cache_hit_rate, lambda: service.cache.hit_rate)
    metrics.bind(metrics.query_vector_hit_rate, lambda: query_vectors.hit_rate)
    metrics.bind(metrics.event_lag, lambda: service.last_event_lag_s)
    metrics.bind(metrics.events, lambda: service.events_received)
    metrics.bind(metrics.reload_failures, lambda: service.reload_failures)
    metrics.bind(metrics.precomputed, lambda: service.precomputed)


async def _sync(service: Service) -> None:
    """Apply what other processes wrote to the shared event store (see :meth:`Service.sync_events`)."""
    while True:
        await asyncio.sleep(service.settings.event_sync_s)
        try:
            await asyncio.to_thread(service.sync_events)
        except Exception:  # a locked or busy store: the next round catches up
            log.exception("reading other workers' events failed; retrying")


def app_from_env() -> FastAPI:
    """The app on settings from ``SHOPFUSION_*`` alone: what each worker process of
    ``shopfusion serve --workers N`` builds (uvicorn imports it by name in every worker)."""
    configure_logging()  # a spawned worker does not inherit the parent's logging set-up
    return create_app(ServiceSettings())


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _poll(service: Service, metrics: Metrics) -> None:
    """Reload when the artifact's manifest changes (a retrain wrote a new one in place)."""
    settings = service.settings
    manifest = service.model.path / "manifest.json"
    seen = manifest.read_bytes() if manifest.exists() else b""
    while True:
        await asyncio.sleep(settings.reload_poll_s)
        current = manifest.read_bytes() if manifest.exists() else b""
        if current == seen:
            continue
        seen = current
        try:
            model = await asyncio.to_thread(service.reload)
        except ShopfusionError as exc:
            log.warning("new artifact refused, still serving the previous one: %s", exc)
            continue
        metrics.set_model(model.version)
