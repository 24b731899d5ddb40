"""S3-format storage notifications (AWS, MinIO, Ceph RGW) parsed into one event type.

Pure logic, no I/O: every source (watcher, webhook, poller, SQS) produces `S3Event`s, either
by parsing a notification body with `parse_notification` or by describing an object it saw
with `object_created`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Literal
from urllib.parse import quote_plus, unquote_plus

from autoinfer.errors import EventError
from autoinfer.events.limits import (
    MAX_BUCKET_CHARS,
    MAX_ETAG_CHARS,
    MAX_EVENT_NAME_CHARS,
    MAX_KEY_BYTES,
    MAX_OBJECT_SIZE,
    MAX_RECORD_DEPTH,
    MAX_RECORDS,
    MAX_REGION_CHARS,
    MAX_SEQUENCER_CHARS,
    MAX_VERSION_ID_CHARS,
    check_tree,
    load_body,
    mapping_field,
    size_field,
    string_field,
    timestamp_field,
)

__all__ = [
    "MAX_BUCKET_CHARS",
    "MAX_ETAG_CHARS",
    "MAX_EVENT_NAME_CHARS",
    "MAX_KEY_BYTES",
    "MAX_OBJECT_SIZE",
    "MAX_RECORDS",
    "MAX_RECORD_DEPTH",
    "MAX_REGION_CHARS",
    "MAX_SEQUENCER_CHARS",
    "MAX_VERSION_ID_CHARS",
    "Notification",
    "RejectedRecord",
    "S3Event",
    "aws_key_encoding",
    "canonical_record",
    "check_key",
    "decode_key",
    "event_matches",
    "normalise_event_name",
    "object_created",
    "parse_notification",
    "parse_record",
    "s3_record",
]

Flavour = Literal["aws", "minio", "ceph", "local"]

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
        """The S3-format notification holding only this event, as a Lambda handler receives it:
        the record as the store sent it, its key in AWS's encoding (`canonical_record`)."""
        return {"Records": [canonical_record(self)]}


@dataclass(frozen=True)
class RejectedRecord:
    """A record of a notification that could not be stored: where it was, why, and the record
    itself (what the store sent, kept for the operator)."""

    index: int
    reason: str
    record: Any = field(compare=False, repr=False)

    def excerpt(self, limit: int = 2000) -> str:
        """The record as JSON, cut at `limit` characters (what the inbox keeps of it)."""
        try:
            text = json.dumps(self.record, default=str)
        except (RecursionError, ValueError, TypeError):
            text = repr(self.record)[:limit]
        return text[:limit]


@dataclass(frozen=True)
class Notification:
    """A parsed notification body: its events, or an S3 `s3:TestEvent` with none.

    `rejected` lists the records that could not be parsed when others could: the good ones
    are stored, the bad ones recorded as rejected (a body with no good record at all raises).
    """

    events: list[S3Event]
    test_event: bool = False
    rejected: list[RejectedRecord] = field(default_factory=list)


def parse_notification(
    body: bytes | str | dict[str, Any], *, max_records: int = MAX_RECORDS
) -> Notification:
    """Parse an S3 / MinIO / Ceph notification; EventError names the first thing wrong.

    A body whose every record is bad raises (naming the first); one with good and bad records
    returns the good ones as `events` and the others in `rejected`, each with its reason.
    """
    document = load_body(body)
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
    events: list[S3Event] = []
    rejected: list[RejectedRecord] = []
    for index, record in enumerate(records):
        try:
            events.append(
                parse_record(record, where=f"Records[{index}]", minio_shaped=minio_shaped)
            )
        except EventError as error:
            rejected.append(RejectedRecord(index, str(error), record))
    if rejected and not events:
        raise EventError(rejected[0].reason)
    return Notification(events=events, rejected=rejected)


def parse_record(record: Any, *, where: str = "record", minio_shaped: bool = False) -> S3Event:
    """One `Records[]` entry → S3Event; `where` prefixes error messages.

    Every field is checked against what the inbox can store (lengths, the size's range, valid
    Unicode, bounded nesting): any failure is an EventError naming the record and the field.
    """
    try:
        return _parse_record(record, where, minio_shaped)
    except EventError:
        raise
    except (RecursionError, ValueError, OverflowError, TypeError, UnicodeError) as error:
        raise EventError(f"{where}: cannot be read: {type(error).__name__}: {error}") from None


def _parse_record(record: Any, where: str, minio_shaped: bool) -> S3Event:
    if not isinstance(record, dict):
        raise EventError(f"{where}: must be an object, got {type(record).__name__}")
    check_tree(record, where)
    event_name = normalise_event_name(
        string_field(record, "eventName", where, required=True, limit=MAX_EVENT_NAME_CHARS)
    )
    event_time = timestamp_field(record.get("eventTime"), f"{where}.eventTime")
    s3 = mapping_field(record, "s3", where)
    bucket_info = mapping_field(s3, "bucket", f"{where}.s3")
    bucket = string_field(
        bucket_info, "name", f"{where}.s3.bucket", required=True, limit=MAX_BUCKET_CHARS
    )
    obj = mapping_field(s3, "object", f"{where}.s3")
    raw_key = string_field(obj, "key", f"{where}.s3.object", required=True, limit=3 * MAX_KEY_BYTES)
    key = decode_key(raw_key, f"{where}.s3.object.key")
    at = f"{where}.s3.object"
    etag = string_field(obj, "eTag", at, limit=MAX_ETAG_CHARS) or string_field(
        obj, "etag", at, limit=MAX_ETAG_CHARS
    )
    if etag is not None:
        etag = etag.strip('"') or None
    version_id = string_field(obj, "versionId", at, limit=MAX_VERSION_ID_CHARS)
    return S3Event(
        bucket=bucket,
        key=key,
        event_name=event_name,
        event_time=event_time,
        size=size_field(obj.get("size"), f"{where}.s3.object.size"),
        etag=etag,
        # S3's "null" version is what unversioned writes get: it names no particular version.
        version_id=None if version_id in (None, "null") else version_id,
        sequencer=string_field(obj, "sequencer", at, limit=MAX_SEQUENCER_CHARS),
        region=string_field(record, "awsRegion", where, limit=MAX_REGION_CHARS),
        flavour=_flavour(record, minio_shaped),
        raw=record,
    )


def parse_message_body(body: str) -> Notification:
    """An SQS message's S3 notification: the body itself, or the `Message` of an SNS
    envelope (S3 → SNS → SQS without raw delivery). EventError names what is wrong."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return parse_notification(body)  # raises the parser's own "not JSON" error
    except RecursionError:
        raise EventError("body is not JSON this service reads: nested too deeply") from None
    if isinstance(document, dict) and document.get("Type") == "Notification":
        message = document.get("Message")
        if not isinstance(message, str):
            raise EventError("SNS envelope: Message must be a string holding the S3 notification")
        return parse_notification(message)
    return parse_notification(document)


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
    """EventError unless `key` is a usable object key (non-empty, valid UTF-8, ≤ 1024 bytes,
    no NUL)."""
    if not key:
        raise EventError(f"{where}: empty")
    if "\x00" in key:
        raise EventError(f"{where}: contains a NUL character")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a file name of bytes that are not UTF-8 (surrogate escapes)
        raise EventError(f"{where}: {key!r} is not valid UTF-8") from None
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


def aws_key_encoding(key: str) -> str:
    """`key` as AWS writes it in a notification: form-encoded (`application/x-www-form-urlencoded`,
    as Java's URLEncoder does it) except that `/` stays literal. Letters, digits and `.-_*` are
    kept, a space becomes `+`, every other character the `%XX` of its UTF-8 bytes (`+` → `%2B`,
    `=` → `%3D`, `:` → `%3A`, `~` → `%7E`, `é` → `%C3%A9`): `incoming/my photo (1).zip` →
    `incoming/my+photo+%281%29.zip`."""
    return quote_plus(key, safe="/*").replace("~", "%7E")


def canonical_record(event: S3Event) -> dict[str, Any]:
    """The record a Lambda-style handler gets: a copy of the one the store sent, with
    `s3.object.key` re-encoded from the decoded key as AWS encodes it (MinIO and moto write
    `incoming%2Fx.zip` where AWS writes `incoming/x.zip`), so code written for AWS reads the
    key it expects. A record without an `s3.object` is described afresh (`s3_record`)."""
    record = copy.deepcopy(event.raw) if event.raw else {}
    s3 = record.get("s3")
    obj = s3.get("object") if isinstance(s3, dict) else None
    if not isinstance(obj, dict):
        return s3_record(event)
    obj["key"] = aws_key_encoding(event.key)
    return record


def s3_record(event: S3Event) -> dict[str, Any]:
    """The S3-format record describing `event` (key encoded as AWS sends it)."""
    obj: dict[str, Any] = {"key": aws_key_encoding(event.key)}
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


def _flavour(record: dict[str, Any], minio_shaped: bool) -> Flavour:
    source = str(record.get("eventSource", ""))
    if source.startswith("ceph:") or "opaqueData" in record:
        return "ceph"
    if source.startswith("minio:") or minio_shaped or "source" in record:
        return "minio"
    if source.startswith("autoinfer:"):
        return "local"
    return "aws"
