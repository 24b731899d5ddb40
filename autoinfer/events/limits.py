"""What one field of an untrusted notification record may hold, and the readers that enforce
it: a record whose field does not fit is refused by name (`EventError`), never stored half.

Pure; `autoinfer.events.model` assembles records from these fields.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from autoinfer.errors import EventError

#: A notification with more records than this is refused (S3 itself sends one per message).
MAX_RECORDS = 1000
#: S3's limit on key length, in bytes of UTF-8.
MAX_KEY_BYTES = 1024
#: What the inbox's columns can hold (`autoinfer.inbox.EventRow` is declared with these): a
#: record whose field does not fit is rejected here, by name, instead of failing the insert.
MAX_BUCKET_CHARS = 255
MAX_EVENT_NAME_CHARS = 100
MAX_ETAG_CHARS = 200
MAX_VERSION_ID_CHARS = 1024
MAX_SEQUENCER_CHARS = 200
MAX_REGION_CHARS = 100
#: Sizes are stored as a signed 64-bit integer.
MAX_OBJECT_SIZE = 2**63 - 1
#: S3 records nest four levels deep; anything far deeper is an attack on the parser or the
#: store's JSON encoder, not a notification.
MAX_RECORD_DEPTH = 32


def load_body(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, bytes | bytearray):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise EventError(f"body is not UTF-8: {error}") from None
    if isinstance(body, str):
        if not body.strip():
            raise EventError("body is empty")
        try:
            body = json.loads(body)
        except json.JSONDecodeError as error:
            raise EventError(f"body is not JSON: {error}") from None
        except RecursionError:
            raise EventError("body is not JSON this service reads: nested too deeply") from None
    if not isinstance(body, dict):
        raise EventError(f"body must be a JSON object, got {type(body).__name__}")
    return body


def mapping_field(parent: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = parent.get(name)
    if value is None:
        raise EventError(f"{where}.{name}: missing")
    if not isinstance(value, dict):
        raise EventError(f"{where}.{name}: must be an object, got {type(value).__name__}")
    return value


def string_field(
    parent: dict[str, Any],
    name: str,
    where: str,
    *,
    required: bool = False,
    limit: int | None = None,
) -> Any:
    """A string field; missing or empty gives None (or EventError when `required`). Longer
    than `limit` characters, or holding a NUL (which PostgreSQL cannot store), is an error."""
    value = parent.get(name)
    if value is None or value == "":
        if required:
            raise EventError(f"{where}.{name}: missing")
        return None
    if not isinstance(value, str):
        raise EventError(f"{where}.{name}: must be a string, got {type(value).__name__}")
    if limit is not None and len(value) > limit:
        raise EventError(f"{where}.{name}: {len(value)} characters long; at most {limit} stored")
    if "\x00" in value:
        raise EventError(f"{where}.{name}: contains a NUL character")
    return value


def size_field(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)  # Ceph RGW sends sizes as strings
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EventError(f"{where}: must be a non-negative integer, got {short_repr(value)}")
    if value > MAX_OBJECT_SIZE:
        raise EventError(f"{where}: {value} is more than the largest size stored (2^63 - 1)")
    return value


def check_tree(record: dict[str, Any], where: str) -> None:
    """EventError when the record nests deeper than MAX_RECORD_DEPTH or holds a string that is
    not valid Unicode (a lone surrogate cannot be stored as UTF-8). Iterative: a hostile
    nesting cannot exhaust the stack here."""
    stack: list[tuple[Any, int]] = [(record, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items: Any = list(value.keys()) + list(value.values())
        elif isinstance(value, list):
            items = value
        else:
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise EventError(f"{where}: holds a string that is not valid Unicode") from None
            continue
        if depth > MAX_RECORD_DEPTH:
            raise EventError(f"{where}: nested more than {MAX_RECORD_DEPTH} levels deep")
        stack.extend((item, depth + 1) for item in items)


def short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timestamp_field(value: Any, where: str) -> datetime:
    if value is None or value == "":
        raise EventError(f"{where}: missing")
    if not isinstance(value, str):
        raise EventError(f"{where}: must be an ISO 8601 string, got {type(value).__name__}")
    if len(value) > 64:
        raise EventError(f"{where}: not an ISO 8601 timestamp: {short_repr(value)}")
    try:
        moment = datetime.fromisoformat(value)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        moment.astimezone(UTC)  # what the store keeps; near year 1 or 9999 it overflows
    except ValueError:
        raise EventError(f"{where}: not an ISO 8601 timestamp: {value!r}") from None
    except OverflowError:
        raise EventError(f"{where}: {value!r} is out of the range of UTC timestamps") from None
    return moment
