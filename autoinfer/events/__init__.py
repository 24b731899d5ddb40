"""Storage events: the one event type every source produces, and the sources themselves.

`model` is pure parsing; `watch`, `webhook` and `poll` are the sources (imported by the
pipeline, not here, so that importing the event model stays cheap).
"""

from autoinfer.events.model import (
    Notification,
    S3Event,
    event_matches,
    normalise_event_name,
    object_created,
    parse_notification,
)

__all__ = [
    "Notification",
    "S3Event",
    "event_matches",
    "normalise_event_name",
    "object_created",
    "parse_notification",
]
