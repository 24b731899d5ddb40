"""The notifications of one service: its outbox, its senders and the delivery loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from autoinfer.db import Database, utcnow
from autoinfer.errors import ConfigError
from autoinfer.notifications.config import DAY_S, NotificationTarget
from autoinfer.notifications.delivery import NotificationDelivery
from autoinfer.notifications.outbox import Clock, NotificationRecord, Outbox
from autoinfer.notifications.senders import SENDERS, Sender

if TYPE_CHECKING:
    from autoinfer.config import Config, StoreConfig


class Notifications:
    """What the service, the API and the metrics use of notifications."""

    def __init__(
        self,
        db: Database,
        targets: Sequence[NotificationTarget],
        senders: Mapping[str, Sender],
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.targets = {target.name: target for target in targets}
        self.outbox = Outbox(db, targets, clock=clock, on_enqueued=self.wake)
        self.delivery = (
            NotificationDelivery(self.outbox, self.targets, senders) if targets else None
        )

    @classmethod
    def from_config(
        cls, config: Config, db: Database, resolve_secret: Callable[[str], str]
    ) -> Notifications:
        """The configured targets, checked: unique names, known triggers, usable secrets."""
        targets = list(config.notifications)
        validate_targets(targets, {trigger.name for trigger in config.triggers})
        senders = build_senders(targets, config.stores, resolve_secret)
        return cls(db, targets, senders)

    @property
    def enabled(self) -> bool:
        return self.delivery is not None

    def start(self) -> None:
        if self.delivery is not None:
            self.delivery.start()

    def stop(self) -> None:
        if self.delivery is not None:
            self.delivery.stop()

    def wake(self) -> None:
        if self.delivery is not None:
            self.delivery.wake()

    def list(self, **filters: Any) -> tuple[list[NotificationRecord], int]:
        return self.outbox.list(**filters)

    def get(self, notification_id: int) -> NotificationRecord:
        return self.outbox.get(notification_id)

    def redeliver(self, notification_id: int) -> NotificationRecord:
        """Send again now with the same `webhook-id`, retried as its target says."""
        record = self.outbox.get(notification_id)
        target = self.targets.get(record.target)
        retry_for_s = target.retry_for_s if target is not None else DAY_S
        return self.outbox.redeliver(notification_id, retry_for_s=retry_for_s)

    def stats(self) -> dict[str, Any]:
        """Notifications by status (database-wide) and this process's attempts by outcome."""
        outcomes = dict(self.delivery.outcomes) if self.delivery is not None else {}
        return {"counts": self.outbox.counts(), "outcomes": outcomes}


def validate_targets(targets: Sequence[NotificationTarget], trigger_names: set[str]) -> None:
    seen: set[str] = set()
    for target in targets:
        where = f"notifications.{target.name}"
        if target.name in seen:
            raise ConfigError(f"{where}: two notification targets have this name")
        seen.add(target.name)
        unknown = sorted(set(target.triggers or ()) - trigger_names)
        if unknown:
            raise ConfigError(f"{where}: no trigger named {', '.join(unknown)}")


def build_senders(
    targets: Sequence[NotificationTarget],
    stores: Mapping[str, StoreConfig],
    resolve_secret: Callable[[str], str],
) -> dict[str, Sender]:
    return {target.name: SENDERS[target.type](target, stores, resolve_secret) for target in targets}
