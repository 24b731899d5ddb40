"""Prometheus metrics, collected from the service's state at scrape time."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from autoinfer.jobs.spec import Status


class ServiceCollector(Collector):
    """Reads counts from the database and the executor on every scrape."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self):  # type: ignore[no-untyped-def]
        jobs = GaugeMetricFamily("autoinfer_jobs", "Jobs by status", labels=["status"])
        counts = self.service.jobs.counts_by_status()
        for status in Status:
            jobs.add_metric([status.value], counts.get(status.value, 0))
        yield jobs
        stats = self.service.executor.stats()
        running = GaugeMetricFamily("autoinfer_executor_running_jobs", "Jobs running in this executor")
        running.add_metric([], stats.get("running", 0))
        yield running
        event_counts = getattr(self.service.pipeline, "metrics_counts", None)
        if callable(event_counts):
            events = GaugeMetricFamily(
                "autoinfer_events", "Events received by outcome and source", labels=["source", "outcome"]
            )
            for (source, outcome), count in event_counts().items():
                events.add_metric([source, outcome], count)
            yield events


def render(service: Any) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))
    return generate_latest(registry), CONTENT_TYPE_LATEST
