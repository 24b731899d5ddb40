"""What list endpoints return: records without their stored payloads.

`GET /v1/jobs` and `GET /v1/events` answer summaries, so a page of 1000 items costs what its
columns cost, never 1000 job specs or raw event records. The detail routes
(`GET /v1/jobs/{id}`, `GET /v1/events/{id}`) keep `spec` and `raw`. A job summary carries the
spec's input and output URIs, which lists show.
"""

from __future__ import annotations

from autoinfer.inbox.records import EventFields, EventRecord
from autoinfer.jobs.records import JobFields, JobRecord

#: The longest URI a summary repeats from a spec (specs are capped, but not this tightly).
MAX_SUMMARY_URI = 2048


class JobSummary(JobFields):
    """A job as lists show it: `JobRecord` without `spec`, with its input and output URIs."""

    input_uri: str | None
    output_uri: str | None

    @classmethod
    def of(cls, job: JobRecord) -> JobSummary:
        data = job.spec.get("data") if isinstance(job.spec, dict) else None
        data = data if isinstance(data, dict) else {}
        return cls(
            **job.model_dump(exclude={"spec"}),
            input_uri=_uri(data.get("input_uri")),
            output_uri=_uri(data.get("output_uri")),
        )


class EventSummary(EventFields):
    """An event as lists show it: `EventRecord` without `raw` (the stored record)."""

    @classmethod
    def of(cls, event: EventRecord) -> EventSummary:
        return cls(**{name: getattr(event, name) for name in cls.model_fields})


def _uri(value: object) -> str | None:
    return value[:MAX_SUMMARY_URI] if isinstance(value, str) else None
