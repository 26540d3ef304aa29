"""Event ingestion and the right to erasure (both need an API key)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Path, Request

from shopfusion.errors import UnknownIdError
from shopfusion.serving.deps import BatcherDep, FeedBatcher, ServiceDep, require
from shopfusion.serving.schemas import EventBatch, EventsAccepted, UserErased, UserId
from shopfusion.serving.security import Role
from shopfusion.serving.service import FeedRequest

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    response_model=EventsAccepted,
    status_code=202,
    dependencies=[Depends(require(Role.INGEST))],
    responses={401: {"description": "no key"}, 403: {"description": "key lacks the ingest role"}},
)
def post_events(
    service: ServiceDep,
    batcher: BatcherDep,
    batch: EventBatch,
    request: Request,
    background: BackgroundTasks,
) -> EventsAccepted:
    """Store a batch of shopper events durably; they personalise the shopper's next requests."""
    limit: int = request.app.state.settings.max_events_per_batch
    if len(batch.events) > limit:
        raise HTTPException(413, f"{len(batch.events)} events in one batch; send at most {limit}")
    try:
        events = [e.to_event() for e in batch.events]
        ingested = service.ingest(events)
    except UnknownIdError as exc:
        raise HTTPException(422, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if ingested.stale_feeds:
        background.add_task(refresh_feeds, batcher, ingested.stale_feeds)
    return EventsAccepted(accepted=len(events), last_sequence=ingested.sequence)


async def refresh_feeds(batcher: FeedBatcher, stale: Sequence[FeedRequest]) -> None:
    """Compute again, after the response, the cached feeds the events made stale, so the shopper's
    next feed is a cache hit that already reflects them. They join the live misses' batches and
    pass the same admission: a refused one (the model is busy) is left to the next request."""
    results = await asyncio.gather(*(batcher.submit(r) for r in stale), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, HTTPException)]
    if failed:
        log.warning("recomputing %d stale feeds failed: %r", len(failed), failed[0])


@router.delete(
    "/users/{user_id}",
    response_model=UserErased,
    dependencies=[Depends(require(Role.ADMIN))],
    responses={401: {"description": "no key"}, 403: {"description": "key lacks the admin role"}},
)
def delete_user(service: ServiceDep, user_id: Annotated[UserId, Path()]) -> UserErased:
    """Erase a shopper: their stored events, online history and cached lists."""
    return UserErased(user_id=user_id, events_deleted=service.erase_user(user_id))
