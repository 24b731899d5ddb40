"""The pipeline measured end to end: zips dropped into a watched `incoming/` of a real service.

The service runs in this process as `autoinfer serve` runs it (AutoInferService behind its API
on a loopback port): a local store, the watch source, the `classify-incoming` trigger, the
local executor and the warm predictor pool. A zip is written under a hidden name and renamed
into `incoming/` (it appears complete, as an S3 PUT does); its result is the moment its
`processed/<name>.zip` appears (uploads are atomic). Both moments are the files' ctime (set by
the rename), so the bench's own polling neither shifts them nor needs to be frequent. After each
measurement every job is checked: finished, one prediction file per image.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from autoinfer.cli.demo import BUCKET, classify_incoming_trigger
from autoinfer.config import Config, SourceConfig, StoreConfig

if TYPE_CHECKING:
    from autoinfer.api.server import BackgroundServer

POLL_S = 0.2  # how often the result folder is looked at (the times come from ctime)


def bench_config(root: Path, cache_dir: Path, model: str = "efficientnet_lite0") -> Config:
    """The reference workflow's configuration as README "Running the service" writes it: a
    local store, a watch source, the classify-incoming trigger; every setting at its shipped
    default (only the folders and, for the int8 run, the trigger's model differ)."""
    trigger = classify_incoming_trigger()
    if model != "efficientnet_lite0":
        job = dict(trigger.job or {})
        job["model"] = {**job["model"], "source_uri": model}
        trigger = trigger.model_copy(update={"job": job})
    return Config(
        data_dir=root / "state",
        cache_dir=cache_dir,
        stores={"local": StoreConfig(type="local", root=str(root / "buckets"))},
        sources=[SourceConfig(type="watch", store="local")],
        triggers=[trigger],
    )


def shipped_settings(config: Config) -> dict[str, object]:
    """The settings that decide the service's speed, as the bench runs them (the defaults)."""
    import os

    pool = config.predictors
    workers = pool.worker_count
    return {
        "watch.settle_s": config.sources[0].settle_s,
        "executor.max_jobs": config.executor.max_jobs,
        "predictors.workers": workers,
        "predictors.threads_per_worker": pool.threads_per_worker
        or max(1, (os.cpu_count() or 1) // workers),
        "predictors.batch_size": pool.batch_size,
        "predictors.max_wait_ms": pool.max_wait_ms,
        "predictors.max_jobs": pool.job_limit,
    }


@dataclass
class Timings:
    """When each upload was dropped and when its result appeared (the files' ctime, s)."""

    dropped: dict[str, float]
    results: dict[str, float]

    @property
    def latencies(self) -> list[float]:
        return [self.results[name] - self.dropped[name] for name in self.dropped]

    @property
    def span_s(self) -> float:
        """From the first drop to the last result."""
        return max(self.results.values()) - min(self.dropped.values())


class BenchService:
    """`with BenchService(root, cache) as service:` a running service to drop zips into."""

    def __init__(self, root: Path, cache_dir: Path, model: str = "efficientnet_lite0") -> None:
        self.root = root
        self.incoming = root / "buckets" / BUCKET / "incoming"
        self.processed = root / "buckets" / BUCKET / "processed"
        self.config = bench_config(root, cache_dir, model)
        self._server: BackgroundServer | None = None

    def __enter__(self) -> Self:
        from autoinfer.api.server import BackgroundServer
        from autoinfer.service import AutoInferService

        self.incoming.mkdir(parents=True, exist_ok=True)
        self.processed.mkdir(parents=True, exist_ok=True)
        self.service = AutoInferService(self.config)
        self._server = BackgroundServer(self.service)
        self._server.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.stop()

    def warm_up(self, source: Path, images: int = 64, rounds: int = 5) -> None:
        """Classify a zip of the first `images` images of `source` (under other names) until
        every worker process of the pool has loaded the model."""
        wanted = self.config.predictors.worker_count
        with zipfile.ZipFile(source) as archive:
            names = [info for info in archive.infolist() if not info.is_dir()][:images]
            payloads = [(info.filename, archive.read(info)) for info in names]
        for number in range(rounds):
            upload = self.root / f"warmup-{number}.zip"
            with zipfile.ZipFile(upload, "w", zipfile.ZIP_STORED) as archive:
                for name, payload in payloads:
                    archive.writestr(f"warmup-{number}-{name}", payload)
            self.run([upload])
            stats = self.service.predictors.stats()
            if stats["workers_idle"] + stats["workers_busy"] >= wanted:
                return

    def run(self, zips: Sequence[Path], timeout_s: float = 600) -> Timings:
        """Drop `zips` at once (copied beside `incoming/` first, then renamed in) and wait for
        every result."""
        staged = []
        for source in zips:
            hidden = self.incoming / f".{source.name}.part"
            shutil.copyfile(source, hidden)
            staged.append((hidden, self.incoming / source.name))
        for hidden, target in staged:
            os.replace(hidden, target)
        dropped = {target.stem: target.stat().st_ctime_ns / 1e9 for _, target in staged}
        return Timings(dropped, self._wait(set(dropped), timeout_s))

    def _wait(self, names: set[str], timeout_s: float) -> dict[str, float]:
        results: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        while len(results) < len(names):
            now = time.monotonic()
            if now > deadline:
                missing = sorted(names - set(results))
                raise RuntimeError(f"no result after {timeout_s} s for {missing[:5]} ...")
            with os.scandir(self.processed) as entries:
                for entry in entries:
                    stem = entry.name.removesuffix(".zip")
                    if stem in names and stem not in results:
                        results[stem] = entry.stat().st_ctime_ns / 1e9
            time.sleep(POLL_S)
        return results

    def job_count(self) -> int:
        return self.service.jobs.list(limit=1)[1]

    def api_latency_ms(self, requests: int = 21) -> tuple[float, float]:
        """Median milliseconds of GET /v1/jobs (the dashboard's first page) and GET /metrics,
        over real HTTP on loopback."""
        import httpx

        assert self._server is not None
        headers = {"Authorization": f"Bearer {self.service.api_key}"}
        medians = []
        with httpx.Client(base_url=self._server.url, headers=headers, timeout=30) as client:
            for path in ("/v1/jobs", "/metrics"):
                client.get(path).raise_for_status()
                times = []
                for _ in range(requests):
                    started = time.perf_counter()
                    client.get(path).raise_for_status()
                    times.append((time.perf_counter() - started) * 1000)
                medians.append(statistics.median(times))
        return medians[0], medians[1]

    def check(self, expected: dict[str, int]) -> None:
        """Every job finished, and each result zip holds one classified prediction per image."""
        jobs = {job.name: job for job in self.service.jobs.list(limit=100_000)[0]}
        for name, images in expected.items():
            job = jobs.get(name)
            if job is None or job.status != "finished":
                status = job.status if job else "missing"
                raise RuntimeError(f"job {name}: {status} ({job.reason if job else ''})")
            with zipfile.ZipFile(self.processed / f"{name}.zip") as archive:
                predictions = [n for n in archive.namelist() if n.endswith("_pred.json")]
            if len(predictions) != images:
                raise RuntimeError(f"{name}.zip: {len(predictions)} predictions, not {images}")


def service_cpu_s() -> float:
    """CPU seconds this process (the in-process service: API, watch source, executor, pool's
    feeding threads; not its worker processes) has used so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`, interpolated."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]
