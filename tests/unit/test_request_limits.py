"""Pure parts of the request limits: which cap a route gets, and what is kept of a raw record."""

from __future__ import annotations

import json

from autoinfer.api.limits import LimitsConfig, describe_size
from autoinfer.events.stored_record import MAX_RECORD_BYTES, stored_record


def test_each_route_gets_its_own_body_cap() -> None:
    limits = LimitsConfig()
    assert limits.body_cap("POST", "/v1/jobs") == 256 * 1024
    assert limits.body_cap("POST", "/v1/keys") == 64 * 1024
    assert limits.body_cap("PUT", "/v1/secrets/{name}") == 64 * 1024
    assert limits.body_cap("POST", "/v1/events/s3") == 16 * 1024 * 1024
    assert limits.body_cap("PUT", "/v1/triggers/{name}") == 1024 * 1024


def test_sizes_are_written_as_people_write_them() -> None:
    assert [describe_size(n) for n in (256 * 1024, 16 * 1024 * 1024, 1500)] == [
        "256 KiB",
        "16 MiB",
        "1500 bytes",
    ]


def test_a_normal_record_is_stored_as_it_came() -> None:
    record = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "incoming/x.zip"}}}
    assert stored_record(record) == record
    assert stored_record({}) is None


def test_large_values_are_cut_with_a_marker_and_known_fields_kept() -> None:
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"object": {"key": "k" * 1024}},
        "long": "x" * 100_000,
        "many": list(range(1000)),
        "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
    }
    stored = stored_record(record)
    assert stored is not None
    assert stored["s3"]["object"]["key"] == "k" * 1024
    assert stored["long"].endswith("…[truncated: 95904 chars]")
    assert stored["many"][-1] == "…[truncated: 900 more items]"
    assert "nested deeper than 8" in json.dumps(stored)


def test_a_record_still_too_large_keeps_only_the_s3_fields() -> None:
    record = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "x"}}}
    record.update({f"extra{i}": "y" * 4000 for i in range(99)})
    stored = stored_record(record)
    assert stored is not None
    assert len(json.dumps(stored).encode()) <= MAX_RECORD_BYTES
    assert stored["s3"] == {"object": {"key": "x"}}
    assert stored["_truncated"].startswith("…[truncated: 99 other fields")
