"""`GET /metrics` of a real service: Prometheus text that parses, with counts that match what
the test made happen (events of each outcome, jobs of each status, images, S3 errors)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoinfer.api.metrics import Rate
from autoinfer.config import Config, SourceConfig, StoreConfig, TriggerConfig
from tests.conftest import RunningService
from tests.support.bucket_archives import archive

TOKEN = "metrics-webhook-token"
SOURCE = "webhook:local"
WORKER = """\
if [ -f "$AUTOINFER_DATA_PATH/fail" ]; then echo "told to fail" >&2; exit 3; fi
echo ok > "$AUTOINFER_OUTPUT_PATH/result.txt"
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(api: RunningService) -> Samples:
    """Every sample of `/metrics`, by (name, sorted labels); fails if the text does not parse."""
    response = httpx.get(api.url + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def post_event(api: RunningService, body: dict[str, Any] | bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if isinstance(body, bytes):
        return httpx.post(api.url + "/v1/events/s3", content=body, headers=headers, timeout=30)
    return httpx.post(api.url + "/v1/events/s3", json=body, headers=headers, timeout=30)


def wait_all_ended(api: RunningService, count: int) -> list[Any]:
    client = api.client()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        jobs = client.jobs.list(limit=100)
        if len(jobs) == count and all(j.status in ("finished", "failed", "stopped") for j in jobs):
            return jobs
        time.sleep(0.2)
    pytest.fail(f"jobs did not end: {[(j.name, j.status) for j in client.jobs.list()]}")


@pytest.fixture
def service(
    tmp_path: Path,
    make_config: Callable[..., Config],
    start_service: Callable[..., RunningService],
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> RunningService:
    """A service with a webhook source and a trigger running a shell model on local archives;
    s3:// URIs go to moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    model = tmp_path / "model"
    model.mkdir()
    (model / "run.sh").write_text(WORKER)
    config = make_config(
        stores={"local": StoreConfig(type="local", root=str(tmp_path / "buckets"))},
        sources=[SourceConfig(type="webhook", store="local", token=TOKEN)],
        triggers=[
            TriggerConfig(
                name="run-incoming",
                bucket="data",
                prefix="incoming/",
                suffix=".zip",
                max_attempts=1,
                job={
                    "name": "{key_stem}",
                    "model": {"source_type": "local", "source_uri": str(model)},
                    "workers": ["sh run.sh"],
                    "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
                },
            )
        ],
    )
    return start_service(config)


def test_metrics_count_the_events_and_jobs_that_happened(
    service: RunningService, tmp_path: Path, seed_zip: Path
) -> None:
    before = scrape(service)
    incoming = tmp_path / "buckets" / "data" / "incoming"
    good = [archive(incoming / f"ok-{i}.zip", {"in.txt": str(i)}) for i in range(4)]
    bad = archive(incoming / "broken.zip", {"fail": "1"})
    ignored = archive(tmp_path / "buckets" / "data" / "other" / "x.zip", {"in.txt": "x"})
    for body in [*good, bad, good[0], good[1], ignored]:
        assert post_event(service, body).status_code == 200
    assert post_event(service, b"{not json").status_code == 400
    client = service.client()
    # A built-in job (images) and one whose input bucket does not exist (an S3 error).
    client.jobs.create_from_spec(
        {"name": "seed", "data": {"input_uri": str(seed_zip), "output_uri": str(tmp_path / "out")}}
    )
    client.jobs.create_from_spec(
        {
            "name": "no-bucket",
            "model": {"source_type": "local", "source_uri": str(tmp_path / "model")},
            "workers": ["sh run.sh"],
            "data": {"input_uri": "s3://no-such-bucket/x.zip", "output_uri": str(tmp_path / "out")},
        }
    )
    jobs = wait_all_ended(service, 7)
    assert sorted(j.status for j in jobs).count("finished") == 5, [j.dict for j in jobs]

    after = scrape(service)
    received = value(after, "autoinfer_events_received_total", source=SOURCE)
    assert received == 9  # 5 matched, 2 duplicates, 1 ignored, 1 rejected body
    expected = {"matched": 5, "duplicate": 2, "ignored": 1, "rejected": 1, "failed": 0}
    for outcome, count in expected.items():
        assert value(after, "autoinfer_events_total", source=SOURCE, outcome=outcome) == count
    assert value(after, "autoinfer_inbox_depth") == 0
    assert value(after, "autoinfer_queue_depth") == 0
    assert value(after, "autoinfer_jobs", status="finished") == 5
    assert value(after, "autoinfer_jobs", status="failed") == 2
    assert value(after, "autoinfer_jobs", status="running") == 0
    # One claim per job, one attempt each: the histograms saw every job once.
    assert value(after, "autoinfer_job_transitions_total", status="new") == 7
    assert value(after, "autoinfer_job_transitions_total", status="waiting for resources") == 7
    assert value(after, "autoinfer_job_transitions_total", status="failed") == 2
    assert value(after, "autoinfer_job_queue_wait_seconds_count") == 7
    assert value(after, "autoinfer_job_duration_seconds_count", status="finished") == 5
    assert value(after, "autoinfer_job_duration_seconds_count", status="failed") == 2
    assert value(after, "autoinfer_job_duration_seconds_sum", status="finished") > 0
    assert value(after, "autoinfer_job_duration_seconds_bucket", status="failed", le="+Inf") == 2
    # The seed archive's five images went through this replica's warm workers.
    assert value(after, "autoinfer_images_classified_total") == 5
    workers = sum(value(after, "autoinfer_predictor_workers", state=s) for s in ("busy", "idle"))
    assert workers >= 1
    assert value(after, "autoinfer_executor_max_jobs") == 2
    errors = "autoinfer_s3_request_errors_total"
    labels = {"store": "default", "code": "NoSuchBucket"}
    assert value(after, errors, **labels) - value(before, errors, **labels) == 1


def test_a_second_scrape_does_not_count_jobs_again(
    service: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    scrape(service)
    client = service.client()
    client.jobs.create_from_spec(
        {
            "name": "once",
            "model": {"source_type": "local", "source_uri": str(tmp_path / "model")},
            "workers": ["sh run.sh"],
            "data": {"input_uri": str(seed_zip), "output_uri": str(tmp_path / "out")},
        }
    )
    wait_all_ended(service, 1)
    first = scrape(service)
    second = scrape(service)
    for samples in (first, second):
        assert value(samples, "autoinfer_job_duration_seconds_count", status="finished") == 1
        assert value(samples, "autoinfer_job_queue_wait_seconds_count") == 1
        assert value(samples, "autoinfer_job_transitions_total", status="finished") == 1


def test_transition_counts_include_the_history_before_the_first_scrape(
    service: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    client = service.client()
    for name in ("early-1", "early-2"):
        client.jobs.create_from_spec(
            {
                "name": name,
                "model": {"source_type": "local", "source_uri": str(tmp_path / "model")},
                "workers": ["sh run.sh"],
                "data": {"input_uri": str(seed_zip), "output_uri": str(tmp_path / "out")},
            }
        )
    wait_all_ended(service, 2)
    samples = scrape(service)  # the first scrape of this service
    assert value(samples, "autoinfer_job_transitions_total", status="finished") == 2
    assert value(samples, "autoinfer_job_transitions_total", status="new") == 2
    # The histograms observe what ends after this replica started watching.
    assert value(samples, "autoinfer_job_duration_seconds_count", status="finished") == 0


def test_images_per_second_is_measured_over_the_window() -> None:
    rate = Rate(window_s=60)
    assert rate.update(0, now=100.0) == 0.0
    assert rate.update(50, now=110.0) == 5.0
    assert rate.update(150, now=120.0) == 7.5
    # Samples older than the window drop out: the rate follows the recent pace.
    assert rate.update(150, now=200.0) == 0.0
    assert rate.update(0, now=201.0) == 0.0  # the pool restarted: a new count from zero
