"""Triggers: events on a bucket/prefix/suffix become jobs, by a template or a Lambda-style handler.

A rule trigger renders its `job` template with the event's `{bucket}`, `{key}`, `{key_stem}`,
`{uri}`, `{bucket_uri}` and `{event_time}` (`{{`/`}}` are literal braces) into a job spec.
A handler trigger imports `module:function` and calls it as `handler(event, context)` with
the S3-format notification and a Lambda-like context; the handler creates jobs through the
SDK. While it runs, `current_idempotency_key` holds a key derived from the trigger and the
event: the SDK sends it as `Idempotency-Key` (the n-th job of one call that key + `-n`), so a
redelivered event never makes a second job, and a handler may still create several.

Modules: `trigger` (Trigger), `templates` (rendering a rule's job), `handlers` (importing and
calling a handler, LambdaContext), `locators` (object names <-> URIs), `guards` (config-time
checks: loops, unserved buckets).
"""

from __future__ import annotations

# The SDK owns the variable (it reads it in `jobs.create`); `Trigger.call_handler` sets it
# around each handler call. Exported here under the name the dispatcher documents.
from autoinfer.sdk import idempotency_key as current_idempotency_key
from autoinfer.triggers.handlers import LambdaContext, load_handler
from autoinfer.triggers.locators import Locator, S3Locator
from autoinfer.triggers.templates import job_name, key_stem, render_template
from autoinfer.triggers.trigger import Trigger

__all__ = [
    "LambdaContext",
    "Locator",
    "S3Locator",
    "Trigger",
    "current_idempotency_key",
    "job_name",
    "key_stem",
    "load_handler",
    "render_template",
]
