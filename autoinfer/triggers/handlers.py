"""Handler triggers: a `module:function` imported like AWS Lambda imports it, called with a
Lambda-like context."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoinfer.errors import ConfigError
from autoinfer.jobs.service import deterministic_job_id

HANDLER_TIMEOUT_S = 900  # what `context.get_remaining_time_in_millis()` counts down from


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


def takes_two_arguments(handler: Callable[..., Any]) -> bool:
    """Whether `handler` can be called with (event, context); AWS always passes both, but a
    handler written as `def lambda_handler(event)` is called with the event alone."""
    try:
        inspect.signature(handler).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (a builtin): call it as AWS would
        return True
    return True


async def awaited(awaitable: Any) -> Any:
    return await awaitable
