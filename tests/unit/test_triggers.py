"""Trigger rules: matching, template rendering, handlers, and the loop and bucket guards."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from autoinfer.config import Config, TriggerConfig
from autoinfer.errors import ConfigError, SpecError
from autoinfer.events.model import S3Event
from autoinfer.jobs.spec import safe_file_name
from autoinfer.storage.local import LocalStore
from autoinfer.triggers import (
    LambdaContext,
    S3Locator,
    Trigger,
    current_idempotency_key,
    job_name,
    key_stem,
)
from autoinfer.triggers.guards import check_buckets, check_loops

TEMPLATE = {
    "name": "{key_stem}",
    "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
    "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
}


def rule(**fields: Any) -> Trigger:
    settings: dict[str, Any] = {
        "name": "classify-incoming",
        "bucket": "data",
        "prefix": "incoming/",
        "suffix": ".zip",
        "job": TEMPLATE,
    }
    settings.update(fields)
    return Trigger(TriggerConfig(**settings))


def event(key: str = "incoming/images-X.zip", **fields: Any) -> S3Event:
    values: dict[str, Any] = {
        "bucket": "data",
        "key": key,
        "event_name": "ObjectCreated:Put",
        "event_time": datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
        "etag": "md5",
    }
    values.update(fields)
    return S3Event(**values)


# --- matching ---------------------------------------------------------------------------


def test_rule_matches_bucket_prefix_suffix_and_event_name() -> None:
    trigger = rule()
    assert trigger.matches(event())
    assert not trigger.matches(event(bucket="other"))
    assert not trigger.matches(event("processed/images-X.zip"))
    assert not trigger.matches(event("incoming/images-X.tar"))
    assert not trigger.matches(event(event_name="ObjectRemoved:Delete"))


def test_event_patterns_accept_the_s3_prefix() -> None:
    trigger = rule(events=["s3:ObjectCreated:Put"])
    assert trigger.matches(event(event_name="ObjectCreated:Put"))
    assert not trigger.matches(event(event_name="ObjectCreated:Copy"))


def test_folder_markers_never_match() -> None:
    assert not rule(suffix="").matches(event("incoming/sub/"))


# --- rendering --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "prefix", "stem"),
    [
        ("incoming/images-X.zip", "incoming/", "images-X"),
        ("incoming/images-2026-11-24_10-00-00.zip", "incoming/", "images-2026-11-24_10-00-00"),
        ("incoming/a.b.zip", "incoming/", "a.b"),
        ("incoming/my photos été.zip", "incoming/", "my photos été"),
    ],
)
def test_key_stem_of_a_plain_zip_name_is_the_name_without_zip(
    key: str, prefix: str, stem: str
) -> None:
    assert key_stem(key, prefix) == stem


@pytest.mark.parametrize(
    ("key", "prefix", "readable"),
    [
        ("incoming/photos.tar.gz", "incoming/", "photos.tar.gz"),
        ("incoming/X.ZIP", "incoming/", "X.ZIP"),
        ("incoming/sub/x.zip", "incoming/", "sub_x.zip"),
        ("incoming/x.zip", "", "incoming_x.zip"),
        ("incoming/.hidden", "incoming/", "hidden"),
        ("incoming/README", "incoming/", "README"),
        ("incoming/a~b.zip", "incoming/", "a~b.zip"),
        ("incoming/\x1b[31mred.zip", "incoming/", "_[31mred.zip"),
        ("incoming/" + "k" * 200 + ".zip", "incoming/", "k" * 100),
    ],
)
def test_key_stem_of_any_other_key_is_its_whole_name_and_a_hash_of_the_key(
    key: str, prefix: str, readable: str
) -> None:
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    assert key_stem(key, prefix) == f"{readable}~{digest}"


def test_different_objects_never_share_a_stem_or_an_output_file() -> None:
    keys = [
        "incoming/x.zip",
        "incoming/x.tar.gz",
        "incoming/x.tgz",
        "incoming/x",
        "incoming/a/b.zip",
        "incoming/a_b.zip",
        "incoming/a\\b.zip",
        "incoming/x.tar.gz.zip",
        "incoming/.x.zip",
    ]
    stems = [key_stem(key, "incoming/") for key in keys]
    assert len(set(stems)) == len(keys)
    assert len({safe_file_name(job_name(stem)) for stem in stems}) == len(keys)
    assert key_stem("incoming/x.tar.gz", "incoming/") == key_stem("incoming/x.tar.gz", "incoming/")


def test_safe_file_name_keeps_safe_names_and_hashes_the_others() -> None:
    assert safe_file_name("images-X") == "images-X"
    assert safe_file_name("a/b") == "a_b~" + hashlib.sha256(b"a/b").hexdigest()[:8]
    assert safe_file_name("a/b") != safe_file_name("a_b")
    assert safe_file_name("../x").startswith("_x~")


def test_reference_workflow_job_is_named_after_the_object() -> None:
    spec = rule().render(event(), S3Locator())
    assert spec.name == "images-X"
    assert spec.data.input_uri == "s3://data/incoming/images-X.zip"
    assert spec.data.output_uri == "s3://data/processed"
    assert spec.data.input_type == "aws"
    assert spec.model.source_uri == "efficientnet_lite0"


def test_local_store_objects_render_as_file_uris(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "buckets")
    spec = rule().render(event("incoming/my photos été.zip"), store)
    assert spec.name == "my photos été"
    assert spec.data.input_uri == (tmp_path / "buckets/data/incoming/my photos été.zip").as_uri()
    assert spec.data.output_uri == (tmp_path / "buckets/data/processed").as_uri()


def test_every_string_of_the_template_is_rendered_and_defaults_are_filled() -> None:
    template = {
        "data": {"output_uri": "s3://results/{key_stem}"},
        "environment": {
            "env": [{"key": "SOURCE", "value": "{bucket}/{key} at {event_time} {{literal}}"}]
        },
    }
    spec = rule(job=template).render(event(), S3Locator())
    assert spec.name == "images-X"  # default name
    assert spec.data.input_uri == "s3://data/incoming/images-X.zip"  # default input
    assert spec.data.output_uri == "s3://results/images-X"
    assert (
        spec.environment.env[0].value
        == "data/incoming/images-X.zip at 2026-11-24T10:00:00Z {literal}"
    )


def test_unknown_placeholder_is_refused_at_start() -> None:
    job = {**TEMPLATE, "name": "{file_name}"}
    with pytest.raises(
        ConfigError,
        match=r"trigger 'classify-incoming': job.name: unknown placeholder \{file_name\}",
    ):
        rule(job=job)


def test_template_without_output_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="output_uri"):
        rule(job={"name": "{key_stem}", "data": {"input_uri": "{uri}"}})


def test_event_that_cannot_be_rendered_fails_with_the_trigger_named(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "buckets")
    with pytest.raises(SpecError, match=r"trigger 'classify-incoming': .*'\.\.' is not allowed"):
        rule().render(event("incoming/../../../etc/x.zip"), store)


def test_a_trigger_needs_exactly_one_of_job_or_handler() -> None:
    with pytest.raises(ConfigError, match="exactly one of `job`"):
        rule(job=None)
    with pytest.raises(ConfigError, match="exactly one of `job`"):
        rule(handler="x:y")


# --- handlers ---------------------------------------------------------------------------


def write_handler(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text(textwrap.dedent(body))


def test_handler_file_beside_the_config_is_called_lambda_style(tmp_path: Path) -> None:
    write_handler(
        tmp_path,
        "my_handler.py",
        """
        from urllib.parse import unquote_plus
        from autoinfer.triggers import current_idempotency_key
        calls = []

        def lambda_handler(event, context):
            record = event["Records"][0]
            calls.append({
                "bucket": record["s3"]["bucket"]["name"],
                "key": unquote_plus(record["s3"]["object"]["key"]),
                "function_name": context.function_name,
                "request_id": context.aws_request_id,
                "remaining": context.get_remaining_time_in_millis(),
                "idempotency_key": current_idempotency_key.get(),
            })
            return {"statusCode": 200}
        """,
    )
    config = TriggerConfig(name="lambda", bucket="data", handler="my_handler:lambda_handler")
    trigger = Trigger(config, base_dir=tmp_path)
    assert trigger.kind == "handler"
    the_event = event("incoming/my photos.zip", raw={})
    result = trigger.call_handler(
        the_event, LambdaContext(function_name="lambda", aws_request_id="17")
    )
    assert result == {"statusCode": 200}
    [call] = trigger.handler.__globals__["calls"]  # type: ignore[union-attr]
    assert call["bucket"] == "data"
    assert call["key"] == "incoming/my photos.zip"
    assert (call["function_name"], call["request_id"]) == ("lambda", "17")
    assert call["remaining"] > 0
    assert call["idempotency_key"] == trigger.idempotency_key(the_event)
    assert current_idempotency_key.get() is None  # reset after the call


def test_async_handler_given_as_a_path_is_awaited(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    write_handler(
        tmp_path / "handlers",
        "on_upload.py",
        """
        import asyncio

        async def handle(event, context):
            await asyncio.sleep(0)
            return event["Records"][0]["s3"]["object"]["key"]
        """,
    )
    trigger = Trigger(
        TriggerConfig(name="h", bucket="data", handler="handlers/on_upload.py:handle"),
        base_dir=tmp_path,
    )
    assert (
        trigger.call_handler(event("incoming/a b.zip", raw={}), LambdaContext("h", "1"))
        == "incoming/a+b.zip"
    )


def test_the_same_event_gives_a_handler_the_same_idempotency_key() -> None:
    trigger = rule()
    assert trigger.idempotency_key(event()) == trigger.idempotency_key(event(sequencer="other"))
    assert trigger.idempotency_key(event()) != trigger.idempotency_key(event(etag="new-content"))
    assert trigger.idempotency_key(event()).isalnum()  # safe in an HTTP header


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_colon", "write it as 'module:function'"),
        ("missing_module_xyz:handler", "no module 'missing_module_xyz'"),
        ("broken:handler", "importing 'broken' failed: ModuleNotFoundError"),
        ("fine:absent", "'fine' has no 'absent'"),
        ("nowhere.py:handler", "does not exist"),
    ],
)
def test_unloadable_handler_is_refused_at_start(
    tmp_path: Path, reference: str, message: str
) -> None:
    write_handler(tmp_path, "broken.py", "import trainml_sdk_that_is_not_installed\n")
    write_handler(tmp_path, "fine.py", "def handler(event, context):\n    return None\n")
    with pytest.raises(ConfigError, match=message):
        Trigger(TriggerConfig(name="h", bucket="data", handler=reference), base_dir=tmp_path)


# --- loop guard -------------------------------------------------------------------------


def test_rule_writing_into_its_own_input_is_refused() -> None:
    looping = rule(prefix="", suffix=".zip")
    with pytest.raises(
        ConfigError,
        match=r"writes its outputs to s3://data/processed .* which its own input watches",
    ):
        check_loops([looping])


def test_rule_writing_where_another_rule_listens_is_refused() -> None:
    first = rule()
    second = rule(name="reprocess", prefix="processed/", suffix="")
    with pytest.raises(
        ConfigError,
        match=r"trigger 'classify-incoming' writes .* which trigger 'reprocess' watches",
    ):
        check_loops([first, second])


def test_reference_workflow_rule_is_accepted() -> None:
    check_loops([rule()])


def test_outputs_that_the_suffix_filters_out_are_no_loop() -> None:
    check_loops([rule(prefix="", suffix=".tar")])  # outputs are .zip archives


def test_outputs_at_the_bucket_root_do_not_reach_a_subfolder_trigger() -> None:
    job = {**TEMPLATE, "data": {"output_uri": "{bucket_uri}"}}
    check_loops([rule(job=job)])  # archives land as data/<name>.zip, never under incoming/


def test_unarchived_outputs_under_the_input_prefix_are_refused() -> None:
    job = {
        **TEMPLATE,
        "data": {"output_uri": "{bucket_uri}/incoming/out", "output_options": {"archive": False}},
    }
    with pytest.raises(ConfigError, match="its own input"):
        check_loops([rule(job=job, suffix="")])


def test_event_dependent_output_under_the_input_is_refused() -> None:
    job = {**TEMPLATE, "data": {"output_uri": "{uri}.results"}}
    with pytest.raises(ConfigError, match="its own input"):
        check_loops([rule(job=job, suffix="")])


def test_loop_through_a_local_store_file_uri_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "buckets")
    looping = rule(prefix="", suffix="")
    with pytest.raises(ConfigError, match="its own input"):
        check_loops([looping], [store, S3Locator()])


def test_rule_only_for_removals_is_no_loop() -> None:
    check_loops([rule(prefix="", events=["ObjectRemoved:*"])])


# --- bucket guard -----------------------------------------------------------------------


def test_trigger_on_a_bucket_no_store_knows_is_refused(tmp_path: Path) -> None:
    (tmp_path / "buckets" / "data").mkdir(parents=True)
    config = Config.model_validate(
        {
            "stores": {"local": {"type": "local", "root": str(tmp_path / "buckets")}},
            "sources": [{"type": "watch"}],
        }
    )
    store = LocalStore(tmp_path / "buckets", name="local")
    check_buckets([rule()], config, {"local": store})
    with pytest.raises(
        ConfigError,
        match=r"bucket 'dta' is not served .* \(known buckets: data\); create the folder",
    ):
        check_buckets([rule(bucket="dta")], config, {"local": store})


def test_any_bucket_is_accepted_when_a_webhook_can_report_it(tmp_path: Path) -> None:
    config = Config.model_validate({"sources": [{"type": "webhook", "token": "t"}]})
    check_buckets([rule(bucket="anything")], config, {})
