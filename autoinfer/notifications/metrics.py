"""Prometheus metrics of notifications: the outbox by status (database-wide) and this
process's delivery attempts by outcome."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

STATUSES = ("pending", "delivered", "failed")
OUTCOMES = ("delivered", "retry", "failed")


def notification_metrics(stats: dict[str, Any]) -> Iterator[Metric]:
    """`stats` as `Notifications.stats()` gives them."""
    counts = stats.get("counts", {})
    outbox = GaugeMetricFamily(
        "autoinfer_notifications",
        "Completion notifications by delivery status (database-wide): pending ones await their"
        " next attempt, failed ones gave up",
        labels=["status"],
    )
    for status in STATUSES:
        outbox.add_metric([status], counts.get(status, 0))
    yield outbox
    outcomes = stats.get("outcomes", {})
    attempts = CounterMetricFamily(
        "autoinfer_notification_deliveries",
        "Notification delivery attempts of this process by outcome (delivered, retry: failed and"
        " retried later, failed: gave up)",
        labels=["outcome"],
    )
    for outcome in OUTCOMES:
        attempts.add_metric([outcome], outcomes.get(outcome, 0))
    yield attempts
