"""The delivery loop: a thread that sends due notifications and records each outcome.

A failed attempt is retried after a capped exponential backoff with jitter (the project's
one retry policy, `retrying.jittered_delay`, from the target's `backoff_s` up to
`max_backoff_s`); once the next attempt would come after the notification's `give_up_at`
(`retry_for_s` after the job ended, a day by default) it is marked `failed`.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from autoinfer.notifications.config import NotificationTarget
from autoinfer.notifications.outbox import Claimed, Outbox
from autoinfer.notifications.senders import DeliveryError, Outgoing, Sender
from autoinfer.retrying import jittered_delay

log = logging.getLogger("autoinfer.notifications")

#: The longest the loop sleeps between looks at the outbox (another replica's rows, a lapsed
#: claim); a job's end wakes it at once.
POLL_S = 1.0
BATCH = 20
SENDING_THREADS = 4


def retry_wait_s(attempt: int, target: NotificationTarget, rng: random.Random) -> float:
    """How long to wait after failed attempt number `attempt`: drawn from [d/2, d], with d
    the target's capped exponential backoff."""
    return jittered_delay(attempt, base_s=target.backoff_s, max_s=target.max_backoff_s, rng=rng)


class NotificationDelivery:
    """Sends due notifications from the outbox through each target's sender."""

    def __init__(
        self,
        outbox: Outbox,
        targets: Mapping[str, NotificationTarget],
        senders: Mapping[str, Sender],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.targets = dict(targets)
        self.senders = dict(senders)
        self.rng = rng or random.Random()
        self.outcomes: Counter[str] = Counter()  # this process's attempts: delivered|retry|failed
        self.lease_s = max((t.timeout_s for t in self.targets.values()), default=10.0) * 2 + 10
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(SENDING_THREADS, "autoinfer-notify")
        self._lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="autoinfer-notify", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        for sender in self.senders.values():
            sender.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except Exception:
                log.exception("notification delivery round failed; trying again")
                sent = 0
            if sent:
                continue
            self._wake.wait(self._idle_wait())
            self._wake.clear()

    def _idle_wait(self) -> float:
        try:
            due = self.outbox.next_due()
        except Exception:  # noqa: BLE001
            return POLL_S
        if due is None:
            return POLL_S
        return max(0.0, min(POLL_S, (due - self.outbox.clock()).total_seconds()))

    # --- one round ----------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim the due notifications and attempt each once; returns how many."""
        claimed = self.outbox.claim_due(lease_s=self.lease_s, limit=BATCH)
        if not claimed:
            return 0
        list(self._pool.map(self.attempt, claimed))
        return len(claimed)

    def attempt(self, claimed: Claimed) -> str:
        """One delivery attempt of `claimed`; records and returns its outcome."""
        target = self.targets.get(claimed.target)
        sender = self.senders.get(claimed.target)
        if target is None or sender is None:
            self.outbox.failed(claimed, f"target {claimed.target!r} is no longer configured")
            return self._count("failed")
        try:
            sender.send(Outgoing(claimed.webhook_id, claimed.event_type, claimed.body))
        except DeliveryError as error:
            return self._after_failure(claimed, target, str(error))
        except Exception as error:  # noqa: BLE001 - a sender bug is one failed attempt
            return self._after_failure(claimed, target, f"{type(error).__name__}: {error}")
        self.outbox.delivered(claimed)
        log.info(
            "notification %s (%s) delivered to %s",
            claimed.webhook_id,
            claimed.event_type,
            claimed.target,
        )
        return self._count("delivered")

    def _after_failure(self, claimed: Claimed, target: NotificationTarget, error: str) -> str:
        now = self.outbox.clock()
        wait = retry_wait_s(claimed.attempts, target, self.rng)
        if now + timedelta(seconds=wait) > claimed.give_up_at:
            self.outbox.failed(claimed, f"gave up after {claimed.attempts} attempt(s): {error}")
            log.warning(
                "notification %s to %s failed for good: %s", claimed.webhook_id, target.name, error
            )
            return self._count("failed")
        self.outbox.retry_at(claimed, now + timedelta(seconds=wait), error)
        log.warning(
            "notification %s to %s: attempt %d failed (%s); retry in %.1f s",
            claimed.webhook_id,
            target.name,
            claimed.attempts,
            error,
            wait,
        )
        return self._count("retry")

    def _count(self, outcome: str) -> str:
        with self._lock:
            self.outcomes[outcome] += 1
        return outcome
