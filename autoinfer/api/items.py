"""`GET /v1/jobs/{id}/items`: a job's per-item results, paged, optionally only ok or errors."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from autoinfer.api.auth import require_key
from autoinfer.jobs.items import ItemPage

MAX_OFFSET = 2**63 - 1  # the largest offset a database integer holds

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_key)])


@router.get("/{job_id}/items", response_model=ItemPage)
def job_items(
    request: Request,
    job_id: str,
    status: Literal["ok", "error"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> ItemPage:
    """Each input item's outcome (`file`, `status`, `error`, `top` class), in the order
    recorded, with the `total` matching the filter."""
    service = request.app.state.service
    service.jobs.get(job_id)  # 404 for an unknown job
    return service.items.page(job_id, status=status, limit=limit, offset=offset)
