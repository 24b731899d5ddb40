"""S3-format storage notifications (AWS, MinIO, Ceph RGW) parsed into one event type.

Pure logic, no I/O: every source (watcher, webhook, poller, SQS) produces `S3Event`s, either
by parsing a notification body with `parse_notification` or by describing an object it saw
with `object_created`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Literal
from urllib.parse import quote_plus, unquote_plus

from autoinfer.errors import EventError

Flavour = Literal["aws", "minio", "ceph", "local"]

#: A notification with more records than this is refused (S3 itself sends one per message).
MAX_RECORDS = 1000
#: S3's limit on key length, in bytes of UTF-8.
MAX_KEY_BYTES = 1024
#: Separates the parts of an idempotency key; cannot occur in bucket names.
SEPARATOR = "\x1f"


@dataclass(frozen=True)
class S3Event:
    """One object event, whoever reported it. `key` is decoded (`+` → space, `%xx` → byte)."""

    bucket: str
    key: str
    event_name: str  # without the "s3:" prefix, e.g. "ObjectCreated:Put"
    event_time: datetime  # timezone-aware
    size: int | None = None
    etag: str | None = None  # without quotes
    version_id: str | None = None
    sequencer: str | None = None
    region: str | None = None
    flavour: Flavour = "aws"
    #: The record as the store sent it (S3 format, key still URL-encoded); built for local events.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def idempotency_key(self) -> str:
        """What makes two deliveries the same event: bucket, key and the object's identity.

        The identity is the version id, else the ETag (the content's MD5 for single-part
        uploads, so a watcher and a webhook reporting one object agree), else the sequencer,
        else size and event time. Events other than ObjectCreated get their category
        appended, so deleting an object is not a duplicate of creating it.
        """
        identity = self.version_id or self.etag or self.sequencer
        if identity is None:
            identity = f"{self.size}@{self.event_time.astimezone(UTC).isoformat()}"
        parts = [self.bucket, self.key, identity]
        category = self.event_name.partition(":")[0]
        if category != "ObjectCreated":
            parts.append(category)
        return SEPARATOR.join(parts)

    @property
    def uri_path(self) -> str:
        """`bucket/key`, for messages."""
        return f"{self.bucket}/{self.key}"

    def notification(self) -> dict[str, Any]:
        """The S3-format notification holding only this event, as a Lambda handler receives it."""
        return {"Records": [self.raw or s3_record(self)]}


@dataclass(frozen=True)
class Notification:
    """A parsed notification body: its events, or an S3 `s3:TestEvent` with none."""

    events: list[S3Event]
    test_event: bool = False


def parse_notification(
    body: bytes | str | dict[str, Any], *, max_records: int = MAX_RECORDS
) -> Notification:
    """Parse an S3 / MinIO / Ceph notification; EventError names the first thing wrong."""
    document = _load(body)
    if document.get("Event") == "s3:TestEvent":
        return Notification(events=[], test_event=True)
    if "Records" not in document:
        raise EventError("Records: missing (not an S3 event notification)")
    records = document["Records"]
    if not isinstance(records, list):
        raise EventError("Records must be a list")
    if len(records) > max_records:
        raise EventError(
            f"Records: {len(records)} records in one notification; at most {max_records} allowed"
        )
    minio_shaped = "EventName" in document or "Key" in document
    events = [
        parse_record(record, where=f"Records[{index}]", minio_shaped=minio_shaped)
        for index, record in enumerate(records)
    ]
    return Notification(events=events)


def parse_record(record: Any, *, where: str = "record", minio_shaped: bool = False) -> S3Event:
    """One `Records[]` entry → S3Event; `where` prefixes error messages."""
    if not isinstance(record, dict):
        raise EventError(f"{where}: must be an object, got {type(record).__name__}")
    event_name = normalise_event_name(_string(record, "eventName", where, required=True))
    event_time = _timestamp(record.get("eventTime"), f"{where}.eventTime")
    s3 = _mapping(record, "s3", where)
    bucket_info = _mapping(s3, "bucket", f"{where}.s3")
    bucket = _string(bucket_info, "name", f"{where}.s3.bucket", required=True)
    obj = _mapping(s3, "object", f"{where}.s3")
    raw_key = _string(obj, "key", f"{where}.s3.object", required=True)
    key = decode_key(raw_key, f"{where}.s3.object.key")
    etag = _string(obj, "eTag", f"{where}.s3.object") or _string(obj, "etag", f"{where}.s3.object")
    if etag is not None:
        etag = etag.strip('"') or None
    version_id = _string(obj, "versionId", f"{where}.s3.object")
    return S3Event(
        bucket=bucket,
        key=key,
        event_name=event_name,
        event_time=event_time,
        size=_size(obj.get("size"), f"{where}.s3.object.size"),
        etag=etag,
        # S3's "null" version is what unversioned writes get: it names no particular version.
        version_id=None if version_id in (None, "null") else version_id,
        sequencer=_string(obj, "sequencer", f"{where}.s3.object"),
        region=_string(record, "awsRegion", where),
        flavour=_flavour(record, minio_shaped),
        raw=record,
    )


def normalise_event_name(name: str) -> str:
    """`s3:ObjectCreated:Put` → `ObjectCreated:Put` (MinIO and S3 configs use the prefix)."""
    return name.removeprefix("s3:")


def event_matches(pattern: str, event_name: str) -> bool:
    """Whether `event_name` matches a pattern such as `ObjectCreated:*` (either may carry `s3:`)."""
    return fnmatchcase(normalise_event_name(event_name), normalise_event_name(pattern))


def decode_key(raw_key: str, where: str = "key") -> str:
    """A notification's URL-encoded key decoded (`my+photos+%C3%A9t%C3%A9` → `my photos été`)."""
    try:
        key = unquote_plus(raw_key, errors="strict")
    except UnicodeDecodeError:
        raise EventError(f"{where}: {raw_key!r} does not decode to UTF-8") from None
    check_key(key, where)
    return key


def check_key(key: str, where: str = "key") -> None:
    """EventError unless `key` is a usable object key (non-empty, ≤ 1024 bytes, no NUL)."""
    if not key:
        raise EventError(f"{where}: empty")
    if "\x00" in key:
        raise EventError(f"{where}: contains a NUL character")
    size = len(key.encode("utf-8", errors="surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise EventError(f"{where}: {size} bytes long; S3 keys are at most {MAX_KEY_BYTES} bytes")


def object_created(
    bucket: str,
    key: str,
    *,
    size: int,
    etag: str | None,
    modified: datetime | None,
    version_id: str | None = None,
    flavour: Flavour = "local",
    event_name: str = "ObjectCreated:Put",
    region: str | None = None,
) -> S3Event:
    """The event a source reports for an object it found itself (watcher, poller)."""
    check_key(key)
    event = S3Event(
        bucket=bucket,
        key=key,
        event_name=event_name,
        event_time=(modified or datetime.now(UTC)).astimezone(UTC),
        size=size,
        etag=etag,
        version_id=version_id,
        region=region,
        flavour=flavour,
    )
    return replace(event, raw=s3_record(event))


def s3_record(event: S3Event) -> dict[str, Any]:
    """The S3-format record describing `event` (key URL-encoded, as S3 sends it)."""
    obj: dict[str, Any] = {"key": quote_plus(event.key, safe="/")}
    if event.size is not None:
        obj["size"] = event.size
    if event.etag is not None:
        obj["eTag"] = event.etag
    if event.version_id is not None:
        obj["versionId"] = event.version_id
    if event.sequencer is not None:
        obj["sequencer"] = event.sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": f"autoinfer:{event.flavour}",
        "awsRegion": event.region or "",
        "eventTime": event.event_time.astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "eventName": event.event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": event.bucket, "arn": f"arn:aws:s3:::{event.bucket}"},
            "object": obj,
        },
    }


# --- internals ------------------------------------------------------------------------


def _load(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
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
    if not isinstance(body, dict):
        raise EventError(f"body must be a JSON object, got {type(body).__name__}")
    return body


def _mapping(parent: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = parent.get(name)
    if value is None:
        raise EventError(f"{where}.{name}: missing")
    if not isinstance(value, dict):
        raise EventError(f"{where}.{name}: must be an object, got {type(value).__name__}")
    return value


def _string(parent: dict[str, Any], name: str, where: str, *, required: bool = False) -> Any:
    """A string field; missing or empty gives None (or EventError when `required`)."""
    value = parent.get(name)
    if value is None or value == "":
        if required:
            raise EventError(f"{where}.{name}: missing")
        return None
    if not isinstance(value, str):
        raise EventError(f"{where}.{name}: must be a string, got {type(value).__name__}")
    return value


def _size(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)  # Ceph RGW sends sizes as strings
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EventError(f"{where}: must be a non-negative integer, got {value!r}")
    return value


def _timestamp(value: Any, where: str) -> datetime:
    if value is None or value == "":
        raise EventError(f"{where}: missing")
    if not isinstance(value, str):
        raise EventError(f"{where}: must be an ISO 8601 string, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(f"{where}: not an ISO 8601 timestamp: {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _flavour(record: dict[str, Any], minio_shaped: bool) -> Flavour:
    source = str(record.get("eventSource", ""))
    if source.startswith("ceph:") or "opaqueData" in record:
        return "ceph"
    if source.startswith("minio:") or minio_shaped or "source" in record:
        return "minio"
    if source.startswith("autoinfer:"):
        return "local"
    return "aws"
