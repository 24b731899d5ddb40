"""The S3 server goes away for 10 s while results are being uploaded: every result still
arrives, once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.s3_server import REGION, aws_client
from tests.support.service_harness import (
    ServiceProcess,
    classify_trigger,
    make_object,
    notification,
)

OUTAGE_S = 10.0
SERVER = Path(__file__).with_name("s3_outage_server.py")


@dataclass
class OutageS3:
    """moto in a subprocess whose port can be closed and reopened, its data kept."""

    process: subprocess.Popen[str]
    endpoint: str

    def command(self, line: str, answer: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == answer

    def stop(self) -> None:
        self.command("stop", "stopped")

    def start(self) -> None:
        self.command("start", "started")

    def client(self) -> Any:
        return aws_client(
            "s3", self.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
        )


@pytest.fixture
def outage_s3(tmp_path: Path) -> Iterator[OutageS3]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    with (tmp_path / "s3.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(SERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    assert process.stdout is not None
    ready = process.stdout.readline().split()
    assert ready[:1] == ["ready"], f"the S3 server did not start: {ready}"
    try:
        yield OutageS3(process, f"http://127.0.0.1:{ready[1]}")
    finally:
        process.kill()
        process.wait(10)


def aws_env(tmp_path: Path) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def deliver(service: ServiceProcess, records: list[dict[str, Any]]) -> None:
    for record in records:
        response = service.post_event(notification(record))
        assert response.status_code == 200, response.text


@pytest.mark.slow
def test_results_uploaded_during_an_s3_outage_all_arrive_once_it_returns(
    serve: Callable[..., ServiceProcess], outage_s3: OutageS3, tmp_path: Path
) -> None:
    s3 = outage_s3.client()
    s3.create_bucket(Bucket="results")
    # With versioning, an object written twice would show two versions.
    s3.put_bucket_versioning(Bucket="results", VersioningConfiguration={"Status": "Enabled"})
    store = tmp_path / "buckets"
    records = [make_object(store, "data", f"incoming/obj-{i:02d}.zip", i) for i in range(12)]
    service = serve(
        triggers=[classify_trigger(output_uri="s3://results/processed")],
        stores={
            "local": {"type": "local", "root": str(store)},
            "lake": {"type": "s3", "endpoint_url": outage_s3.endpoint, "region": REGION},
        },
        env=aws_env(tmp_path),
    )
    deliver(service, records[:4])
    service.wait_for(lambda: service.count_jobs("finished") == 4, 120, "the first results")

    outage_s3.stop()
    stopped_at = time.monotonic()
    deliver(service, records[4:])

    def retrying_an_upload() -> bool:
        for job in service.jobs(status="uploading"):
            lines = service.get(f"/v1/jobs/{job['id']}/logs")["lines"]
            if any("upload failed" in line["line"] for line in lines):
                return True
        return False

    service.wait_for(retrying_an_upload, 60, "an upload to fail and be retried")
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
    outage_s3.start()
    service.wait_for(lambda: service.count_jobs("finished") == 12, 180, "every result")

    versions = s3.list_object_versions(Bucket="results", Prefix="processed/")["Versions"]
    keys = sorted(version["Key"] for version in versions)
    assert keys == [f"processed/obj-{i:02d}.zip" for i in range(12)]  # each once, one version
    jobs = service.jobs()
    assert all(job["status"] == "finished" and job["attempt"] == 1 for job in jobs)
    assert all([t["status"] for t in job["transitions"]].count("finished") == 1 for job in jobs)
    retried = [job["name"] for job in jobs if _log_mentions(service, job["id"], "upload failed")]
    assert retried, "no upload met the outage"
    assert all(name >= "obj-04" for name in retried)


def _log_mentions(service: ServiceProcess, job_id: str, text: str) -> bool:
    lines = service.get(f"/v1/jobs/{job_id}/logs")["lines"]
    return any(text in line["line"] for line in lines)
