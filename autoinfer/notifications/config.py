"""The `notifications:` section of autoinfer.yaml: one entry per target.

```yaml
notifications:
  - name: done
    url: https://hooks.example.com/autoinfer     # type: webhook (the default)
    secret: "secret:hook-secret"                  # or an inline whsec_... value
    events: ["job.finished", "job.failed"]        # default: every terminal job event
    triggers: [classify-incoming]                  # optional: only jobs these triggers made
  - {name: chain, type: sqs, store: lake, queue_url: "https://sqs...", events: ["job.finished"]}
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

#: The notification types, one per terminal job status.
JOB_EVENTS = ("job.finished", "job.failed", "job.stopped")
DAY_S = 86_400.0


class _Target(BaseModel):
    """What every target has: a name, which job events it wants, and how long to retry."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    events: list[str] = Field(default_factory=lambda: list(JOB_EVENTS))
    triggers: list[str] | None = None  # only jobs made by these (rule) triggers
    retry_for_s: float = Field(DAY_S, gt=0)  # then the notification is `failed`
    backoff_s: float = Field(5.0, gt=0)  # the first wait after a failed delivery; doubles
    max_backoff_s: float = Field(900.0, gt=0)  # the longest wait between attempts
    timeout_s: float = Field(10.0, gt=0, le=300)  # one delivery attempt

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: list[str]) -> list[str]:
        unknown = [event for event in events if event not in JOB_EVENTS]
        if unknown:
            raise ValueError(f"unknown event(s) {unknown}; known: {', '.join(JOB_EVENTS)}")
        if not events:
            raise ValueError("name at least one event")
        return events

    def wants(self, event_type: str, source: str) -> bool:
        """Whether a job that ended as `event_type`, from `source`, is for this target."""
        if event_type not in self.events:
            return False
        if self.triggers is None:
            return True
        return source.startswith("trigger:") and source[len("trigger:") :] in self.triggers


class WebhookTarget(_Target):
    """POST the notification to `url`, signed per Standard Webhooks with `secret`."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://")
    secret: str = Field(min_length=1)  # "secret:NAME" or an inline "whsec_<base64 key>"


class SqsTarget(_Target):
    """Send the notification's body as a message to an SQS queue."""

    type: Literal["sqs"]
    queue_url: str = Field(pattern=r"^https?://")
    store: str | None = None  # an s3 store whose endpoint credentials to use; None: AWS chain


def _target_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "webhook"))
    return str(getattr(value, "type", "webhook"))


NotificationTarget = Annotated[
    Annotated[WebhookTarget, Tag("webhook")] | Annotated[SqsTarget, Tag("sqs")],
    Discriminator(_target_type),
]
