"""Event ingestion and the right to erasure (both need an API key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from shopfusion.errors import UnknownIdError
from shopfusion.serving.deps import ServiceDep, require
from shopfusion.serving.schemas import EventBatch, EventsAccepted, UserErased, UserId
from shopfusion.serving.security import Role

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    response_model=EventsAccepted,
    status_code=202,
    dependencies=[Depends(require(Role.INGEST))],
    responses={401: {"description": "no key"}, 403: {"description": "key lacks the ingest role"}},
)
def post_events(service: ServiceDep, batch: EventBatch, request: Request) -> EventsAccepted:
    """Store a batch of shopper events durably; they personalise the shopper's next requests."""
    limit: int = request.app.state.settings.max_events_per_batch
    if len(batch.events) > limit:
        raise HTTPException(413, f"{len(batch.events)} events in one batch; send at most {limit}")
    try:
        events = [e.to_event() for e in batch.events]
        seq = service.ingest(events)
    except UnknownIdError as exc:
        raise HTTPException(422, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return EventsAccepted(accepted=len(events), last_sequence=seq)


@router.delete(
    "/users/{user_id}",
    response_model=UserErased,
    dependencies=[Depends(require(Role.ADMIN))],
    responses={401: {"description": "no key"}, 403: {"description": "key lacks the admin role"}},
)
def delete_user(service: ServiceDep, user_id: Annotated[UserId, Path()]) -> UserErased:
    """Erase a shopper: their stored events, online history and cached lists."""
    return UserErased(user_id=user_id, events_deleted=service.erase_user(user_id))
