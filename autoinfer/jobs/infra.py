"""Infrastructure failures: attempts lost to autoinfer itself rather than to the job.

An attempt whose executor vanished — the service killed or crashed, its host lost, a shutdown
whose grace ran out before the job was handed back — says nothing about the job. Such an
attempt is not counted against the job's `max_attempts`: the job goes back in the queue with
the attempt given back. These retries have their own cap, so that a job that brings its
service down every time still ends (failed, saying so).

The retries are counted from the job's committed transitions: each is a move back to `new`
whose reason carries `MARK`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Infrastructure retries a job gets before it fails.
MAX_INFRA_RETRIES = 3
#: In the reason of every transition that is an infrastructure retry (and only there).
MARK = "infrastructure retry"


def infra_retries(transitions: Iterable[Any]) -> int:
    """How many infrastructure retries a job has had (its transitions, any read model)."""
    return sum(1 for t in transitions if t.status == "new" and MARK in (t.reason or ""))


def infra_retry_reason(lost: str, retry: int) -> str:
    return f"{lost}; {MARK} {retry} of {MAX_INFRA_RETRIES}, not counted as an attempt"


def infra_give_up_reason(lost: str, retries: int) -> str:
    return f"{lost} after {retries} {MARK}(s): giving up"
