"""`GET /v1/overview`: the last hour at a glance, for the dashboard's overview page.

Points every `sample_s` seconds (images/s of this replica, jobs waiting, events waiting,
notifications pending) and per-minute counts of jobs finished and failed; see
`autoinfer.overview` for where they come from.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from autoinfer.api.auth import require_key
from autoinfer.overview import KEEP_MINUTES

router = APIRouter(prefix="/v1/overview", tags=["overview"], dependencies=[Depends(require_key)])


@router.get("")
def get_overview(
    request: Request, minutes: int = Query(KEEP_MINUTES, ge=1, le=KEEP_MINUTES)
) -> dict[str, Any]:
    """The last `minutes` (1–60) of this replica's overview history, with a sample of now."""
    return request.app.state.service.overview.series(minutes)
