"""Hot reload and the numbers behind the dashboard."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from shopfusion.errors import ShopfusionError
from shopfusion.serving.deps import ServiceDep, require
from shopfusion.serving.schemas import ReloadRequest, ReloadResponse
from shopfusion.serving.security import Role

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require(Role.ADMIN))])


@router.post("/reload", response_model=ReloadResponse, responses={409: {"description": "artifact refused"}})
async def reload(service: ServiceDep, request: Request, body: ReloadRequest | None = None) -> ReloadResponse:
    """Swap in a new artifact without dropping requests; a broken one is refused (409) and the
    current one keeps serving."""
    path = Path(body.artifact) if body is not None and body.artifact else None
    try:
        # Loading takes seconds: off the event loop and off the scoring threads, so requests keep
        # flowing meanwhile.
        model = await asyncio.to_thread(service.reload, path)
    except ShopfusionError as exc:
        raise HTTPException(409, f"artifact refused, still serving the previous one: {exc}") from None
    request.app.state.metrics.set_model(model.version)
    return ReloadResponse(model_version=model.version, artifact=str(model.path))


stats_router = APIRouter(prefix="/v1", tags=["operations"], dependencies=[Depends(require(Role.READ))])


@stats_router.get("/stats")
def stats(service: ServiceDep) -> dict[str, Any]:
    """What the dashboard shows: model, cache, events, reloads (no personal data)."""
    model = service.model
    manifest = model.artifact.manifest
    return {
        "model_version": model.version,
        "artifact": str(model.path),
        "data": {k: v for k, v in manifest.get("data", {}).items() if k != "metadata"},
        "sources": [s.name for s in model.artifact.config.sources],
        "fusion": model.artifact.config.fusion.method,
        "training": manifest.get("training", {}).get("timings", {}),
        "search": model.searcher is not None,
        "cache": {
            "size": len(service.cache),
            "hits": service.cache.hits,
            "misses": service.cache.misses,
            "hit_rate": round(service.cache.hit_rate, 4),
            "precomputed": service.precomputed,
        },
        "events_received": service.events_received,
        "event_lag_s": round(service.last_event_lag_s, 3),
        "reloads": service.reload_history,
    }
