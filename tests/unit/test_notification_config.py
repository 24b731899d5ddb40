"""Notification targets as configured: defaults, filters, secrets, signatures and backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from autoinfer.config import Config
from autoinfer.errors import ConfigError
from autoinfer.notifications.config import SqsTarget, WebhookTarget
from autoinfer.notifications.delivery import retry_wait_s
from autoinfer.notifications.senders import DeliveryError, Outgoing, WebhookSender
from autoinfer.notifications.service import build_senders, validate_targets

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_target_without_a_type_is_a_webhook_for_every_terminal_event() -> None:
    config = Config.model_validate(
        {"notifications": [{"name": "done", "url": "https://h.example/x", "secret": SECRET}]}
    )
    (target,) = config.notifications
    assert isinstance(target, WebhookTarget)
    assert target.events == ["job.finished", "job.failed", "job.stopped"]
    assert target.retry_for_s == 86_400


def test_an_sqs_target_needs_a_queue_url_and_unknown_events_are_refused() -> None:
    config = Config.model_validate(
        {"notifications": [{"name": "q", "type": "sqs", "queue_url": "http://127.0.0.1:1/1/q"}]}
    )
    assert isinstance(config.notifications[0], SqsTarget)
    with pytest.raises(ValueError, match="queue_url"):
        Config.model_validate({"notifications": [{"name": "q", "type": "sqs"}]})
    with pytest.raises(ValueError, match="unknown event"):
        Config.model_validate(
            {
                "notifications": [
                    {"name": "d", "url": "http://h/", "secret": SECRET, "events": ["job.done"]}
                ]
            }
        )


def test_events_and_triggers_filter_which_jobs_a_target_hears_of() -> None:
    target = WebhookTarget(
        name="t", url="http://h/", secret=SECRET, events=["job.failed"], triggers=["incoming"]
    )
    assert target.wants("job.failed", "trigger:incoming")
    assert not target.wants("job.finished", "trigger:incoming")
    assert not target.wants("job.failed", "trigger:other")
    assert not target.wants("job.failed", "api")


def test_duplicate_names_unknown_triggers_and_bad_secrets_are_config_errors() -> None:
    hook = WebhookTarget(name="t", url="http://h/", secret=SECRET)
    with pytest.raises(ConfigError, match="two notification targets"):
        validate_targets([hook, hook], set())
    with pytest.raises(ConfigError, match="no trigger named nope"):
        validate_targets([hook.model_copy(update={"triggers": ["nope"]})], {"incoming"})
    plain = hook.model_copy(update={"secret": "hunter2"})
    with pytest.raises(ConfigError, match="whsec_"):
        build_senders([plain], {}, str)


def test_a_stored_secret_is_resolved_at_each_attempt_and_a_missing_one_fails_attempts() -> None:
    stored: dict[str, str] = {}

    def resolve(ref: str) -> str:
        if ref != "secret:hook" or "hook" not in stored:
            raise ConfigError("secret 'hook' is not set")
        return stored["hook"]

    target = WebhookTarget(name="t", url="http://127.0.0.1:9/", secret="secret:hook")
    (sender,) = build_senders([target], {}, resolve).values()  # the service still starts
    message = Outgoing("msg_1", "job.finished", "{}")
    with pytest.raises(DeliveryError, match="secret 'hook' is not set"):
        sender.send(message)
    stored["hook"] = SECRET
    headers = sender.headers(message)  # type: ignore[attr-defined]
    assert Webhook(SECRET).verify("{}", headers) == {}
    sender.close()


def test_signatures_verify_with_the_standardwebhooks_library() -> None:
    sender = WebhookSender("http://h/", SECRET)
    message = Outgoing("msg_1", "job.finished", '{"type":"job.finished","data":{}}')
    headers = sender.headers(message)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(message.body, headers) == {"type": "job.finished", "data": {}}
    other = Webhook("whsec_" + "A" * 32)
    with pytest.raises(Exception, match="signature"):
        other.verify(message.body, headers)
    sender.close()


def test_an_old_timestamp_is_what_receivers_refuse_so_each_attempt_is_signed_anew() -> None:
    sender = WebhookSender("http://h/", SECRET, clock=lambda: datetime(2020, 1, 1, tzinfo=UTC))
    headers = sender.headers(Outgoing("msg_1", "job.finished", "{}"))
    assert headers["webhook-timestamp"] == str(int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()))
    with pytest.raises(Exception, match="too old"):
        Webhook(SECRET).verify("{}", headers)
    sender.close()


def test_retry_waits_double_from_backoff_s_up_to_max_backoff_s_with_jitter() -> None:
    target = WebhookTarget(name="t", url="http://h/", secret=SECRET, backoff_s=5, max_backoff_s=60)
    rng = random.Random(7)
    for attempt, longest in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (30, 60)]:
        waits = [retry_wait_s(attempt, target, rng) for _ in range(50)]
        assert all(longest / 2 <= wait <= longest for wait in waits)
        assert max(waits) - min(waits) > 0
