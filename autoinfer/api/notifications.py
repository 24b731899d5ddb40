"""`/v1/notifications`: the completion notifications of jobs, and redelivery."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel

from autoinfer.api.auth import require_key
from autoinfer.notifications.outbox import NotificationRecord

MAX_OFFSET = 2**63 - 1  # the largest offset a database integer holds

router = APIRouter(
    prefix="/v1/notifications", tags=["notifications"], dependencies=[Depends(require_key)]
)


class NotificationList(BaseModel):
    notifications: list[NotificationRecord]
    total: int


@router.get("", response_model=NotificationList)
def list_notifications(
    request: Request,
    status: Literal["pending", "delivered", "failed"] | None = None,
    job_id: str | None = Query(None, max_length=64),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> NotificationList:
    """Notifications newest first, with their delivery state (attempts, next try, last error)."""
    records, total = request.app.state.service.notifications.list(
        status=status, job_id=job_id, limit=limit, offset=offset
    )
    return NotificationList(notifications=records, total=total)


@router.get("/{notification_id}", response_model=NotificationRecord)
def get_notification(
    request: Request, notification_id: int = Path(ge=1, le=MAX_OFFSET)
) -> NotificationRecord:
    """One notification with the body it sends."""
    return request.app.state.service.notifications.get(notification_id)


@router.post("/{notification_id}/redeliver", response_model=NotificationRecord)
def redeliver(
    request: Request, notification_id: int = Path(ge=1, le=MAX_OFFSET)
) -> NotificationRecord:
    """Send it again now, with the same `webhook-id` (receivers deduplicate on it)."""
    return request.app.state.service.notifications.redeliver(notification_id)
