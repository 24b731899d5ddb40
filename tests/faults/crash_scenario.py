"""The crash scenario shared by the fault test and `bench/soak.py`.

N objects land in a local store; each is announced through the webhook twice, 10% three times,
in shuffled order, by senders that retry whatever gets no answer; meanwhile the service is
killed with SIGKILL at random moments while jobs run, and restarted. In the end every object
must have exactly one job, finished exactly once, and exactly one result object, and the event
log must hold every delivery.
"""

from __future__ import annotations

import random
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from autoinfer.jobs.infra import infra_retries
from tests.support.service_harness import (
    LIVE,
    ServiceProcess,
    WebhookSender,
    classify_trigger,
    free_port,
    make_object,
    notification,
    service_config,
)

TEMP_PREFIX = ".autoinfer-upload-"  # the local store's half-written uploads
FULL_RUN = [*LIVE, "finished"]  # the statuses of an attempt, from claim to result


@dataclass
class CrashReport:
    """What the scenario observed; `problems` lists every broken promise, empty when all held."""

    objects: int
    deliveries: int
    kills: int
    attempts_cut: int = 0
    results: int = 0
    lost: int = 0
    duplicated: int = 0
    jobs_recovered: int = 0
    events_recorded: int = 0
    events_duplicate: int = 0
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"objects={self.objects} deliveries={self.deliveries} kills={self.kills} "
            f"cut_requests={self.attempts_cut} results={self.results} "
            f"jobs_rerun_after_kill={self.jobs_recovered} events={self.events_recorded} "
            f"(duplicates {self.events_duplicate})"
        )


def object_key(index: int) -> str:
    return f"incoming/obj-{index:05d}.zip"


def run_crash_scenario(
    workdir: Path,
    *,
    cache_dir: Path,
    objects: int = 200,
    kills: int = 3,
    seed: int = 7,
    progress: Callable[[str], None] = lambda message: None,
    timeout_s: float = 600.0,
) -> CrashReport:
    """Run the scenario in `workdir`; never raises for a broken promise, reports it instead."""
    rng = random.Random(seed)
    started = time.monotonic()
    store = workdir / "buckets"
    records = [make_object(store, "data", object_key(i), i) for i in range(objects)]
    (store / "data" / "processed").mkdir(parents=True, exist_ok=True)
    bodies = []
    for record in records:
        copies = 3 if rng.random() < 0.10 else 2
        bodies.extend([notification(record)] * copies)
    rng.shuffle(bodies)
    report = CrashReport(objects=objects, deliveries=len(bodies), kills=kills)
    progress(f"{objects} objects written, {len(bodies)} deliveries to send, seed {seed}")

    config = service_config(
        workdir,
        port=free_port(),
        cache_dir=cache_dir,
        triggers=[classify_trigger(max_attempts=5)],
    )
    service = ServiceProcess(config, workdir)
    try:
        service.start()
        sender = WebhookSender(service)
        senders = sender.deliver_all(bodies)
        # The first kill lands while deliveries are still arriving, the others when a random
        # share of the work is done; each only while some job is in flight.
        first = rng.uniform(0.2, 0.7) * len(bodies)
        thresholds = sorted(rng.uniform(0.3, 0.9) * objects for _ in range(kills - 1))
        moments: list[Callable[[], bool]] = [lambda: sender.delivered >= first]
        moments += [_finished_at_least(service, threshold) for threshold in thresholds]
        for number, moment in enumerate(moments[:kills], 1):
            _wait(moment, timeout_s, service)
            _wait(lambda: any(service.count_jobs(s) for s in LIVE), timeout_s, service)
            time.sleep(rng.uniform(0, 0.2))
            finished, delivered = service.count_jobs("finished"), sender.delivered
            service.kill()
            progress(
                f"kill {number}/{kills}: SIGKILL with {finished}/{objects} jobs finished, "
                f"{delivered}/{len(bodies)} deliveries acknowledged"
            )
            service.start()
            progress(f"restart {number}/{kills}: service up again")
        senders.join(timeout_s)
        report.attempts_cut = sender.cut
        progress(f"all {sender.delivered} deliveries acknowledged ({sender.cut} cut and resent)")
        if not _wait_settled(service, objects, timeout_s):
            report.problems.append(f"the work did not settle:\n{service.log_tail()}")
        _check(service, store, sender, report)
        # The folders of the attempts that the kills interrupted are cleaned up too.
        scratch = workdir / "service" / "scratch"
        try:
            service.wait_for(lambda: not any(scratch.iterdir()), 30, "stale job folders to go")
        except AssertionError:
            report.problems.append(
                f"job folders left behind: {sorted(p.name for p in scratch.iterdir())}"
            )
        service.terminate()
    finally:
        service.close()
    report.elapsed_s = time.monotonic() - started
    return report


def _finished_at_least(service: ServiceProcess, count: float) -> Callable[[], bool]:
    return lambda: service.count_jobs("finished") >= count


def _wait(
    condition: Callable[[], bool], timeout_s: float, service: ServiceProcess, interval: float = 0.05
) -> None:
    service.wait_for(condition, timeout_s, "the scenario to progress", interval=interval)


def _wait_settled(
    service: ServiceProcess, objects: int, timeout_s: float, stall_s: float = 60.0
) -> bool:
    """Wait until every event is dispatched and every job ended; False after `timeout_s`,
    or once no job has ended for `stall_s` while some are still open."""
    deadline = time.monotonic() + timeout_s
    ended, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        if _settled(service, objects):
            return True
        now_ended = service.count_jobs("finished") + service.count_jobs("failed")
        if now_ended != ended:
            ended, last_change = now_ended, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            return False
        time.sleep(0.5)
    return False


def _settled(service: ServiceProcess, objects: int) -> bool:
    if service.count_events("pending"):
        return False
    if service.count_jobs() < objects:
        return False
    return not any(service.count_jobs(status) for status in ("new", *LIVE))


def _check(
    service: ServiceProcess, store: Path, sender: WebhookSender, report: CrashReport
) -> None:
    problems = report.problems
    jobs = service.jobs()
    by_name = Counter(job["name"] for job in jobs)
    finished_transitions: Counter[str] = Counter()
    for job in jobs:
        finished_transitions[job["name"]] += [t["status"] for t in job["transitions"]].count(
            "finished"
        )
    report.jobs_recovered = sum(
        1
        for job in jobs
        if any("lost its executor" in (t.get("reason") or "") for t in job["transitions"])
    )
    for job in jobs:
        # Every claim is a new attempt, but one lost to a crash is given back (an
        # infrastructure retry); the last one ran from the very start.
        statuses = [t["status"] for t in job["transitions"]]
        claims = statuses.count("waiting for resources")
        given_back = infra_retries(SimpleNamespace(**t) for t in job["transitions"])
        if job["attempt"] != claims - given_back:
            problems.append(
                f"{job['name']}: attempt {job['attempt']} after {claims} claims, "
                f"{given_back} given back"
            )
        last_run = statuses[len(statuses) - 1 - statuses[::-1].index("new") + 1 :]
        if job["status"] == "finished" and last_run != FULL_RUN:
            problems.append(f"{job['name']}: its last attempt went {last_run}")
    processed = store / "data" / "processed"
    result_files = sorted(p.name for p in processed.iterdir() if not p.name.startswith(TEMP_PREFIX))
    report.results = len(result_files)
    expected = {f"obj-{i:05d}" for i in range(report.objects)}

    lost = duplicated = 0
    for name in sorted(expected):
        result = processed / f"{name}.zip"
        if by_name[name] == 0 or finished_transitions[name] == 0 or not result.is_file():
            lost += 1
            problems.append(
                f"{name}: lost (jobs {by_name[name]}, finished {finished_transitions[name]}, "
                f"result {'present' if result.is_file() else 'missing'})"
            )
            continue
        if by_name[name] > 1 or finished_transitions[name] > 1:
            duplicated += 1
            problems.append(
                f"{name}: done twice ({by_name[name]} jobs, {finished_transitions[name]} finishes)"
            )
        index = int(name.rpartition("-")[2])
        with zipfile.ZipFile(result) as archive:
            if f"img-{index}_pred.json" not in archive.namelist():
                problems.append(f"{name}.zip: holds {archive.namelist()}, not its prediction")
    strays = sorted(set(result_files) - {f"{name}.zip" for name in expected})
    duplicated += len(strays)
    if strays:
        problems.append(f"unexpected result objects: {strays[:10]}")
    failed = [job["name"] for job in jobs if job["status"] != "finished"]
    if failed:
        problems.append(f"jobs not finished: {failed[:10]}")
    report.lost, report.duplicated = lost, duplicated

    events = service.events()
    report.events_recorded = len(events)
    outcomes = Counter(event["outcome"] for event in events)
    report.events_duplicate = outcomes["duplicate"]
    if outcomes["matched"] != report.objects:
        problems.append(
            f"{outcomes['matched']} events matched a trigger, expected {report.objects}"
        )
    unexpected = {k: v for k, v in outcomes.items() if k not in ("matched", "duplicate")}
    if unexpected:
        problems.append(f"events with other outcomes: {unexpected}")
    # Every acknowledged delivery is recorded; a delivery whose answer was cut by a kill may
    # have been recorded too before it was sent again, never more than once per cut attempt.
    recorded_ids = {event["id"] for event in events}
    missing = set(sender.acked) - recorded_ids
    if missing:
        problems.append(f"{len(missing)} acknowledged deliveries are not in the event log")
    if len(sender.acked) != report.deliveries:
        problems.append(f"{len(sender.acked)} deliveries acknowledged, {report.deliveries} sent")
    if not report.deliveries <= len(events) <= report.deliveries + sender.cut:
        problems.append(
            f"{len(events)} events recorded for {report.deliveries} deliveries "
            f"and {sender.cut} cut requests"
        )
