"""`autoinfer doctor [--config FILE]`: check a configuration against the world it names.

It loads and validates the configuration, connects to the database, reaches every store and
queue with the configured credentials, and reads each watched bucket's notification settings
to see that the events the triggers wait for are sent where a source receives them. Each
problem is one line saying what is wrong and what to do; the exit code is 1 if there is any.
Nothing is changed: an empty database stays empty, no master key or API key file is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from autoinfer.cli.client import console, one_line_errors
from autoinfer.cli.text import safe_text
from autoinfer.config import Config, SourceConfig, load_config
from autoinfer.errors import AutoInferError, ConfigError

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

#: Short timeouts and no retries: a doctor reports an unreachable endpoint, it does not wait.
CLIENT_OPTIONS: dict[str, Any] = {"max_attempts": 1, "connect_timeout_s": 5, "read_timeout_s": 20}


@dataclass(frozen=True)
class Finding:
    """One result: a check that passed, or a problem with what to do about it."""

    ok: bool
    message: str


@dataclass
class _Store:
    """What the doctor learned of one S3 store."""

    name: str
    storage: Any  # S3Storage, None when it could not even be built
    broken: bool = False  # unreachable or refused: its buckets and queues are not checked
    queue_arns: dict[str, str] = field(default_factory=dict)  # queue URL → ARN


def ok(message: str) -> Finding:
    return Finding(True, message)


def problem(message: str) -> Finding:
    return Finding(False, message)


class Doctor:
    """Runs the checks in order; `run()` yields findings as they are made."""

    def __init__(self, config: Config, config_file: Path | None) -> None:
        self.config = config
        self.config_file = config_file
        self.stores: dict[str, _Store] = {}
        self.resolve: Callable[[str], str] = _env_secret

    def run(self) -> Iterator[Finding]:
        yield from self.check_database()
        yield from self.check_data_dir()
        yield from self.check_sandbox()
        if not (yield from self.check_config()):
            return
        yield from self.check_local_stores()
        for name, store_config in self.config.stores.items():
            if store_config.type == "s3":
                yield from self.check_s3_store(name)
        for index, source in enumerate(self.config.sources):
            if source.type == "sqs":
                yield from self.check_queue(index, source)
        yield from self.check_notifications()

    # --- the database and the secrets it holds -------------------------------------------

    def check_database(self) -> Iterator[Finding]:
        from sqlalchemy import create_engine, inspect, make_url, text

        from autoinfer.db import default_url

        url = self.config.database_url or default_url(self.config.data_path)
        shown = make_url(url).render_as_string(hide_password=True)
        if url.startswith("sqlite") and not self.config.database_url:
            path = self.config.data_path / "autoinfer.db"
            if not path.exists():
                yield ok(f"database {shown}: created on the first `autoinfer serve`")
                return
        try:
            engine = create_engine(url)
        except Exception as error:  # noqa: BLE001 - a missing driver, a malformed URL
            yield problem(f"database {shown}: {_first_line(error)} — fix `database_url`")
            return
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                has_secrets = inspect(connection).has_table("secrets")
        except Exception as error:  # noqa: BLE001 - whatever the driver raises, said in one line
            yield problem(
                f"database {shown}: cannot connect ({_first_line(error)}) — is the server running, "
                "and are `database_url`'s host, port, user and password right?"
            )
            return
        finally:
            engine.dispose()
        yield ok(f"database {shown}: reachable")
        if has_secrets:
            self.resolve = self._stored_secrets(url) or _env_secret

    def _stored_secrets(self, url: str) -> Callable[[str], str] | None:
        """Resolve `secret:NAME` from the service's secret store (its tables exist: opening
        the database creates none), when its master key is here."""
        from autoinfer.db import Database
        from autoinfer.secrets import MASTER_KEY_ENV, MASTER_KEY_FILE, Secrets, load_master_key

        key_file = self.config.data_path / MASTER_KEY_FILE
        if not os.environ.get(MASTER_KEY_ENV) and not key_file.exists():
            return None  # load_master_key would create one: leave that to `serve`
        secrets = Secrets(Database(url, upgrade=False), load_master_key(self.config.data_path))

        def resolve(value: str) -> str:
            if not value.startswith("secret:"):
                return value
            return secrets.resolve(value.removeprefix("secret:"))

        return resolve

    def check_data_dir(self) -> Iterator[Finding]:
        """The disk holding `data_dir` has room (the database, galleries and scratch grow
        there); its size is not measured here (that walks every file: see `status`)."""
        from autoinfer.disk_usage import disk_space

        data_dir = self.config.data_path
        space = disk_space(data_dir)
        if space.nearly_full:
            yield problem(
                f"data_dir {data_dir}: its disk is nearly full ({space.describe()}) — free "
                "space, or shorten `retention:` so old jobs, events and thumbnails go sooner"
            )
        else:
            yield ok(f"data_dir {data_dir}: disk has {space.describe()}")

    def check_sandbox(self) -> Iterator[Finding]:
        """Worker commands can run as configured: bwrap starts a sandbox (a real `true` run
        the way jobs run), or the configuration opted out with `sandbox: none`."""
        from autoinfer.sandbox import make_sandbox

        sandbox = make_sandbox(self.config.sandbox)
        if sandbox.kind == "none":
            yield ok(f"warning: {sandbox.describe()}")
            return
        failure = sandbox.self_test()
        if failure is not None:
            yield problem(f"sandbox: {failure}")
        else:
            yield ok(f"{sandbox.describe()}: a test command ran")

    # --- the configuration as a whole ----------------------------------------------------

    def check_config(self) -> Generator[Finding, None, bool]:
        """Triggers, sources and stores fit together (what `serve` checks when it starts)."""
        from autoinfer.db import Database
        from autoinfer.jobs.service import JobService
        from autoinfer.pipeline import EventPipeline
        from autoinfer.storage import open_registry

        where = str(self.config_file) if self.config_file else "the configuration"
        scratch = Database("sqlite://")  # in memory: the pipeline's checks need no real one
        try:
            storage = open_registry(self.config, self.resolve)
            EventPipeline(
                self.config, scratch, JobService(scratch), storage, resolve_secret=self.resolve
            )
        except AutoInferError as error:
            yield problem(f"{where}: {error}")
            return False
        finally:
            scratch.dispose()
        config = self.config
        yield ok(
            f"{where}: {len(config.stores)} store(s), {len(config.sources)} source(s), "
            f"{len(config.triggers)} trigger(s)"
        )
        return True

    def check_local_stores(self) -> Iterator[Finding]:
        for name, store in self.config.stores.items():
            if store.type != "local" or not store.root:
                continue
            root = self.config.resolve_path(store.root)
            if root.exists() and not root.is_dir():
                yield problem(f"store '{name}': {root} is not a folder — fix stores.{name}.root")
            elif root.exists() and not os.access(root, os.W_OK | os.X_OK):
                yield problem(f"store '{name}': {root} is not writable — fix its permissions")
            else:
                yield ok(f"store '{name}': folder {root}")

    # --- S3 stores and their buckets ---------------------------------------------------------

    def check_s3_store(self, name: str) -> Iterator[Finding]:
        from autoinfer.storage.s3 import S3Storage

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
        from autoinfer.storage.s3 import describe_error

        reason = describe_error(
            error, bucket=bucket, endpoint=store.storage.endpoint, store=store.name
        )
        if reason.startswith(("cannot reach", "timed out")):
            setting = f"stores.{store.name}.endpoint_url"
            reason += f" Check {setting}." if reason.endswith("?") else f"; check {setting}"
        return f"store '{store.name}': {reason}"

    def _buckets_of(self, store: str) -> dict[str, list[str]]:
        """The buckets this S3 store serves that the configuration uses, and who uses them."""
        from autoinfer.storage.s3 import choose_store

        used: dict[str, list[str]] = {}
        for trigger in self.config.triggers:
            chosen = choose_store(self.config.stores, trigger.bucket)
            if chosen is not None and chosen[0] == store:
                used.setdefault(trigger.bucket, []).append(f"trigger '{trigger.name}'")
        for index, source in enumerate(self.config.sources):
            if source.type == "poll" and source.bucket and source.store == store:
                used.setdefault(source.bucket, []).append(f"sources[{index}]")
        return used

    # --- SQS queues ---------------------------------------------------------------------------

    def check_queue(self, index: int, source: SourceConfig) -> Iterator[Finding]:
        from botocore.exceptions import BotoCoreError, ClientError

        from autoinfer.events.sqs import make_sqs_client
        from autoinfer.storage.s3 import describe_error

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

    # --- bucket notifications -------------------------------------------------------------------

    def check_notifications(self) -> Iterator[Finding]:
        """Each trigger on an S3 bucket gets its events: the bucket is polled, or it sends
        ObjectCreated notifications for the trigger's prefix/suffix to a queue a source reads
        (any destination, when a webhook source receives the store's events)."""
        from autoinfer.storage.s3 import choose_store

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

        queues = [s for s in self.config.sources if s.type == "sqs" and s.store == store.name]
        webhook = any(
            s.type == "webhook" and s.store in (store.name, None) for s in self.config.sources
        )
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
        destinations = _destinations(settings)
        wanted = {s.queue_url or "": store.queue_arns.get(s.queue_url or "", "") for s in queues}
        for trigger in triggers:
            covering = [d for d in destinations if _covers(d, trigger)]
            if queues:
                covering = [d for d in covering if _sent_to(d, wanted)]
            if covering:
                yield ok(f"bucket '{bucket}' sends trigger '{trigger.name}' its events")
                continue
            target = _queue_name(next(iter(wanted))) if queues else "your webhook target"
            yield problem(
                f"bucket '{bucket}' sends no ObjectCreated notifications for keys under "
                f"'{trigger.prefix}' ending '{trigger.suffix}' to {target} (trigger "
                f"'{trigger.name}') — add a queue configuration: aws s3api "
                f"put-bucket-notification-configuration --bucket {bucket}"
                f"{_endpoint_flag(store)} --notification-configuration "
                f"'{_example_configuration(wanted, trigger)}'"
            )

    def _polled(self, store: str, bucket: str, prefix: str) -> bool:
        return any(
            s.type == "poll"
            and s.bucket == bucket
            and (s.store in (store, None))
            and prefix.startswith(s.prefix)
            for s in self.config.sources
        )


# --- pure helpers -------------------------------------------------------------------------------


def _destinations(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every destination of a GetBucketNotificationConfiguration answer, with its ARN."""
    found = []
    for section, arn_key in (
        ("QueueConfigurations", "QueueArn"),
        ("TopicConfigurations", "TopicArn"),
        ("LambdaFunctionConfigurations", "LambdaFunctionArn"),
    ):
        for item in settings.get(section, []) or []:
            found.append({**item, "Arn": item.get(arn_key, ""), "Kind": section})
    return found


def _filter_rules(destination: dict[str, Any]) -> dict[str, str]:
    rules = destination.get("Filter", {}).get("Key", {}).get("FilterRules", []) or []
    return {str(rule.get("Name", "")).lower(): str(rule.get("Value", "")) for rule in rules}


def _covers(destination: dict[str, Any], trigger: Any) -> bool:
    """Whether the destination is sent every event the trigger wants: an overlapping event
    name, a filter prefix that is a prefix of the trigger's and a suffix that ends it."""
    rules = _filter_rules(destination)
    if not trigger.prefix.startswith(rules.get("prefix", "")):
        return False
    if not trigger.suffix.endswith(rules.get("suffix", "")):
        return False
    sent = [name.removeprefix("s3:") for name in destination.get("Events", [])]
    wanted = [name.removeprefix("s3:") for name in trigger.events]
    return any(_overlap(a, b) for a in sent for b in wanted)


def _overlap(a: str, b: str) -> bool:
    if a == b or a == "*" or b == "*":
        return True
    if a.endswith("*") and b.startswith(a[:-1]):
        return True
    return b.endswith("*") and a.startswith(b[:-1])


def _sent_to(destination: dict[str, Any], queues: dict[str, str]) -> bool:
    """Whether the destination is one of the queues (by ARN, else by queue name)."""
    arn = destination["Arn"]
    return any(
        (known_arn and arn == known_arn) or arn.rsplit(":", 1)[-1] == _queue_name(url)
        for url, known_arn in queues.items()
    )


def _endpoint_flag(store: _Store) -> str:
    """` --endpoint-url URL` for the aws CLI when the store is not AWS S3 itself."""
    from autoinfer.storage.s3 import env_endpoint

    endpoint = store.storage.endpoint_url or env_endpoint()
    return f" --endpoint-url {endpoint}" if endpoint else ""


def _queue_name(queue_url: str) -> str:
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def _example_configuration(queues: dict[str, str], trigger: Any) -> str:
    import json

    url, arn = next(iter(queues.items()), ("", ""))
    rules = [{"Name": "prefix", "Value": trigger.prefix}] if trigger.prefix else []
    rules += [{"Name": "suffix", "Value": trigger.suffix}] if trigger.suffix else []
    entry: dict[str, Any] = {
        "QueueArn": arn or f"<ARN of {_queue_name(url) or 'your queue'}>",
        "Events": ["s3:ObjectCreated:*"],
    }
    if rules:
        entry["Filter"] = {"Key": {"FilterRules": rules}}
    return json.dumps({"QueueConfigurations": [entry]}, separators=(",", ":"))


def _code(error: ClientError) -> str:
    from autoinfer.storage.s3 import error_code

    return error_code(error)


def _env_secret(value: str) -> str:
    """`secret:NAME` from AUTOINFER_SECRET_<NAME> only (no secret store at hand)."""
    from autoinfer.secrets import env_name

    if not value.startswith("secret:"):
        return value
    name = value.removeprefix("secret:")
    found = os.environ.get(env_name(name))
    if found is None:
        raise ConfigError(
            f"secret {name!r} cannot be read here (no master key beside the database): "
            f"set {env_name(name)}, or run doctor where the service's data folder is"
        )
    return found


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# --- the command --------------------------------------------------------------------------------


@one_line_errors
def doctor(
    config_file: Path = typer.Option(
        None, "--config", "-c", help="autoinfer.yaml (default: ./autoinfer.yaml if present)."
    ),
) -> None:
    """Check the configuration and everything it names; one line per problem.

    Loads the configuration, connects to the database, reaches every store and queue with
    their credentials, and reads each watched bucket's notification settings. Each problem is
    one line saying what to do; the exit code is 1 if there is any.
    """
    if config_file is None and Path("autoinfer.yaml").is_file():
        config_file = Path("autoinfer.yaml")
    try:
        config = load_config(config_file)
    except ConfigError as error:
        console.print(f"[red]✗[/red] {safe_text(error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    problems = 0
    for finding in Doctor(config, config_file).run():
        if finding.ok:
            console.print(f"[green]✓[/green] {safe_text(finding.message)}", highlight=False, soft_wrap=True)
        else:
            problems += 1
            console.print(f"[red]✗[/red] {safe_text(finding.message)}", highlight=False, soft_wrap=True)
    if problems:
        console.print(f"{problems} problem(s) found", highlight=False)
        raise typer.Exit(1)
    console.print("no problems found", highlight=False)
