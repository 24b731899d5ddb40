"""`/v1/triggers`: the configured triggers and what each has done."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from autoinfer.api.auth import require_key

router = APIRouter(prefix="/v1/triggers", tags=["triggers"], dependencies=[Depends(require_key)])


class TriggerInfo(BaseModel):
    name: str
    bucket: str
    prefix: str
    suffix: str
    events: list[str]
    kind: Literal["rule", "handler"]
    handler: str | None = None
    job: dict[str, Any] | None = None
    counts: dict[str, int]


class TriggerList(BaseModel):
    triggers: list[TriggerInfo]


@router.get("", response_model=TriggerList)
def list_triggers(request: Request) -> TriggerList:
    """Every trigger with the number of events it matched (job created) and failed on."""
    infos = request.app.state.service.pipeline.trigger_infos()
    return TriggerList(triggers=[TriggerInfo(**info) for info in infos])
