"""Prometheus metrics for `GET /metrics`, read from the service's state at scrape time.

Two scopes, because replicas share one database:

- database-wide, the same on every replica (aggregate them with `max`, not `sum`): events by
  source and outcome, jobs by status, inbox and queue depth, job status transitions;
- this process only: images classified and images/s, warm predictor workers, executor slots,
  failed S3 requests; and the job duration and queue-wait histograms, which observe the jobs
  that ended (or were claimed) since this process was first scraped, whichever replica ran
  them (read from the committed status transitions).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from autoinfer import __version__
from autoinfer.db import Database
from autoinfer.inbox import Outcome
from autoinfer.jobs.spec import TERMINAL, Status
from autoinfer.jobs.store import TransitionRow
from autoinfer.notifications.metrics import notification_metrics
from autoinfer.storage.s3 import request_error_counts

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, float("inf"))
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, float("inf"))
#: How far back (in transition ids) each scrape looks again: on PostgreSQL, a transaction that
#: took an id earlier may commit after a later one, so ids are not seen in commit order.
LOOKBACK_IDS = 2000
#: Transitions read per scrape at most.
PAGE = 20_000
#: The window over which images/s is measured.
RATE_WINDOW_S = 60.0


def render(service: Any) -> tuple[bytes, str]:
    """The service's metrics in Prometheus text format, and its content type."""
    return metrics_for(service).render(), CONTENT_TYPE_LATEST


_by_service: weakref.WeakKeyDictionary[Any, ServiceMetrics] = weakref.WeakKeyDictionary()
_by_service_lock = threading.Lock()


def metrics_for(service: Any) -> ServiceMetrics:
    """The one ServiceMetrics of `service` (its histograms and rates live across scrapes)."""
    with _by_service_lock:
        metrics = _by_service.get(service)
        if metrics is None:
            metrics = _by_service[service] = ServiceMetrics(service)
        return metrics


class ServiceMetrics:
    """The registry of one service: its collector, and the state kept between scrapes."""

    def __init__(self, service: Any) -> None:
        # Weakly: this object is the value of a WeakKeyDictionary keyed by the service.
        self._service = weakref.ref(service)
        self.registry = CollectorRegistry()
        self.timings = JobTimings(service.db, self.registry)
        self.images_rate = Rate(RATE_WINDOW_S)
        self.registry.register(ServiceCollector(self))
        self._lock = threading.Lock()

    @property
    def service(self) -> Any:
        service = self._service()
        if service is None:
            raise RuntimeError("the service of these metrics is gone")
        return service

    def render(self) -> bytes:
        with self._lock:  # two scrapes at once would read the same transitions twice
            self.timings.update()
            return generate_latest(self.registry)


class ServiceCollector(Collector):
    """Counts read from the database, the executor and the predictor pool on every scrape."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        service = self.metrics.service
        info = GaugeMetricFamily(
            "autoinfer_build_info", "Version of this replica", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        yield from _event_metrics(service.pipeline.metrics_counts())
        yield from _job_metrics(service.jobs.counts_by_status(), self.metrics.timings)
        yield from _executor_metrics(service.executor.stats())
        yield from _predictor_metrics(_pool_stats(service), self.metrics.images_rate)
        yield from notification_metrics(service.notifications.stats())
        yield from _disk_metrics(service.data_usage)
        errors = CounterMetricFamily(
            "autoinfer_s3_request_errors",
            "Failed S3 requests of this process, by store and error code",
            labels=["store", "code"],
        )
        for (store, code), count in sorted(request_error_counts().items()):
            errors.add_metric([store, code], count)
        yield errors


def _event_metrics(counts: dict[tuple[str, str], int]) -> Iterator[Metric]:
    received = CounterMetricFamily(
        "autoinfer_events_received",
        "Deliveries stored in the inbox (database-wide), duplicates and rejected bodies included",
        labels=["source"],
    )
    settled = CounterMetricFamily(
        "autoinfer_events",
        "Events by source and what became of them: matched, duplicate, ignored, rejected, failed"
        " (database-wide)",
        labels=["source", "outcome"],
    )
    pending = GaugeMetricFamily(
        "autoinfer_inbox_depth", "Events stored but not yet dispatched (database-wide)"
    )
    by_source: dict[str, int] = {}
    for (source, _), count in counts.items():
        by_source[source] = by_source.get(source, 0) + count
    for source, count in sorted(by_source.items()):
        received.add_metric([source], count)
        for outcome in Outcome:
            if outcome != Outcome.PENDING:
                settled.add_metric([source, outcome.value], counts.get((source, outcome.value), 0))
    pending.add_metric([], sum(n for (_, o), n in counts.items() if o == Outcome.PENDING))
    return iter((received, settled, pending))


def _job_metrics(counts: dict[str, int], timings: JobTimings) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("autoinfer_jobs", "Jobs by status (database-wide)", labels=["status"])
    for status in Status:
        jobs.add_metric([status.value], counts.get(status.value, 0))
    queue = GaugeMetricFamily(
        "autoinfer_queue_depth", "Jobs waiting to be claimed, status new (database-wide)"
    )
    queue.add_metric([], counts.get(Status.NEW.value, 0))
    transitions = CounterMetricFamily(
        "autoinfer_job_transitions",
        "Status changes of jobs by the status entered (database-wide); status=failed counts"
        " jobs that ran out of attempts",
        labels=["status"],
    )
    for status in Status:
        transitions.add_metric([status.value], timings.transitions.get(status.value, 0))
    return iter((jobs, queue, transitions))


def _executor_metrics(stats: dict[str, int]) -> Iterator[Metric]:
    running = GaugeMetricFamily("autoinfer_executor_running_jobs", "Jobs this replica runs now")
    running.add_metric([], stats.get("running", 0))
    yield running
    if "max_jobs" in stats:
        slots = GaugeMetricFamily(
            "autoinfer_executor_max_jobs", "Jobs this replica may run at once"
        )
        slots.add_metric([], stats["max_jobs"])
        yield slots


def _pool_stats(service: Any) -> dict[str, Any]:
    # The pool starts with the first built-in job; a scrape must not start it.
    pool = getattr(service, "_predictors", None)
    return pool.stats() if pool is not None else {}


def _predictor_metrics(stats: dict[str, Any], images_rate: Rate) -> Iterator[Metric]:
    classified = int(stats.get("images_classified", 0))
    images = CounterMetricFamily(
        "autoinfer_images_classified", "Images classified by this replica's built-in models"
    )
    images.add_metric([], classified)
    rate = GaugeMetricFamily(
        "autoinfer_images_per_second",
        f"Images classified per second by this replica over the last {RATE_WINDOW_S:.0f} s",
    )
    rate.add_metric([], images_rate.update(classified))
    workers = GaugeMetricFamily(
        "autoinfer_predictor_workers", "Warm model worker processes by state", labels=["state"]
    )
    for state in ("busy", "idle", "starting"):
        workers.add_metric([state], stats.get(f"workers_{state}", 0))
    queued = GaugeMetricFamily(
        "autoinfer_predictor_images_queued", "Decoded images waiting for a model worker"
    )
    queued.add_metric([], stats.get("images_queued", 0))
    crashes = CounterMetricFamily(
        "autoinfer_predictor_worker_crashes", "Model worker processes that died"
    )
    crashes.add_metric([], stats.get("worker_crashes", 0))
    return iter((images, rate, workers, queued, crashes))


def _disk_metrics(usage: Any) -> Iterator[Metric]:
    size = GaugeMetricFamily(
        "autoinfer_data_dir_bytes",
        "Bytes this replica's data folder takes on disk (measured at most once a minute)",
    )
    size.add_metric([], usage.bytes())
    space = usage.space()
    free = GaugeMetricFamily(
        "autoinfer_data_dir_disk_free_bytes", "Free bytes on the disk holding the data folder"
    )
    free.add_metric([], space.free_bytes)
    return iter((size, free))


class Rate:
    """A per-second rate of a growing count, measured over a sliding window of samples."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, count: int, now: float | None = None) -> float:
        """Record `count` now; the rate since the oldest sample still in the window."""
        now = time.monotonic() if now is None else now
        if self._samples and count < self._samples[-1][1]:
            self._samples.clear()  # the counter restarted (the pool was recreated)
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        first_at, first = self._samples[0]
        return (count - first) / (now - first_at) if now > first_at else 0.0


@dataclass(frozen=True)
class _Transition:
    id: int
    job_id: str
    status: str
    attempt: int
    at: datetime


class JobTimings:
    """Histograms of job durations and queue waits, observed from the committed transitions,
    and the count of transitions by status.

    The first update takes the counts of the whole history at once; each later one reads the
    transitions that appeared since: entering a terminal status observes the attempt's duration
    (from its claim), entering `waiting for resources` (a claim) observes how long the job
    waited since it (re)entered `new`.
    """

    def __init__(self, db: Database, registry: CollectorRegistry) -> None:
        self.db = db
        self.duration = Histogram(
            "autoinfer_job_duration_seconds",
            "From claim to end of each job attempt that ended, by final status (database-wide)",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "autoinfer_job_queue_wait_seconds",
            "From entering status new to being claimed, per attempt (database-wide)",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.transitions: dict[str, int] = {}
        self._cursor: int | None = None  # the highest transition id handled
        self._seen: set[int] = set()  # ids handled within LOOKBACK_IDS of the cursor

    def update(self) -> None:
        """Observe the transitions committed since the last update."""
        if self._cursor is None:
            self._start()
            return
        cursor = self._cursor
        fresh = [t for t in self._read_since(cursor - LOOKBACK_IDS) if t.id not in self._seen]
        if not fresh:
            return
        history = self._history({t.job_id for t in fresh if _times_something(t)})
        for transition in fresh:
            self._observe(transition, history.get(transition.job_id, []))
            self._seen.add(transition.id)
            cursor = max(cursor, transition.id)
        self._cursor = cursor
        self._seen = {seen for seen in self._seen if seen > cursor - LOOKBACK_IDS}

    def _start(self) -> None:
        """Count the history so far; observe only what comes after it."""
        with self.db.session() as session:
            top = session.scalar(select(func.max(TransitionRow.id))) or 0
            counts = session.execute(
                select(TransitionRow.status, func.count())
                .where(TransitionRow.id <= top)
                .group_by(TransitionRow.status)
            ).all()
            recent = session.scalars(
                select(TransitionRow.id).where(
                    TransitionRow.id > top - LOOKBACK_IDS, TransitionRow.id <= top
                )
            ).all()
        self.transitions = dict(counts)
        self._seen = set(recent)
        self._cursor = top

    def _observe(self, transition: _Transition, history: list[_Transition]) -> None:
        self.transitions[transition.status] = self.transitions.get(transition.status, 0) + 1
        earlier = [t for t in history if t.id < transition.id]
        if transition.status in TERMINAL:
            claims = [
                t
                for t in earlier
                if t.status == Status.WAITING_RESOURCES and t.attempt == transition.attempt
            ]
            if claims:  # a job stopped while queued never ran
                seconds = (transition.at - claims[-1].at).total_seconds()
                self.duration.labels(transition.status).observe(max(0.0, seconds))
        elif transition.status == Status.WAITING_RESOURCES:
            queued = [t for t in earlier if t.status == Status.NEW]
            if queued:
                self.queue_wait.observe(max(0.0, (transition.at - queued[-1].at).total_seconds()))

    def _read_since(self, after: int) -> list[_Transition]:
        with self.db.session() as session:
            rows = session.execute(
                _columns().where(TransitionRow.id > after).order_by(TransitionRow.id).limit(PAGE)
            ).all()
        return [_Transition(*row) for row in rows]

    def _history(self, job_ids: Iterable[str]) -> dict[str, list[_Transition]]:
        """Every transition of `job_ids`, oldest first, by job."""
        ids = sorted(job_ids)
        history: dict[str, list[_Transition]] = {}
        with self.db.session() as session:
            for start in range(0, len(ids), 500):
                rows = session.execute(
                    _columns()
                    .where(TransitionRow.job_id.in_(ids[start : start + 500]))
                    .order_by(TransitionRow.id)
                ).all()
                for row in rows:
                    history.setdefault(row[1], []).append(_Transition(*row))
        return history


def _columns():  # the select of a transition's fields, in _Transition's order
    return select(
        TransitionRow.id,
        TransitionRow.job_id,
        TransitionRow.status,
        TransitionRow.attempt,
        TransitionRow.at,
    )


def _times_something(transition: _Transition) -> bool:
    return transition.status in TERMINAL or transition.status == Status.WAITING_RESOURCES
