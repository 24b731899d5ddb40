"""Two `autoinfer serve` processes sharing one PostgreSQL database.

Every event is delivered to both replicas (as two notification targets would), so each
replica sees each event: the inbox must store it once, one job must be created and run once,
and when a replica dies (SIGKILL) the other takes over its expired leases.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import select

from autoinfer.db import Database
from autoinfer.events.model import object_created, s3_record
from autoinfer.inbox import EventRow
from autoinfer.jobs.service import JobService
from autoinfer.jobs.store import JobRow, LogRow
from tests.support.serve_process import WEBHOOK_TOKEN, Replica

EVENTS = 200
API_KEY = "ai_replica-test-key"
LEASE_S = 2
# The deadline only keeps a broken build from hanging the suite; nothing asserts on time.
FINISH_TIMEOUT_S = 240

WORKER = """\
echo "$AUTOINFER_JOB_ID" >> "$LEDGER"
sleep 0.05
echo "$AUTOINFER_JOB_NAME" > "$AUTOINFER_OUTPUT_PATH/result.txt"
"""


class Cluster:
    """A local bucket with EVENTS input archives, a model, and replicas on one database."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.buckets = root / "buckets"
        self.ledger = root / "ledger.txt"
        self.ledger.touch()
        model = root / "model"
        model.mkdir()
        (model / "run.sh").write_text(WORKER)
        self.config = root / "autoinfer.yaml"
        self.config.write_text(yaml.safe_dump(self._settings(model)))
        self.env = {
            **os.environ,
            "AUTOINFER_API_KEY": API_KEY,
            # Replicas share the database, so they must share the key of its secrets too.
            "AUTOINFER_MASTER_KEY": Fernet.generate_key().decode(),
        }
        self.notifications = [self._make_input(i) for i in range(EVENTS)]
        self.jobs = JobService(Database(database_url))
        self.replicas: list[Replica] = []

    def _settings(self, model: Path) -> dict[str, Any]:
        return {
            "database_url": self.database_url,
            "stores": {"local": {"type": "local", "root": str(self.buckets)}},
            "sources": [{"type": "webhook", "store": "local", "token": WEBHOOK_TOKEN}],
            "triggers": [
                {
                    "name": "run-incoming",
                    "bucket": "data",
                    "prefix": "incoming/",
                    "suffix": ".zip",
                    "job": {
                        "name": "{key_stem}",
                        "model": {"source_type": "local", "source_uri": str(model)},
                        "workers": ["sh run.sh"],
                        "environment": {"env": [{"key": "LEDGER", "value": str(self.ledger)}]},
                        "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
                    },
                }
            ],
            "executor": {"max_jobs": 4, "lease_s": LEASE_S},
            "allowed_paths": [str(self.root)],
            # Every job appends to one ledger file on the host: outside what a sandbox shows.
            "sandbox": "none",
        }

    def _make_input(self, index: int) -> dict[str, Any]:
        """An archive in the bucket and the S3 notification announcing it."""
        path = self.buckets / "data" / "incoming" / f"img-{index:03d}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("input.txt", f"input {index}\n")
        event = object_created(
            "data",
            f"incoming/img-{index:03d}.zip",
            size=path.stat().st_size,
            etag=hashlib.md5(path.read_bytes()).hexdigest(),
            modified=datetime.now(UTC),
            flavour="aws",
        )
        return {"Records": [s3_record(event)]}

    def start(self, *names: str) -> list[Replica]:
        started = [Replica(name, self.config, self.root, self.env) for name in names]
        self.replicas += started
        for replica in started:
            replica.wait_ready()
        return started

    def deliver_to_all(self) -> None:
        """Every notification to every replica, concurrently; each answer 2xx (or no answer
        from a replica that was killed)."""
        sends = [(r, n) for n in self.notifications for r in self.replicas]
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda pair: pair[0].deliver(pair[1]), sends))
        bad = [s for s in statuses if s is not None and not 200 <= s < 300]
        assert not bad, f"webhook answered {bad[:5]}:\n{self.logs()}"

    def wait_until(self, condition: Callable[[dict[str, int]], bool], what: str) -> None:
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = self.jobs.counts_by_status()
            if condition(counts):
                return
            time.sleep(0.2)
        pytest.fail(f"{what}: jobs by status {counts}\n{self.logs()}")

    def ledger_runs(self) -> dict[str, int]:
        runs: dict[str, int] = {}
        for job_id in self.ledger.read_text().split():
            runs[job_id] = runs.get(job_id, 0) + 1
        return runs

    def held_by(self, pid: int) -> list[str]:
        """The jobs whose lease the replica with process id `pid` holds."""
        return [
            job.id
            for job in self.job_rows()
            if job.lease_owner is not None and f"-{pid}-" in job.lease_owner
        ]

    def job_rows(self) -> list[JobRow]:
        with self.jobs.db.session() as session:
            return list(session.scalars(select(JobRow)).all())

    def starts_by_job(self) -> dict[str, list[str]]:
        """Per job, the 'attempt N started on OWNER' lines of its log."""
        with self.jobs.db.session() as session:
            rows = session.execute(
                select(LogRow.job_id, LogRow.line).where(LogRow.line.like("attempt % started on %"))
            ).all()
        starts: dict[str, list[str]] = {}
        for job_id, line in rows:
            starts.setdefault(job_id, []).append(line)
        return starts

    def event_rows(self) -> list[EventRow]:
        with self.jobs.db.session() as session:
            return list(session.scalars(select(EventRow)).all())

    def logs(self) -> str:
        return "\n".join(f"--- {r.name} ---\n{r.log_tail()}" for r in self.replicas)

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        self.jobs.db.dispose()


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    running = Cluster(tmp_path, pg_url)
    try:
        yield running
    finally:
        running.stop()


def owner_pid(start_line: str) -> int:
    """The process id in 'attempt 1 started on <host>-<pid>-<suffix>'."""
    return int(start_line.rsplit(" ", 1)[1].rsplit("-", 2)[1])


@pytest.mark.slow
def test_two_replicas_store_each_event_once_and_run_each_job_once(cluster: Cluster) -> None:
    a, b = cluster.start("a", "b")
    cluster.deliver_to_all()
    cluster.wait_until(lambda c: c.get("finished", 0) == EVENTS, "all jobs finish")

    jobs = cluster.job_rows()
    assert len(jobs) == EVENTS
    assert {job.name for job in jobs} == {f"img-{i:03d}" for i in range(EVENTS)}
    assert all(job.status == "finished" and job.attempt == 1 for job in jobs)
    # Run once: one worker run per job, one start in its log.
    assert cluster.ledger_runs() == {job.id: 1 for job in jobs}
    starts = cluster.starts_by_job()
    assert all(len(starts[job.id]) == 1 for job in jobs)
    # Both replicas did part of the work.
    assert {owner_pid(lines[0]) for lines in starts.values()} == {a.pid, b.pid}
    outputs = sorted(p.name for p in (cluster.buckets / "data" / "processed").iterdir())
    assert outputs == [f"img-{i:03d}.zip" for i in range(EVENTS)]
    # Each event stored once, its second delivery (from the other replica) as a duplicate.
    events = cluster.event_rows()
    originals = [e for e in events if e.outcome == "matched"]
    duplicates = [e for e in events if e.outcome == "duplicate"]
    assert len(originals) == EVENTS and len(duplicates) == EVENTS and len(events) == 2 * EVENTS
    assert all(e.deliveries == 2 for e in originals)
    assert {e.duplicate_of for e in duplicates} == {e.id for e in originals}
    assert {e.source for e in events} == {"webhook:local"}


@pytest.mark.slow
def test_the_surviving_replica_finishes_the_jobs_of_a_killed_one(cluster: Cluster) -> None:
    a, b = cluster.start("a", "b")
    with ThreadPoolExecutor(1) as background:
        delivering = background.submit(cluster.deliver_to_all)
        # Midway: a fifth of the jobs done, the rest still arriving, and a running some.
        cluster.wait_until(lambda c: c.get("finished", 0) >= EVENTS // 5, "a fifth finish")
        cluster.wait_until(lambda _: bool(cluster.held_by(a.pid)), "replica a runs a job")
        a.kill()
        # Read before its leases expire (lease_s) and b takes them over.
        held_by_a = cluster.held_by(a.pid)
        delivering.result()  # b got every event; a answered until it died
    assert held_by_a, "replica a held no job when it was killed; the test proves nothing"
    cluster.wait_until(lambda c: c.get("finished", 0) == EVENTS, "the survivor finishes all")

    jobs = {job.id: job for job in cluster.job_rows()}
    assert len(jobs) == EVENTS and all(job.status == "finished" for job in jobs.values())
    starts = cluster.starts_by_job()
    for job_id in held_by_a:
        job = cluster.jobs.get(job_id)
        # Its lease expired, b requeued it (an infrastructure retry: the lost attempt is
        # given back) and ran it to the end.
        lost = [t for t in job.transitions if t.reason and "lost its executor" in t.reason]
        assert len(lost) == 1 and f"-{a.pid}-" in (lost[0].reason or "")
        assert job.attempt == 1 and owner_pid(starts[job_id][-1]) == b.pid
    # Jobs that a did not hold when it died ran exactly once.
    runs = cluster.ledger_runs()
    for job_id, job in jobs.items():
        if job_id not in held_by_a:
            assert job.attempt == 1 and runs[job_id] == 1
    assert all(job_id in runs for job_id in jobs)
    assert b.process.poll() is None  # the survivor is still up
    events = cluster.event_rows()
    assert sum(e.outcome == "matched" for e in events) == EVENTS
    assert not [e for e in events if e.outcome not in ("matched", "duplicate")]
