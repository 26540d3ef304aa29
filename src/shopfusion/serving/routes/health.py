"""Liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shopfusion.serving.deps import ServiceDep
from shopfusion.serving.metrics import Metrics
from shopfusion.serving.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive (it may still be loading)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(service: ServiceDep) -> Response:
    """Ready to serve: a model and the event store are loaded (and, with ``WARM_READY_S``, the
    precomputed feeds are done or that many seconds have passed)."""
    if not service.ready:
        return JSONResponse(Health(status="loading").model_dump(), status_code=503)
    model = service.model
    if service.warming(service.settings.warm_ready_s):
        warming = Health(status="warming", model_version=model.version)
        return JSONResponse(warming.model_dump(), status_code=503)
    return JSONResponse(
        Health(status="ready", model_version=model.version, search=model.searcher is not None).model_dump()
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format: latency histograms, status counts, errors, model version, event lag."""
    m: Metrics = request.app.state.metrics
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
