"""The S3-format event model: AWS, MinIO and Ceph notifications, key decoding, identity."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoinfer.errors import EventError
from autoinfer.events.model import (
    MAX_KEY_BYTES,
    S3Event,
    decode_key,
    event_matches,
    object_created,
    parse_notification,
)

SEED_EVENT = Path(__file__).resolve().parents[1] / "data" / "example_event.json"


def minio_notification() -> dict:
    """What MinIO's webhook target sends (one record, `s3:`-prefixed names, userMetadata)."""
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": "data/incoming/images-1.zip",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "",
                "eventTime": "2026-11-24T10:00:00.123Z",
                "eventName": "s3:ObjectCreated:Put",
                "userIdentity": {"principalId": "minioadmin"},
                "requestParameters": {
                    "principalId": "minioadmin",
                    "region": "",
                    "sourceIPAddress": "127.0.0.1",
                },
                "responseElements": {
                    "x-amz-request-id": "17A9",
                    "x-minio-origin-endpoint": "http://127.0.0.1:9000",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "Config",
                    "bucket": {
                        "name": "data",
                        "ownerIdentity": {"principalId": "minioadmin"},
                        "arn": "arn:aws:s3:::data",
                    },
                    "object": {
                        "key": "incoming%2Fimages-1.zip",
                        "size": 2048,
                        "eTag": '"0cc175b9c0f1b6a831c399e269772661"',
                        "contentType": "application/zip",
                        "userMetadata": {"content-type": "application/zip"},
                        "sequencer": "17A9E1B2C3D4",
                    },
                },
                "source": {
                    "host": "127.0.0.1",
                    "port": "",
                    "userAgent": "MinIO (linux; amd64) minio-py/7.2",
                },
            }
        ],
    }


def ceph_notification() -> dict:
    """What Ceph RGW's HTTP endpoint sends (sizes as strings, empty versionId, opaqueData)."""
    return {
        "Records": [
            {
                "eventVersion": "2.2",
                "eventSource": "ceph:s3",
                "awsRegion": "default",
                "eventTime": "2026-11-24T10:00:00.124724Z",
                "eventName": "ObjectCreated:CompleteMultipartUpload",
                "userIdentity": {"principalId": "tester"},
                "requestParameters": {"sourceIPAddress": ""},
                "responseElements": {
                    "x-amz-request-id": "503a.5330.9035",
                    "x-amz-id-2": "14d2-zone1",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "incoming-zips",
                    "bucket": {
                        "name": "data",
                        "ownerIdentity": {"principalId": "tester"},
                        "arn": "arn:aws:s3:default::data",
                        "id": "503a.5332.38",
                    },
                    "object": {
                        "key": "incoming/big+archive.zip",
                        "size": "73400320",
                        "eTag": "9b2cf535f27731c974343645a3985328-14",
                        "versionId": "",
                        "sequencer": "F7E6D75DC742D108",
                        "metadata": [],
                        "tags": [],
                        "id": "503a.5332.38.57",
                    },
                },
                "eventId": "1574430455.124724.9b2cf535",
                "opaqueData": "me@example.com",
            }
        ]
    }


def aws_record(key: str = "incoming/x.zip", **object_fields: object) -> dict:
    obj = {"key": key, "size": 10, "eTag": "abc", **object_fields}
    return {
        "eventSource": "aws:s3",
        "eventTime": "2026-11-24T10:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "data"}, "object": obj},
    }


def test_seed_example_event_parses_into_one_created_event() -> None:
    notification = parse_notification(SEED_EVENT.read_bytes())
    assert not notification.test_event
    [event] = notification.events
    assert event.bucket == "trainml-inference-s3-trigger-example-databucket-12zpfx5fsi3fi"
    assert event.key == "incoming/image.png"
    assert event.event_name == "ObjectCreated:Put"
    assert event.event_time == datetime(2021, 7, 9, 20, 3, 22, 770000, tzinfo=UTC)
    assert event.size == 13189
    assert event.region == "us-east-1"
    assert event.flavour == "aws"
    assert event.raw == json.loads(SEED_EVENT.read_text())["Records"][0]


def test_minio_shaped_event_parses_with_prefix_stripped_and_etag_unquoted() -> None:
    [event] = parse_notification(minio_notification()).events
    assert event.flavour == "minio"
    assert (event.bucket, event.key) == ("data", "incoming/images-1.zip")
    assert event.event_name == "ObjectCreated:Put"
    assert event.etag == "0cc175b9c0f1b6a831c399e269772661"
    assert event.region is None
    assert event.sequencer == "17A9E1B2C3D4"


def test_ceph_shaped_event_parses_string_size_and_empty_version() -> None:
    [event] = parse_notification(json.dumps(ceph_notification())).events
    assert event.flavour == "ceph"
    assert event.key == "incoming/big archive.zip"
    assert event.size == 73400320
    assert event.version_id is None
    assert event.etag == "9b2cf535f27731c974343645a3985328-14"
    assert event.event_name == "ObjectCreated:CompleteMultipartUpload"
    assert event.event_time.microsecond == 124724


def test_url_encoded_key_is_decoded() -> None:
    record = aws_record("incoming/my+photos+%C3%A9t%C3%A9.zip")
    [event] = parse_notification({"Records": [record]}).events
    assert event.key == "incoming/my photos été.zip"
    assert decode_key("a%2Bb+c") == "a+b c"


def test_s3_test_event_has_no_events() -> None:
    body = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-24T10:00:00Z",
        "Bucket": "data",
    }
    notification = parse_notification(body)
    assert notification.test_event
    assert notification.events == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not JSON"),
        (b"\xff\xfe", "body is not UTF-8"),
        (b"", "body is empty"),
        (b"[1, 2]", "body must be a JSON object"),
        (b"{}", "Records: missing"),
        (b'{"Records": {"a": 1}}', "Records must be a list"),
        (b'{"Records": [42]}', r"Records\[0\]: must be an object"),
    ],
)
def test_malformed_body_names_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_notification(body)


def test_missing_field_is_named_with_its_record_index() -> None:
    records = [aws_record() for _ in range(4)]
    for record in records:
        del record["s3"]["object"]["key"]
    with pytest.raises(EventError, match=r"^Records\[0\]\.s3\.object\.key: missing$"):
        parse_notification({"Records": records})


def test_good_records_are_kept_and_bad_ones_listed_with_index_and_field() -> None:
    records = [aws_record(f"incoming/{i}.zip") for i in range(4)]
    records[1]["s3"]["object"]["size"] = 2**63
    del records[3]["s3"]["object"]["key"]
    notification = parse_notification({"Records": records})
    assert [e.key for e in notification.events] == ["incoming/0.zip", "incoming/2.zip"]
    assert [(r.index, r.reason) for r in notification.rejected] == [
        (
            1,
            (
                "Records[1].s3.object.size: 9223372036854775808 is more than the largest size "
                "stored (2^63 - 1)"
            ),
        ),
        (3, "Records[3].s3.object.key: missing"),
    ]
    assert '"eventName"' in notification.rejected[0].excerpt()


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["s3"]["object"].update(size=2**63), r"size: 9223372036854775808 is more"),
        (lambda r: r["s3"]["object"].update(size="99999999999999999999"), r"size: 99999999999"),
        (lambda r: r["s3"]["object"].update(size="²"), r"size: must be a non-negative integer"),
        (lambda r: r["s3"]["object"].update(eTag="e" * 201), r"eTag: 201 characters long"),
        (lambda r: r["s3"]["object"].update(sequencer="s" * 201), r"sequencer: 201 characters"),
        (lambda r: r["s3"]["object"].update(versionId="v" * 1025), r"versionId: 1025 characters"),
        (lambda r: r["s3"]["bucket"].update(name="b" * 256), r"bucket\.name: 256 characters"),
        (lambda r: r.update(eventName="ObjectCreated:" + "P" * 100), r"eventName: 114 characters"),
        (lambda r: r["s3"]["bucket"].update(name="a\x00b"), r"bucket\.name: contains a NUL"),
        (lambda r: r.update(eventTime="0001-01-01T00:00:00+01:00"), r"eventTime: .* out of the"),
        (lambda r: r.update(extra=_nested(100)), r"Records\[0\]: nested more than 32 levels"),
        (lambda r: r.update(extra="\ud800"), r"Records\[0\]: holds a string that is not valid"),
    ],
)
def test_fields_the_store_cannot_hold_are_named(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    record = aws_record()
    mutate(record)
    with pytest.raises(EventError, match=message):
        parse_notification({"Records": [record]})


def test_deeply_nested_json_is_an_event_error_not_a_recursion_error() -> None:
    body = '{"Records": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(EventError, match="nested too deeply"):
        parse_notification(body)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("eventName"), r"Records\[0\]\.eventName: missing"),
        (lambda r: r.update(eventTime="yesterday"), r"Records\[0\]\.eventTime: not an ISO 8601"),
        (lambda r: r["s3"].pop("bucket"), r"Records\[0\]\.s3\.bucket: missing"),
        (lambda r: r["s3"]["object"].update(size=-1), r"Records\[0\]\.s3\.object\.size: must be"),
        (
            lambda r: r["s3"]["object"].update(key=7),
            r"Records\[0\]\.s3\.object\.key: must be a string",
        ),
        (
            lambda r: r["s3"]["object"].update(key="a%00b"),
            r"Records\[0\]\.s3\.object\.key: contains a NUL",
        ),
    ],
)
def test_invalid_record_fields_are_named(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    record = aws_record()
    mutate(record)
    with pytest.raises(EventError, match=message):
        parse_notification({"Records": [record]})


def test_too_many_records_are_refused() -> None:
    with pytest.raises(EventError, match="3 records in one notification; at most 2"):
        parse_notification({"Records": [aws_record()] * 3}, max_records=2)


def test_key_longer_than_s3_allows_is_refused() -> None:
    too_long = "é" * (MAX_KEY_BYTES // 2 + 1)  # 2 bytes each in UTF-8
    with pytest.raises(EventError, match="bytes long; S3 keys are at most 1024 bytes"):
        parse_notification({"Records": [aws_record(too_long)]})


def _event(**fields: object) -> S3Event:
    defaults: dict = {
        "bucket": "data",
        "key": "incoming/x.zip",
        "event_name": "ObjectCreated:Put",
        "event_time": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return S3Event(**{**defaults, **fields})


def test_idempotency_key_prefers_version_then_etag_then_sequencer() -> None:
    assert (
        _event(version_id="v1", etag="e", sequencer="s").idempotency_key
        == "data\x1fincoming/x.zip\x1fv1"
    )
    assert _event(etag="e", sequencer="s").idempotency_key == "data\x1fincoming/x.zip\x1fe"
    assert _event(sequencer="s").idempotency_key == "data\x1fincoming/x.zip\x1fs"
    fallback = _event(size=5).idempotency_key
    assert fallback == "data\x1fincoming/x.zip\x1f5@2026-01-01T00:00:00+00:00"


def test_a_new_version_or_content_of_a_key_is_a_new_object() -> None:
    assert _event(etag="a").idempotency_key != _event(etag="b").idempotency_key
    assert (
        _event(version_id="1", etag="a").idempotency_key
        != _event(version_id="2", etag="a").idempotency_key
    )


def test_same_object_reported_by_different_flavours_has_one_identity() -> None:
    local = object_created("data", "incoming/x.zip", size=1, etag="md5", modified=None)
    aws = _event(
        etag="md5", sequencer="0055AED6DCD90281E5", event_time=datetime(2020, 1, 1, tzinfo=UTC)
    )
    assert local.idempotency_key == aws.idempotency_key


def test_null_version_id_counts_as_no_version() -> None:
    [event] = parse_notification({"Records": [aws_record(versionId="null")]}).events
    assert event.version_id is None
    assert event.idempotency_key.endswith("\x1fabc")


def test_removal_is_not_a_duplicate_of_creation() -> None:
    created = _event(version_id="v1")
    removed = _event(version_id="v1", event_name="ObjectRemoved:Delete")
    assert created.idempotency_key != removed.idempotency_key


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("ObjectCreated:*", "ObjectCreated:Put", True),
        ("s3:ObjectCreated:*", "ObjectCreated:Put", True),
        ("ObjectCreated:*", "s3:ObjectCreated:CompleteMultipartUpload", True),
        ("ObjectCreated:Put", "s3:ObjectCreated:Put", True),
        ("ObjectCreated:Put", "ObjectCreated:Copy", False),
        ("ObjectCreated:*", "ObjectRemoved:Delete", False),
        ("*", "ObjectRemoved:Delete", True),
    ],
)
def test_event_name_patterns(pattern: str, name: str, expected: bool) -> None:
    assert event_matches(pattern, name) is expected


def test_locally_found_object_round_trips_through_its_s3_record() -> None:
    event = object_created(
        "data",
        "incoming/my photos été.zip",
        size=3,
        etag="md5",
        modified=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert event.raw["s3"]["object"]["key"] == "incoming/my+photos+%C3%A9t%C3%A9.zip"
    [again] = parse_notification(event.notification()).events
    assert (again.bucket, again.key, again.etag, again.size) == (
        "data",
        "incoming/my photos été.zip",
        "md5",
        3,
    )
    assert again.flavour == "local"
    assert again.idempotency_key == event.idempotency_key


def test_sqs_message_nested_too_deeply_is_an_event_error() -> None:
    from autoinfer.events.sqs import parse_message_body

    with pytest.raises(EventError, match="nested too deeply"):
        parse_message_body("[" * 100_000 + "]" * 100_000)


def test_a_file_name_that_is_not_utf8_is_refused_as_a_key() -> None:
    key = b"incoming/caf\xe9.zip".decode("utf-8", errors="surrogateescape")  # as os.walk gives it
    with pytest.raises(EventError, match="is not valid UTF-8"):
        object_created("data", key, size=1, etag=None, modified=None)
