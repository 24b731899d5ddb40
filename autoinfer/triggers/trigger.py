"""`Trigger`: one configured rule or handler, matching events and turning each into a job spec
or a handler call."""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Callable, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any, Literal

from autoinfer.config import TriggerConfig
from autoinfer.errors import ConfigError, SpecError, StorageError
from autoinfer.events.model import S3Event, event_matches, normalise_event_name
from autoinfer.jobs.service import deterministic_job_id
from autoinfer.jobs.spec import JobSpec, parse_spec

# The SDK owns the idempotency key (it reads it in `jobs.create`); a handler call runs in
# its scope.
from autoinfer.sdk import idempotency_scope
from autoinfer.triggers.handlers import (
    LambdaContext,
    awaited,
    load_handler,
    takes_two_arguments,
)
from autoinfer.triggers.locators import Locator, S3Locator
from autoinfer.triggers.templates import (
    job_name,
    key_stem,
    render_value,
    with_defaults,
)


class Trigger:
    """One configured trigger: which events it takes and what it does with them.

    Construction validates it (exactly one of `job`/`handler`, known placeholders, a template
    that renders into a valid spec, an importable handler) and raises ConfigError otherwise.
    """

    def __init__(self, config: TriggerConfig, *, base_dir: Path | None = None) -> None:
        self.config = config
        self.name = config.name
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.suffix = config.suffix
        self.events = [normalise_event_name(p) for p in config.events]
        self.base_dir = base_dir or Path.cwd()
        where = f"trigger {self.name!r}"
        if not self.events:
            raise ConfigError(f"{where}: events: name at least one event pattern")
        if (config.job is None) == (config.handler is None):
            raise ConfigError(f"{where}: give exactly one of `job` (a template) or `handler`")
        self.kind: Literal["rule", "handler"] = "rule" if config.job is not None else "handler"
        self.template: dict[str, Any] | None = None
        self.handler: Callable[..., Any] | None = None
        self.takes_context = True  # whether the handler is called as (event, context)
        if config.job is not None:
            self.template = with_defaults(config.job)
            self._check_template()
        else:
            assert config.handler is not None
            self.handler = load_handler(config.handler, self.base_dir, where)
            self.takes_context = takes_two_arguments(self.handler)

    def __repr__(self) -> str:
        return f"Trigger({self.name!r}, bucket={self.bucket!r}, prefix={self.prefix!r}, kind={self.kind})"

    def matches(self, event: S3Event) -> bool:
        """Bucket equal, key under the prefix and ending with the suffix, event name matching.

        Folder markers (keys ending in `/`) never match.
        """
        return (
            event.bucket == self.bucket
            and event.key.startswith(self.prefix)
            and event.key.endswith(self.suffix)
            and not event.key.endswith("/")
            and any(event_matches(pattern, event.event_name) for pattern in self.events)
        )

    def job_id(self, event: S3Event) -> str:
        """The deterministic id of the job this trigger makes for `event`."""
        return deterministic_job_id(self.name, event.idempotency_key)

    def idempotency_key(self, event: S3Event) -> str:
        """The `Idempotency-Key` a handler's SDK calls carry for `event` (header-safe hex)."""
        return deterministic_job_id(self.name, event.idempotency_key)

    def variables(self, event: S3Event, locator: Locator) -> dict[str, str]:
        """The template's placeholders for `event`, its URIs in `locator`'s scheme."""
        return {
            "bucket": event.bucket,
            "key": event.key,
            "key_stem": key_stem(event.key, self.prefix),
            "uri": locator.uri_for(event.bucket, event.key),
            "bucket_uri": locator.bucket_uri(event.bucket),
            "event_time": event.event_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }

    def render(self, event: S3Event, locator: Locator) -> JobSpec:
        """The job spec for `event`; SpecError naming the trigger and the bad field otherwise.

        A rendered `name` that is not a valid job name is made one (see `job_name`).
        """
        if self.template is None:
            raise SpecError(f"trigger {self.name!r}: a handler trigger has no job template")
        try:
            variables = self.variables(event, locator)
        except StorageError as error:
            raise SpecError(f"trigger {self.name!r}: {error}") from None
        return self._spec(variables)

    def call_handler(self, event: S3Event, context: LambdaContext) -> Any:
        """Run the handler on `event` (awaiting it if it is async) in an idempotency scope: its
        first job through the SDK carries `idempotency_key(event)`, the n-th that key + `-n`."""
        if self.handler is None:
            raise SpecError(f"trigger {self.name!r}: a rule trigger has no handler")
        context.original_record = copy.deepcopy(event.raw) if event.raw else None
        notification = event.notification()  # a copy: the handler may change it
        with idempotency_scope(self.idempotency_key(event)):
            if self.takes_context:
                result = self.handler(notification, context)
            else:  # `def lambda_handler(event):`, as some examples write it
                result = self.handler(notification)
            if inspect.isawaitable(result):
                result = asyncio.run(awaited(result))
            return result

    def info(self) -> dict[str, Any]:
        """What `GET /v1/triggers` shows of it (counts are added by the pipeline)."""
        return {
            "name": self.name,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "suffix": self.suffix,
            "events": list(self.config.events),
            "kind": self.kind,
            "handler": self.config.handler,
            "job": self.config.job,
        }

    # --- internals ------------------------------------------------------------------

    def _spec(self, variables: Mapping[str, str]) -> JobSpec:
        assert self.template is not None
        try:
            rendered = render_value(self.template, variables, "job")
        except SpecError as error:
            raise SpecError(f"trigger {self.name!r}: {error}") from None
        rendered["name"] = job_name(str(rendered.get("name", "")))
        try:
            return parse_spec(rendered)
        except SpecError as error:
            raise SpecError(f"trigger {self.name!r}: job: {error}") from None

    def _check_template(self) -> None:
        sample = self.prefix + "example" + (self.suffix or ".zip")
        locator = S3Locator()
        variables = {
            "bucket": self.bucket,
            "key": sample,
            "key_stem": key_stem(sample, self.prefix),
            "uri": locator.uri_for(self.bucket, sample),
            "bucket_uri": locator.bucket_uri(self.bucket),
            "event_time": "2000-01-01T00:00:00Z",
        }
        try:
            self._spec(variables)
        except SpecError as error:
            raise ConfigError(str(error)) from None
