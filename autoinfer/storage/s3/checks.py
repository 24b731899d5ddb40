"""Doctor's checks of S3 stores, the SQS queues of their sources and their buckets'
notification settings: each store is reachable with its credentials, each bucket the
configuration uses exists and may be read, each queue is reachable, and each watched bucket
sends a trigger's events where a source receives them (`autoinfer.storage.s3.notifications`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autoinfer.config import Config, SourceConfig
from autoinfer.errors import ConfigError
from autoinfer.events.kinds import sources_of_type
from autoinfer.findings import Finding, ok, problem
from autoinfer.storage.kinds import stores_of_type
from autoinfer.storage.s3.notifications import (
    covers,
    destinations,
    example_configuration,
    queue_name,
    sent_to,
)

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

#: Short timeouts and no retries: a doctor reports an unreachable endpoint, it does not wait.
CLIENT_OPTIONS: dict[str, Any] = {"max_attempts": 1, "connect_timeout_s": 5, "read_timeout_s": 20}


@dataclass
class _Store:
    """What the doctor learned of one S3 store."""

    name: str
    storage: Any  # S3Storage, None when it could not even be built
    broken: bool = False  # unreachable or refused: its buckets and queues are not checked
    queue_arns: dict[str, str] = field(default_factory=dict)  # queue URL → ARN


class S3Checks:
    """The S3 stores, their SQS queues and their buckets' notifications (BackendChecks)."""

    def __init__(self, config: Config, resolve: Callable[[str], str]) -> None:
        self.config = config
        self.resolve = resolve
        self.stores: dict[str, _Store] = {}

    def check_stores(self) -> Iterator[Finding]:
        for name, _ in stores_of_type(self.config.stores, "s3"):
            yield from self.check_s3_store(name)

    def check_sources(self) -> Iterator[Finding]:
        for index, source in sources_of_type(self.config.sources, "sqs"):
            yield from self.check_queue(index, source)

    def check_delivery(self) -> Iterator[Finding]:
        yield from self.check_notifications()

    def check_s3_store(self, name: str) -> Iterator[Finding]:
        from autoinfer.storage.s3.storage import S3Storage

        try:
            storage = S3Storage.from_config(
                name, self.config.stores[name], self.resolve, **CLIENT_OPTIONS
            )
        except ConfigError as error:
            self.stores[name] = _Store(name, None, broken=True)
            yield problem(f"store '{name}': {error}")
            return
        store = self.stores[name] = _Store(name, storage)
        buckets = self._buckets_of(name)
        if not buckets:
            yield from self._check_listing(store)
            return
        for bucket, users in sorted(buckets.items()):
            finding = self._check_bucket(store, bucket, users)
            yield finding
            if store.broken:
                return  # one line for the store, not one per bucket

    def _check_listing(self, store: _Store) -> Iterator[Finding]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            store.storage.client.list_buckets()
        except ClientError as error:
            if _code(error) in ("AccessDenied", "403"):
                yield ok(f"store '{store.name}' ({store.storage.endpoint}): reachable")
                return
            store.broken = True
            yield problem(self._store_error(store, error))
        except (BotoCoreError, OSError) as error:
            store.broken = True
            yield problem(self._store_error(store, error))
        else:
            yield ok(
                f"store '{store.name}' ({store.storage.endpoint}): reachable, credentials work"
            )

    def _check_bucket(self, store: _Store, bucket: str, users: list[str]) -> Finding:
        from botocore.exceptions import BotoCoreError, ClientError

        endpoint = store.storage.endpoint
        try:
            store.storage.client.head_bucket(Bucket=bucket)
        except ClientError as error:
            code = _code(error)
            if code in ("404", "NoSuchBucket", "NotFound"):
                return problem(
                    f"bucket '{bucket}' ({', '.join(users)}) does not exist on store "
                    f"'{store.name}' ({endpoint}) — create it (`aws s3 mb s3://{bucket}"
                    f"{_endpoint_flag(store)}`) or fix the bucket name"
                )
            if code in ("403", "AccessDenied", "Forbidden"):
                return problem(
                    f"bucket '{bucket}' ({', '.join(users)}): store '{store.name}' may not read it "
                    "(AccessDenied) — grant its credentials s3:ListBucket, s3:GetObject and "
                    "s3:PutObject on the bucket"
                )
            store.broken = True
            return problem(self._store_error(store, error, bucket))
        except (BotoCoreError, OSError) as error:
            store.broken = True
            return problem(self._store_error(store, error, bucket))
        return ok(f"bucket '{bucket}' on store '{store.name}' ({endpoint}): reachable")

    def _store_error(self, store: _Store, error: BaseException, bucket: str | None = None) -> str:
        from autoinfer.storage.s3.errors import describe_error

        reason = describe_error(
            error, bucket=bucket, endpoint=store.storage.endpoint, store=store.name
        )
        if reason.startswith(("cannot reach", "timed out")):
            setting = f"stores.{store.name}.endpoint_url"
            reason += f" Check {setting}." if reason.endswith("?") else f"; check {setting}"
        return f"store '{store.name}': {reason}"

    def _buckets_of(self, store: str) -> dict[str, list[str]]:
        """The buckets this S3 store serves that the configuration uses, and who uses them."""
        from autoinfer.storage.s3.stores import choose_store

        used: dict[str, list[str]] = {}
        for trigger in self.config.triggers:
            chosen = choose_store(self.config.stores, trigger.bucket)
            if chosen is not None and chosen[0] == store:
                used.setdefault(trigger.bucket, []).append(f"trigger '{trigger.name}'")
        for index, source in sources_of_type(self.config.sources, "poll"):
            if source.bucket and source.store == store:
                used.setdefault(source.bucket, []).append(f"sources[{index}]")
        return used

    def check_queue(self, index: int, source: SourceConfig) -> Iterator[Finding]:
        from botocore.exceptions import BotoCoreError, ClientError

        from autoinfer.events.sqs_client import make_sqs_client
        from autoinfer.storage.s3.errors import describe_error

        store = self.stores.get(source.store) if source.store else None
        if store is not None and store.broken:
            return  # its store's problem is already reported
        url = source.queue_url or ""
        try:
            client = make_sqs_client(url, store.storage if store else None, wait_time_s=0)
            attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except ConfigError as error:
            yield problem(f"sources[{index}]: {error}")
            return
        except (ClientError, BotoCoreError, OSError) as error:
            reason = describe_error(error, service="SQS", store=source.store)
            yield problem(
                f"queue {url} (sources[{index}]): {reason} — fix `queue_url` or create it"
            )
            return
        arn = attributes.get("Attributes", {}).get("QueueArn", "")
        if store is not None:
            store.queue_arns[url] = arn
        yield ok(f"queue {url}: reachable")

    def check_notifications(self) -> Iterator[Finding]:
        """Each trigger on an S3 bucket gets its events: the bucket is polled, or it sends
        ObjectCreated notifications for the trigger's prefix/suffix to a queue a source reads
        (any destination, when a webhook source receives the store's events)."""
        from autoinfer.storage.s3.stores import choose_store

        by_bucket: dict[tuple[str, str], list[Any]] = {}
        for trigger in self.config.triggers:
            chosen = choose_store(self.config.stores, trigger.bucket)
            if chosen is None:
                continue
            by_bucket.setdefault((chosen[0], trigger.bucket), []).append(trigger)
        for (store_name, bucket), triggers in sorted(by_bucket.items()):
            store = self.stores.get(store_name)
            if store is None or store.broken:
                continue
            unpolled = [t for t in triggers if not self._polled(store_name, bucket, t.prefix)]
            if not unpolled:
                yield ok(f"bucket '{bucket}': polled by a poll source")
                continue
            yield from self._check_bucket_notifications(store, bucket, unpolled)

    def _check_bucket_notifications(
        self, store: _Store, bucket: str, triggers: list[Any]
    ) -> Iterator[Finding]:
        from botocore.exceptions import BotoCoreError, ClientError

        sources = self.config.sources
        queues = [s for _, s in sources_of_type(sources, "sqs") if s.store == store.name]
        webhook = any(s.store in (store.name, None) for _, s in sources_of_type(sources, "webhook"))
        if not queues and not webhook:
            names = ", ".join(f"'{t.name}'" for t in triggers)
            yield problem(
                f"bucket '{bucket}' (trigger {names}): no source receives its events — add an "
                f"sqs, webhook or poll source for store '{store.name}'"
            )
            return
        try:
            settings = store.storage.client.get_bucket_notification_configuration(Bucket=bucket)
        except ClientError as error:
            if _code(error) in ("404", "NoSuchBucket", "NotFound"):
                return  # reported with the bucket
            yield problem(
                f"bucket '{bucket}': cannot read its notification settings "
                f"({_code(error)}) — grant s3:GetBucketNotification, or check them by hand"
            )
            return
        except (BotoCoreError, OSError) as error:
            yield problem(self._store_error(store, error, bucket))
            return
        sent = destinations(settings)
        wanted = {s.queue_url or "": store.queue_arns.get(s.queue_url or "", "") for s in queues}
        for trigger in triggers:
            covering = [d for d in sent if covers(d, trigger)]
            if queues:
                covering = [d for d in covering if sent_to(d, wanted)]
            if covering:
                yield ok(f"bucket '{bucket}' sends trigger '{trigger.name}' its events")
                continue
            target = queue_name(next(iter(wanted))) if queues else "your webhook target"
            yield problem(
                f"bucket '{bucket}' sends no ObjectCreated notifications for keys under "
                f"'{trigger.prefix}' ending '{trigger.suffix}' to {target} (trigger "
                f"'{trigger.name}') — add a queue configuration: aws s3api "
                f"put-bucket-notification-configuration --bucket {bucket}"
                f"{_endpoint_flag(store)} --notification-configuration "
                f"'{example_configuration(wanted, trigger)}'"
            )

    def _polled(self, store: str, bucket: str, prefix: str) -> bool:
        return any(
            s.bucket == bucket and (s.store in (store, None)) and prefix.startswith(s.prefix)
            for _, s in sources_of_type(self.config.sources, "poll")
        )


# --- helpers -------------------------------------------------------------------------


def _endpoint_flag(store: _Store) -> str:
    """` --endpoint-url URL` for the aws CLI when the store is not AWS S3 itself."""
    from autoinfer.storage.s3.storage import env_endpoint

    endpoint = store.storage.endpoint_url or env_endpoint()
    return f" --endpoint-url {endpoint}" if endpoint else ""


def _code(error: ClientError) -> str:
    from autoinfer.storage.s3.errors import error_code

    return error_code(error)
