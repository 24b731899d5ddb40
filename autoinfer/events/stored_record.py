"""What the inbox keeps of an event's raw record: bounded, whatever the sender put in it.

A record's known S3 fields are small once `parse_record` has checked them, but a sender may add
anything beside them. Before a record is stored, every string longer than `MAX_STRING_CHARS`,
every list or object with more than `MAX_ITEMS` entries and anything nested deeper than
`MAX_DEPTH` is cut, with a marker saying how much was left out; if the record is still larger
than `MAX_RECORD_BYTES`, the fields S3 does not define are replaced by one marker. The columns
(bucket, key, size, ETag...) are stored apart and never cut.
"""

from __future__ import annotations

import json
from typing import Any

MAX_STRING_CHARS = 4096  # an S3 key (1024 bytes) percent-encoded fits
MAX_ITEMS = 100
MAX_DEPTH = 8
MAX_RECORD_BYTES = 64 * 1024
#: The top-level fields of an S3 / MinIO event record, kept when the rest must go.
KNOWN_FIELDS = frozenset(
    {
        "eventVersion",
        "eventSource",
        "awsRegion",
        "eventTime",
        "eventName",
        "userIdentity",
        "requestParameters",
        "responseElements",
        "s3",
        "source",
        "glacierEventData",
    }
)
TRUNCATED = "…[truncated: {}]"


def stored_record(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """`raw` bounded as described above; None for an empty record."""
    if not raw:
        return None
    bounded = _bound(raw, 0)
    if _size(bounded) <= MAX_RECORD_BYTES:
        return bounded
    known = {k: v for k, v in bounded.items() if k in KNOWN_FIELDS}
    dropped = len(bounded) - len(known)
    known["_truncated"] = TRUNCATED.format(
        f"{dropped} other fields, record over {MAX_RECORD_BYTES} bytes"
    )
    if _size(known) <= MAX_RECORD_BYTES:
        return known
    return {"_truncated": TRUNCATED.format(f"record over {MAX_RECORD_BYTES} bytes")}


def _bound(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        if len(value) <= MAX_STRING_CHARS:
            return value
        return value[:MAX_STRING_CHARS] + TRUNCATED.format(f"{len(value) - MAX_STRING_CHARS} chars")
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        return TRUNCATED.format(f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        items = list(value.items())
        bounded = {str(k)[:MAX_STRING_CHARS]: _bound(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            bounded["_truncated"] = TRUNCATED.format(f"{len(items) - MAX_ITEMS} more fields")
        return bounded
    if isinstance(value, list):
        bounded_list = [_bound(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            bounded_list.append(TRUNCATED.format(f"{len(value) - MAX_ITEMS} more items"))
        return bounded_list
    return value


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())
