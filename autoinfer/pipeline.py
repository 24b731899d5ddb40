"""The event pipeline: sources → inbox → triggers → jobs.

`ingest` commits a batch of events to the inbox first, then dispatches the new ones: each
event is matched against the triggers; a rule creates its job under a deterministic id
(trigger name + the event's idempotency key), a handler is called. A crash between "event
stored" and "job created" leaves the event `pending`; `dispatch_pending` (run at start and
every few seconds) finishes it, and the deterministic id makes that neither lose nor double
the job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoinfer.config import Config, SourceConfig
from autoinfer.db import Database
from autoinfer.errors import AutoInferError, ConfigError, NotFound
from autoinfer.events.builders import SourceContext, build_source
from autoinfer.events.model import RejectedRecord, S3Event
from autoinfer.events.source import Source, source_name
from autoinfer.events.webhook import WebhookSource
from autoinfer.inbox import Dispatch, EventRecord, Inbox, Outcome, Settlement
from autoinfer.jobs.service import JobService, NewJob, deterministic_job_id
from autoinfer.jobs.spec import JobSpec
from autoinfer.logging_setup import log_context
from autoinfer.storage.registry import StorageRegistry
from autoinfer.triggers import LambdaContext, Locator, S3Locator, Trigger
from autoinfer.triggers.guards import check_buckets, check_loops, check_unique_names

log = logging.getLogger("autoinfer.pipeline")

#: How often pending events (left by a crash or a failed dispatch) are retried.
RETRY_S = 5.0
#: Events read from the inbox at once when dispatching.
DISPATCH_READ = 100


class EventPipeline:
    """Receives events from every source, stores them once, and turns them into jobs.

    Construction validates the triggers and sources (ConfigError); `start` runs the sources.
    `api_url_getter` returns the service's URL once it serves HTTP (None before): handler
    triggers, which call back into the API through the SDK, wait for it. `settle_s`, when
    given, overrides every watch source's configured `settle_s`.
    """

    def __init__(
        self,
        config: Config,
        db: Database,
        jobs: JobService,
        storage: StorageRegistry,
        *,
        api_url_getter: Callable[[], str | None] | None = None,
        on_jobs_created: Callable[[], None] | None = None,
        resolve_secret: Callable[[str], str] | None = None,
        settle_s: float | None = None,
        admit: Callable[[JobSpec], None] | None = None,
    ) -> None:
        self.config = config
        # Checks a rule's job before it is created (autoinfer.sandbox.admission: confined
        # local paths); raises AutoInferError, which becomes the event's dispatch error.
        self.admit = admit
        self.db = db
        self.jobs = jobs
        self.storage = storage
        self.inbox = Inbox(db)
        self.api_url_getter = api_url_getter
        self.on_jobs_created = on_jobs_created
        self.resolve_secret = resolve_secret or _literal_only
        self.triggers = [Trigger(t, base_dir=config.base_dir) for t in config.triggers]
        check_unique_names(self.triggers)
        check_buckets(self.triggers, config, storage.local_stores)
        check_loops(self.triggers, [*storage.local_stores.values(), S3Locator()])
        self.sources: list[Source] = []
        self._source_stores: dict[str, str | None] = {}
        self._webhooks: list[WebhookSource] = []
        for index, source_config in enumerate(config.sources):
            self.sources.append(self._build_source(index, source_config, settle_s))
        self._dispatch_lock = threading.Lock()
        self._stop = threading.Event()
        self._retry_thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the sources, and the dispatcher thread that first settles what an earlier run
        left pending, then retries pending events every RETRY_S. Returns at once: it may be
        called from an event loop, and handlers must not run there."""
        if self._retry_thread is not None:
            return
        self._stop.clear()
        self._retry_thread = threading.Thread(
            target=self._retry_loop, name="event-dispatch", daemon=True
        )
        self._retry_thread.start()
        for source in self.sources:
            source.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the sources and the retrier (events already stored stay stored)."""
        self._stop.set()
        for source in self.sources:
            source.stop(timeout)
        if self._retry_thread is not None:
            self._retry_thread.join(timeout)
        self._retry_thread = None

    # --- events in ----------------------------------------------------------------------

    def ingest(self, events: Sequence[S3Event], source: str) -> list[EventRecord]:
        """Store `events` durably (duplicates as duplicates), then dispatch the new ones.

        Returns the events' records; once this returns they are committed, whatever the
        dispatch did (a dispatch that failed for want of the database is retried later).
        """
        records = self.inbox.record(events, source)
        fresh = [r.id for r in records if r.outcome == Outcome.PENDING]
        if not fresh:
            return records
        try:
            self._dispatch(fresh)
        except Exception:
            log.exception(
                "dispatching %d events from %s failed; they stay pending", len(fresh), source
            )
        return self.inbox.get_many([r.id for r in records])

    def reject(self, source: str, body: bytes | str, reason: str) -> EventRecord:
        """Record a body that could not be parsed."""
        return self.inbox.record_rejected(source, body, reason)

    def reject_records(self, source: str, rejected: Sequence[RejectedRecord]) -> list[EventRecord]:
        """Record, one `rejected` event each, the bad records of a notification whose other
        records were stored: the reason names the record's index and field."""
        return [self.inbox.record_rejected(source, r.excerpt(), r.reason) for r in rejected]

    def dispatch_pending(self) -> int:
        """Dispatch every stored event not dispatched yet; returns how many were settled."""
        settled = 0
        while True:
            pending = [r.id for r in self.inbox.pending(limit=500)]
            if not pending:
                return settled
            done = self._dispatch(pending)
            settled += done
            if done == 0:  # all postponed (handlers waiting for the API): try again later
                return settled

    # --- reads for the API, CLI and metrics -----------------------------------------------

    @property
    def webhook_sources(self) -> list[WebhookSource]:
        """The sources the HTTP API feeds (webhook bodies), as their builder listed them."""
        return list(self._webhooks)

    def trigger_counts(self) -> dict[str, dict[str, int]]:
        """Per trigger name: events it turned into jobs (`matched`) and failed on (`failed`)."""
        counts = self.inbox.trigger_counts()
        return {t.name: counts.get(t.name, {"matched": 0, "failed": 0}) for t in self.triggers}

    def trigger_infos(self) -> list[dict[str, Any]]:
        """Each trigger as `GET /v1/triggers` shows it, with its counts."""
        counts = self.trigger_counts()
        return [{**t.info(), "counts": counts[t.name]} for t in self.triggers]

    def metrics_counts(self) -> dict[tuple[str, str], int]:
        """Events by (source, outcome), for the Prometheus metrics."""
        return self.inbox.counts()

    def locator_for(self, source: str) -> Locator:
        """How objects reported by `source` are named: their store's scheme."""
        store = self._source_stores.get(source)
        if store is None and len(self.config.stores) == 1:
            store = next(iter(self.config.stores))
        if store is not None and store in self.storage.local_stores:
            return self.storage.local_stores[store]
        return S3Locator()

    # --- dispatch -----------------------------------------------------------------------

    def _dispatch(self, event_ids: Sequence[int]) -> int:
        """Settle each still-pending event of `event_ids`; returns how many were settled.

        A chunk of events costs two transactions whatever its size: the jobs its rules make
        are created together, then the events are marked together. The executor is woken
        after each chunk, so the first jobs of a large batch run while the rest are
        dispatched.
        """
        settled = 0
        with self._dispatch_lock:
            for start in range(0, len(event_ids), DISPATCH_READ):
                # Read under the lock, a chunk at a time: an event that another dispatcher of
                # this process settled meanwhile is skipped (`mark_many` settles only pending ones).
                records = self.inbox.get_many(event_ids[start : start + DISPATCH_READ])
                plans = []
                for record in records:
                    if record.outcome != Outcome.PENDING:
                        continue  # settled meanwhile by another dispatcher
                    with log_context(event_id=record.id):
                        plan = self._plan(record)
                    if plan is not None:  # None: postponed
                        plans.append(plan)
                created = self._carry_out(plans)
                settled += len(plans)
                if created and self.on_jobs_created is not None:
                    self.on_jobs_created()
        return settled

    def _plan(self, record: EventRecord) -> _Plan | None:
        """What the triggers make of one event: rule jobs to create, handler calls done (a
        handler runs now); None if postponed."""
        event = event_from_record(record)
        matching = [t for t in self.triggers if t.matches(event)]
        if not matching:
            return _Plan(record, ignored=self._ignored_reason(event))
        api_url = self.api_url_getter() if self.api_url_getter is not None else None
        if (
            self.api_url_getter is not None
            and api_url is None
            and any(t.kind == "handler" for t in matching)
        ):
            return None  # the handler's SDK calls need the API: wait until it serves
        locator = self.locator_for(record.source)
        plan = _Plan(record)
        for trigger in matching:
            if trigger.kind == "rule":
                plan.steps.append(self._rule_job(trigger, event, record, locator))
            else:
                plan.steps.append(self._call_handler(trigger, event, record, api_url))
        return plan

    def _carry_out(self, plans: Sequence[_Plan]) -> bool:
        """Create the plans' jobs (one transaction), then settle their events (another);
        whether any job was created."""
        rule_jobs = [step for plan in plans for step in plan.steps if isinstance(step, _RuleJob)]
        created = self.jobs.create_many([step.job for step in rule_jobs])
        for step, was_created in zip(rule_jobs, created, strict=True):
            if was_created:
                with log_context(job_id=step.job.job_id, event_id=step.job.event_id):
                    log.info(
                        "event %s: trigger %s created job %s",
                        step.job.event_id,
                        step.trigger,
                        step.job.spec.name,
                    )
        self.inbox.mark_many([plan.settlement() for plan in plans])
        return any(created)

    def _rule_job(
        self, trigger: Trigger, event: S3Event, record: EventRecord, locator: Locator
    ) -> _RuleJob | Dispatch:
        """The job a rule makes of the event, or the dispatch saying why it cannot."""
        try:
            spec = trigger.render(event, locator)
            if self.admit is not None:
                self.admit(spec)
        except AutoInferError as error:
            log.warning("event %s: trigger %s: %s", record.id, trigger.name, error)
            return Dispatch(trigger.name, error=str(error))
        job = NewJob(
            spec,
            job_id=trigger.job_id(event),
            source=f"trigger:{trigger.name}",
            event_id=str(record.id),
            max_attempts=trigger.config.max_attempts,
        )
        return _RuleJob(trigger.name, job)

    def _call_handler(
        self, trigger: Trigger, event: S3Event, record: EventRecord, api_url: str | None
    ) -> Dispatch:
        context = LambdaContext(
            function_name=trigger.name,
            aws_request_id=str(record.id),
            invoked_function_arn=f"arn:autoinfer:trigger:{trigger.name}",
            log_stream_name=f"event-{record.id}",
            autoinfer_url=api_url,
        )
        try:
            trigger.call_handler(event, context)
        except Exception as error:  # the handler is user code: any failure is the event's
            log.exception("event %s: handler of trigger %s raised", record.id, trigger.name)
            return Dispatch(trigger.name, error=f"handler raised {type(error).__name__}: {error}")
        return Dispatch(trigger.name, job_id=self._handler_job(trigger, event))

    def _handler_job(self, trigger: Trigger, event: S3Event) -> str | None:
        """The job the handler created through the SDK, if any (POST /v1/jobs derives its id
        from the Idempotency-Key as `deterministic_job_id("api", key)`)."""
        job_id = deterministic_job_id("api", trigger.idempotency_key(event))
        try:
            return self.jobs.get(job_id).id
        except NotFound:
            return None

    def _ignored_reason(self, event: S3Event) -> str:
        same_bucket = [t for t in self.triggers if t.bucket == event.bucket]
        if not same_bucket:
            return f"no trigger for bucket {event.bucket!r}"
        rules = "; ".join(
            f"{t.name}: prefix {t.prefix!r}, suffix {t.suffix!r}, events {t.config.events}"
            for t in same_bucket
        )
        return (
            f"no trigger for bucket {event.bucket!r} matches key {event.key!r} "
            f"({event.event_name}); triggers on that bucket: {rules}"
        )

    def _retry_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.dispatch_pending()
            except Exception:
                log.exception("dispatching pending events failed; trying again in %s s", RETRY_S)
            if self._stop.wait(RETRY_S):
                return

    # --- sources ------------------------------------------------------------------------

    def _build_source(self, index: int, config: SourceConfig, settle_s: float | None) -> Source:
        name = source_name(config)
        if name in self._source_stores:
            name = f"{name}#{index}"
        ctx = SourceContext(
            self.config,
            self.db,
            self.storage,
            self.ingest,
            self.reject,
            self.resolve_secret,
            settle_s,
            wanted=lambda event: any(t.matches(event) for t in self.triggers),
        )
        source, store = build_source(ctx, index, config, name)
        self._source_stores[name] = store
        self._webhooks.extend(ctx.webhooks)
        return source


@dataclass(frozen=True)
class _RuleJob:
    """A job a rule trigger makes of an event, to be created with the rest of its chunk."""

    trigger: str
    job: NewJob


@dataclass
class _Plan:
    """One event's dispatch: the triggers' steps, or why no trigger matched."""

    record: EventRecord
    ignored: str | None = None
    steps: list[_RuleJob | Dispatch] = field(default_factory=list)

    def settlement(self) -> Settlement:
        """The event's outcome once the rule jobs exist (their ids are deterministic)."""
        if self.ignored is not None:
            return Settlement(self.record.id, Outcome.IGNORED, reason=self.ignored)
        dispatches = tuple(
            Dispatch(step.trigger, job_id=step.job.job_id) if isinstance(step, _RuleJob) else step
            for step in self.steps
        )
        errors = [f"{d.trigger}: {d.error}" for d in dispatches if d.error]
        if errors:
            return Settlement(self.record.id, Outcome.FAILED, "; ".join(errors), dispatches)
        return Settlement(self.record.id, Outcome.MATCHED, dispatches=dispatches)


def event_from_record(record: EventRecord) -> S3Event:
    """The event a stored record describes (for dispatching it after a restart)."""
    assert record.bucket is not None and record.key is not None and record.event_name is not None
    assert record.event_time is not None
    return S3Event(
        bucket=record.bucket,
        key=record.key,
        event_name=record.event_name,
        event_time=record.event_time,
        size=record.size,
        etag=record.etag,
        version_id=record.version_id,
        sequencer=record.sequencer,
        flavour=record.flavour or "aws",  # type: ignore[arg-type]
        raw=record.raw or {},
    )


def _literal_only(value: str) -> str:
    if value.startswith("secret:"):
        raise ConfigError(f"{value!r}: no secret store to resolve it from")
    return value
