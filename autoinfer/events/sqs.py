"""The `sqs` source: long-poll a queue that receives S3 event notifications.

AWS's recommended way to process bucket events reliably: S3 (or SNS) puts each
notification into an SQS queue; this source receives it, hands its events to the pipeline,
and deletes the message only once `ingest` has returned, that is once the events are
committed to the inbox. A crash in between redelivers the message; the inbox drops the
repeat. A body that cannot be parsed is recorded as rejected and left in the queue: it comes
back after its visibility timeout, and after `max_receive` deliveries it is parked (hidden
for as long as SQS allows) so that it stops costing work; a redrive policy with
`maxReceiveCount <= max_receive` moves it to the dead-letter queue instead. A message with
good and bad records is settled like a webhook body: the good events are stored, each bad
record is recorded as rejected (its index and field in the reason), and the message is
deleted. S3's `s3:TestEvent`, sent when a notification is configured, is acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autoinfer.errors import ConfigError, EventError
from autoinfer.events.model import parse_message_body
from autoinfer.events.source import Ingest, Source
from autoinfer.events.sqs_client import MAX_WAIT_S, make_sqs_client, sqs_endpoint  # noqa: F401
from autoinfer.storage.s3 import AWS_ERRORS, S3Storage, describe_error

if TYPE_CHECKING:
    from autoinfer.config import SourceConfig, StoreConfig

log = logging.getLogger("autoinfer.events.sqs")

#: `reject(source_name, body, reason)`: records a body that could not be parsed.
Reject = Callable[[str, str, str], object]

#: SQS hides a message for at most 12 hours after it was sent; parking stays below that.
MAX_VISIBILITY_S = 43200
_PARK_MARGIN_S = 120
#: How many message ids the source remembers (to record and log a poison message once).
_REMEMBERED = 10_000


@dataclass
class SqsStats:
    """What the source has done since it started (for logs, metrics and tests)."""

    received: int = 0
    ingested: int = 0  # messages whose events were handed to `ingest`, then deleted
    events: int = 0
    test_events: int = 0
    rejected: int = 0  # deliveries of bodies that could not be parsed
    parked: int = 0  # poison messages hidden after `max_receive` deliveries
    ingest_failures: int = 0
    receive_failures: int = 0


class SqsSource(Source):
    """Receives S3 notifications from one SQS queue and feeds their events to `ingest`.

    `poll_once` is one receive-and-handle round; `start` runs it in a thread until `stop`.
    Outages of the queue are logged and retried with exponential backoff, never fatal.
    """

    def __init__(
        self,
        name: str,
        client: Any,
        queue_url: str,
        ingest: Ingest,
        *,
        reject: Reject | None = None,
        max_receive: int = 5,
        wait_time_s: int = MAX_WAIT_S,
        batch_size: int = 10,
        visibility_timeout_s: int | None = None,
        backoff_s: tuple[float, float] = (1.0, 60.0),
        endpoint: str | None = None,
    ) -> None:
        if not 0 <= wait_time_s <= MAX_WAIT_S:
            raise ConfigError(f"{name}: wait_time_s must be between 0 and {MAX_WAIT_S}")
        if not 1 <= batch_size <= 10:
            raise ConfigError(f"{name}: batch_size must be between 1 and 10")
        self.name = name
        self.client = client
        self.queue_url = queue_url
        self.ingest = ingest
        self.reject = reject
        self.max_receive = max_receive
        self.wait_time_s = wait_time_s
        self.batch_size = batch_size
        self.visibility_timeout_s = visibility_timeout_s
        self.backoff_s = backoff_s
        self.endpoint = endpoint or str(getattr(client.meta, "endpoint_url", "") or "SQS")
        self.stats = SqsStats()
        self._stop = threading.Event()
        # Held while received messages are handled: `stop` waits for it, so no ingest runs
        # after `stop` returns, but it never waits for a long poll in progress.
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self._seen_poison: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def from_config(
        cls,
        name: str,
        config: SourceConfig,
        stores: Mapping[str, StoreConfig],
        resolve_secret: Callable[[str], str],
        ingest: Ingest,
        *,
        reject: Reject | None = None,
        **options: Any,
    ) -> SqsSource:
        """The configured `sqs` source; the queue is read with the credentials of its
        `store` (an S3 store), or of the standard AWS chain when it names none. `options`
        (the constructor's keywords) override the configured `wait_time_s`."""
        if not config.queue_url:
            raise ConfigError(f"{name}: an sqs source needs a `queue_url`")
        store: S3Storage | None = None
        if config.store is not None:
            store_config = stores.get(config.store)
            if store_config is None or store_config.type != "s3":
                raise ConfigError(f"{name}: store {config.store!r} is not a configured s3 store")
            store = S3Storage.from_config(config.store, store_config, resolve_secret)
        options.setdefault("wait_time_s", config.wait_time_s)
        client = make_sqs_client(config.queue_url, store, wait_time_s=int(options["wait_time_s"]))
        return cls(
            name,
            client,
            config.queue_url,
            ingest,
            reject=reject,
            max_receive=config.max_receive,
            **options,
        )

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        # A fresh event per thread: a thread abandoned in a long poll by `stop` stays stopped
        # even if the source is started again meanwhile.
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=f"{self.name}-sqs", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling. Returns once no message is being handled; a long poll still waiting
        is abandoned (what it returns is given back to the queue at once, unhandled)."""
        self._stop.set()
        acquired = self._busy.acquire(timeout=timeout)
        if acquired:
            self._busy.release()
        if self._thread is not None:
            self._thread.join(min(timeout, 1.0))
        self._thread = None

    def _run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                messages = self._receive()
            except AWS_ERRORS as error:
                failures += 1
                reason = describe_error(error, endpoint=self.endpoint, service="SQS")
                self._back_off(stop, failures, reason)
                continue
            except Exception:
                failures += 1
                log.exception("%s: receiving from %s failed", self.name, self.queue_url)
                self._back_off(stop, failures, "unexpected error")
                continue
            if failures:
                log.info("%s: receiving again after %d failed attempts", self.name, failures)
                failures = 0
            with self._busy:
                if stop.is_set():
                    self._give_back(messages)
                    return
                try:
                    self._handle_all(messages)
                except Exception:  # never let one bad round end the source
                    log.exception("%s: handling %d messages failed", self.name, len(messages))
                    stop.wait(self.backoff_s[0])

    def _back_off(self, stop: threading.Event, failures: int, reason: str) -> None:
        """Wait before the next receive: exponentially longer while the queue keeps failing."""
        self.stats.receive_failures += 1
        delay = min(self.backoff_s[0] * 2 ** (failures - 1), self.backoff_s[1])
        log.warning(
            "%s: cannot receive from %s: %s; retrying in %.1f s",
            self.name,
            self.queue_url,
            reason,
            delay,
        )
        stop.wait(delay)

    # --- one round ------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Receive one batch (waiting up to `wait_time_s`) and handle it; returns how many
        messages were received. Errors of the receive itself propagate."""
        messages = self._receive()
        with self._busy:
            self._handle_all(messages)
        return len(messages)

    def _receive(self) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": self.batch_size,
            "WaitTimeSeconds": self.wait_time_s,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
        }
        if self.visibility_timeout_s is not None:
            request["VisibilityTimeout"] = self.visibility_timeout_s
        response = self.client.receive_message(**request)
        messages: list[dict[str, Any]] = response.get("Messages", [])
        self.stats.received += len(messages)
        return messages

    def _handle_all(self, messages: list[dict[str, Any]]) -> None:
        self._delete([message for message in messages if self._handle(message)])

    def _handle(self, message: dict[str, Any]) -> bool:
        """Whether the message is settled (its events stored, or a test event) and may go."""
        body = message.get("Body", "")
        message_id = message.get("MessageId", "?")
        try:
            notification = parse_message_body(body)
        except EventError as error:
            self._poison(message, str(error))
            return False
        if notification.test_event:
            self.stats.test_events += 1
            log.info("%s: s3:TestEvent received (message %s); acknowledged", self.name, message_id)
            return True
        try:
            self.ingest(notification.events, self.name)
        except Exception:
            self.stats.ingest_failures += 1
            log.exception(
                "%s: storing the %d events of message %s failed; it stays in the queue",
                self.name,
                len(notification.events),
                message_id,
            )
            return False
        self.stats.ingested += 1
        self.stats.events += len(notification.events)
        for bad in notification.rejected:
            # The good records are stored; the bad ones are recorded, and the message goes:
            # redelivering it would only store its good records again as duplicates.
            self.stats.rejected += 1
            log.warning(
                "%s: message %s: %s; recorded as rejected", self.name, message_id, bad.reason
            )
            if self.reject is not None:
                try:
                    self.reject(self.name, bad.excerpt(), bad.reason)
                except Exception:
                    log.exception(
                        "%s: recording a rejected record of message %s failed; it stays in "
                        "the queue",
                        self.name,
                        message_id,
                    )
                    return False
        return True

    def _poison(self, message: dict[str, Any], reason: str) -> None:
        """A body that cannot be parsed: record it once, leave it, park it after max_receive."""
        self.stats.rejected += 1
        message_id = message.get("MessageId", "?")
        receives = _receive_count(message)
        first_sight = message_id not in self._seen_poison
        if first_sight:
            self._remember(message_id)
            log.warning(
                "%s: message %s is not an S3 notification (%s); left in the queue",
                self.name,
                message_id,
                reason,
            )
            if self.reject is not None:
                try:
                    self.reject(self.name, message.get("Body", ""), reason)
                except Exception:
                    log.exception("%s: recording rejected message %s failed", self.name, message_id)
        if receives > self.max_receive:
            self._park(message, receives)

    def _park(self, message: dict[str, Any], receives: int) -> None:
        """Hide a poison message as long as SQS allows, so it stops coming back; without a
        redrive policy it stays there for an operator (the queue's retention applies)."""
        message_id = message.get("MessageId", "?")
        sent_ms = int(message.get("Attributes", {}).get("SentTimestamp", time.time() * 1000))
        age_s = max(0, int(time.time() - sent_ms / 1000))
        hide_s = MAX_VISIBILITY_S - age_s - _PARK_MARGIN_S
        self.stats.parked += 1
        log.error(
            "%s: message %s was delivered %d times (max_receive %d) and still cannot be "
            "parsed; no longer retried. Give the queue a redrive policy with "
            "maxReceiveCount <= %d to move such messages to a dead-letter queue.",
            self.name,
            message_id,
            receives,
            self.max_receive,
            self.max_receive,
        )
        if hide_s <= 0:
            return
        try:
            self.client.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=hide_s,
            )
        except AWS_ERRORS as error:
            log.warning(
                "%s: could not park message %s: %s",
                self.name,
                message_id,
                describe_error(error, endpoint=self.endpoint, service="SQS"),
            )

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        """Acknowledge settled messages; a failed delete only means a redelivery, which the
        inbox records as a duplicate."""
        if not messages:
            return
        entries = [
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
            for index, message in enumerate(messages)
        ]
        try:
            response = self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except AWS_ERRORS as error:
            log.warning(
                "%s: deleting %d handled messages failed (they will be redelivered and "
                "recorded as duplicates): %s",
                self.name,
                len(messages),
                describe_error(error, endpoint=self.endpoint, service="SQS"),
            )
            return
        for failed in response.get("Failed", []):
            log.warning(
                "%s: deleting message %s failed (%s); it will be redelivered",
                self.name,
                messages[int(failed["Id"])].get("MessageId", "?"),
                failed.get("Code"),
            )

    def _give_back(self, messages: list[dict[str, Any]]) -> None:
        """Make messages received while stopping visible again at once."""
        if not messages:
            return
        entries = [
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
            for index, message in enumerate(messages)
        ]
        try:
            self.client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
        except AWS_ERRORS as error:
            log.info(
                "%s: %d messages received while stopping return after their visibility "
                "timeout (%s)",
                self.name,
                len(messages),
                describe_error(error, endpoint=self.endpoint, service="SQS"),
            )

    def _remember(self, message_id: str) -> None:
        self._seen_poison[message_id] = None
        while len(self._seen_poison) > _REMEMBERED:
            self._seen_poison.popitem(last=False)


def _receive_count(message: dict[str, Any]) -> int:
    try:
        return int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1
