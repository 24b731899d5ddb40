"""Triggers: events on a bucket/prefix/suffix become jobs, by a template or a Lambda-style handler.

A rule trigger renders its `job` template with the event's `{bucket}`, `{key}`, `{key_stem}`,
`{uri}`, `{bucket_uri}` and `{event_time}` (`{{`/`}}` are literal braces) into a job spec.
A handler trigger imports `module:function` and calls it as `handler(event, context)` with
the S3-format notification and a Lambda-like context; the handler creates jobs through the
SDK. While it runs, `current_idempotency_key` holds a key derived from the trigger and the
event: the SDK sends it as `Idempotency-Key` (the n-th job of one call that key + `-n`), so a
redelivered event never makes a second job, and a handler may still create several.

The config-time guards on triggers (loops, unserved buckets) live in `triggers.guards`.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import importlib.util
import inspect
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Literal, Protocol

from autoinfer import output_names
from autoinfer.config import TriggerConfig
from autoinfer.errors import ConfigError, SpecError, StorageError
from autoinfer.events.model import S3Event, event_matches, normalise_event_name
from autoinfer.jobs.service import deterministic_job_id
from autoinfer.jobs.spec import JOB_NAME_PATTERN, JobSpec, parse_spec

# The SDK owns the variable (it reads it in `jobs.create`); this module sets it around each
# handler call. Exported here under the name the dispatcher documents.
from autoinfer.sdk import idempotency_key as current_idempotency_key
from autoinfer.sdk import idempotency_scope

__all__ = [
    "LambdaContext",
    "Locator",
    "S3Locator",
    "Trigger",
    "current_idempotency_key",
    "key_stem",
    "render_template",
]

VARIABLES = ("bucket", "key", "key_stem", "uri", "bucket_uri", "event_time")
#: Template fields given when the `job` template leaves them out.
DEFAULTS = {"name": "{key_stem}", "data": {"input_uri": "{uri}"}}
HANDLER_TIMEOUT_S = 900  # what `context.get_remaining_time_in_millis()` counts down from

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class Locator(Protocol):
    """Names objects in one store's URI scheme (LocalStore: file://; S3Locator: s3://)."""

    name: str

    def uri_for(self, bucket: str, key: str) -> str: ...

    def bucket_uri(self, bucket: str) -> str: ...

    def place(self, uri: str) -> tuple[str, str] | None:
        """(bucket, key) of `uri` when it names an object of this store, else None;
        StorageError when it lies in the store but names no bucket (the store's root)."""
        ...


class S3Locator:
    """`s3://bucket/key` names, for S3-compatible stores and sources without a store."""

    name = "s3"

    def place(self, uri: str) -> tuple[str, str] | None:
        if not uri.startswith("s3://"):
            return None
        bucket, _, key = uri[5:].partition("/")
        return (bucket, key) if bucket else None

    def uri_for(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"

    def bucket_uri(self, bucket: str) -> str:
        return f"s3://{bucket}"


@dataclass
class LambdaContext:
    """What AWS Lambda passes as `context`, as far as a handler ported from it may read it."""

    function_name: str
    aws_request_id: str
    function_version: str = "$LATEST"
    invoked_function_arn: str = ""
    memory_limit_in_mb: int = 0
    log_group_name: str = "autoinfer"
    log_stream_name: str = ""
    #: The autoinfer service's URL when it is serving HTTP (the SDK's `url`), else None.
    autoinfer_url: str | None = None
    #: The record exactly as the store sent it (the event's `Records[0]` has its key in AWS's
    #: encoding instead); set for each call.
    original_record: dict[str, Any] | None = None
    deadline: float = field(default_factory=lambda: time.monotonic() + HANDLER_TIMEOUT_S)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


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
            self.template = _with_defaults(config.job)
            self._check_template()
        else:
            assert config.handler is not None
            self.handler = load_handler(config.handler, self.base_dir, where)
            self.takes_context = _takes_two_arguments(self.handler)

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
                result = asyncio.run(_awaited(result))
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
            rendered = _render_value(self.template, variables, "job")
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


def render_template(template: str, variables: Mapping[str, str], where: str = "template") -> str:
    """Replace `{name}` by `variables[name]`; `{{`/`}}` are literal braces; SpecError otherwise."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name is None:
            raise SpecError(f"{where}: unbalanced brace in {template!r} (write {{{{ or }}}})")
        if name not in variables:
            known = ", ".join("{" + v + "}" for v in VARIABLES)
            raise SpecError(
                f"{where}: unknown placeholder {{{name}}} in {template!r} (known: {known})"
            )
        return variables[name]

    return _PLACEHOLDER.sub(substitute, template)


def key_stem(key: str, prefix: str = "") -> str:
    """The key's `{key_stem}`: `incoming/images-X.zip` → `images-X`; any key that is not a
    plain zip name directly under the prefix keeps its whole name plus a hash of the key
    (`incoming/x.tar.gz` → `x.tar.gz~<8 hex>`), so that two objects never name one job
    output (`autoinfer.output_names`)."""
    return output_names.key_stem(key, prefix)


def job_name(value: str) -> str:
    """`value` if it is a valid job name, else the nearest valid one (never empty): control
    characters dropped, then, if still refused, accents folded and other symbols made `-`."""
    printable = re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()[:200].rstrip()
    folded = unicodedata.normalize("NFKD", printable).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]+", "-", folded).lstrip("._ -")[:128].rstrip()
    for candidate in (value, printable, ascii_name):
        if candidate.strip() and JOB_NAME_PATTERN.match(candidate):
            return candidate
    return "job"


def load_handler(reference: str, base_dir: Path, where: str = "handler") -> Callable[..., Any]:
    """Import `module:function`; the module may be a dotted name or a `.py` file path
    (relative to `base_dir`, the configuration's folder, which is searched first)."""
    module_part, colon, function_name = reference.rpartition(":")
    if not colon or not module_part or not function_name:
        raise ConfigError(f"{where}: handler {reference!r}: write it as 'module:function'")
    try:
        module = _import(module_part, base_dir)
    except ConfigError:
        raise
    except Exception as error:  # the handler module's own import failed
        raise ConfigError(
            f"{where}: handler {reference!r}: importing {module_part!r} failed: "
            f"{type(error).__name__}: {error}"
        ) from error
    handler = getattr(module, function_name, None)
    if handler is None:
        raise ConfigError(
            f"{where}: handler {reference!r}: {module_part!r} has no {function_name!r}"
        )
    if not callable(handler):
        raise ConfigError(f"{where}: handler {reference!r}: {function_name!r} is not callable")
    return handler


# --- internals ------------------------------------------------------------------------


def _with_defaults(job: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(job)
    template.setdefault("name", DEFAULTS["name"])
    data = template.setdefault("data", {})
    if isinstance(data, dict):
        data.setdefault("input_uri", DEFAULTS["data"]["input_uri"])  # type: ignore[index]
    return template


def _render_value(value: Any, variables: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        return render_template(value, variables, where)
    if isinstance(value, dict):
        return {k: _render_value(v, variables, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, variables, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _import(module_part: str, base_dir: Path) -> Any:
    is_path = module_part.endswith(".py") or "/" in module_part or "\\" in module_part
    if is_path:
        path = Path(module_part)
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise ConfigError(f"handler file {path} does not exist")
        return _import_file(path, f"autoinfer_handler_{deterministic_job_id(str(path))[:12]}")
    candidate = base_dir / (module_part.replace(".", "/") + ".py")
    if candidate.is_file():
        return _import_file(candidate, module_part)
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as error:
        if error.name and module_part.startswith(error.name):
            raise ConfigError(
                f"no module {module_part!r} (looked for {candidate} and on the Python path)"
            ) from None
        raise


def _import_file(path: Path, module_name: str) -> Any:
    """Load a handler file like Lambda does: its folder on the path for sibling imports."""
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__file__", None) == str(path.resolve()):
        return existing
    spec = importlib.util.spec_from_file_location(module_name, path.resolve())
    if spec is None or spec.loader is None:
        raise ConfigError(f"handler file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _takes_two_arguments(handler: Callable[..., Any]) -> bool:
    """Whether `handler` can be called with (event, context); AWS always passes both, but a
    handler written as `def lambda_handler(event)` is called with the event alone."""
    try:
        inspect.signature(handler).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (a builtin): call it as AWS would
        return True
    return True


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
