"""The Python client. Its names and argument shapes follow the trainML SDK, so a Lambda handler
written for trainML works after changing only its import and constructor:

    from autoinfer import AutoInfer
    client = AutoInfer(url="http://127.0.0.1:8000", key="...")
    job = await client.jobs.create(name=..., type="inference", gpu_type=..., gpu_count=1,
                                   disk_size=10, workers=[...], data=dict(...), model=dict(...))
    await job.wait_for("finished")

`SyncAutoInfer` offers the same calls without `await`.
"""

from __future__ import annotations

from autoinfer.sdk.client import DEFAULT_URL, APIError, AutoInfer
from autoinfer.sdk.idempotency import idempotency_key, idempotency_scope, next_idempotency_key
from autoinfer.sdk.resources import (
    TERMINAL,
    Events,
    Job,
    Jobs,
    Keys,
    Notifications,
    Secrets,
    Triggers,
)
from autoinfer.sdk.sync import SyncAutoInfer

__all__ = [
    "DEFAULT_URL",
    "TERMINAL",
    "APIError",
    "AutoInfer",
    "Events",
    "Job",
    "Jobs",
    "Keys",
    "Notifications",
    "Secrets",
    "SyncAutoInfer",
    "Triggers",
    "idempotency_key",
    "idempotency_scope",
    "next_idempotency_key",
]
