"""The reference workflow against a real S3 endpoint (moto's server): S3 → SQS → job → S3."""

import json
import subprocess
import sys
import time
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml

from autoinfer.config import load_config
from tests.conftest import SEED_TRUTH, RunningService
from tests.s3_server import make_bucket_with_queue

BUCKET = "data"


def s3_config(tmp_path: Path, model_cache: Path, endpoint: str, queue_url: str) -> Path:
    config = {
        "data_dir": str(tmp_path / "service"),
        "cache_dir": str(model_cache),
        "stores": {"lake": {"type": "s3", "endpoint_url": endpoint, "region": "us-east-1"}},
        "sources": [{"type": "sqs", "store": "lake", "queue_url": queue_url, "wait_time_s": 1}],
        "triggers": [
            {
                "name": "classify-incoming",
                "bucket": BUCKET,
                "prefix": "incoming/",
                "suffix": ".zip",
                "job": {
                    "name": "{key_stem}",
                    "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
                    "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
                },
            }
        ],
        "executor": {"type": "local", "max_jobs": 2, "lease_s": 5},
    }
    path = tmp_path / "autoinfer.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def wait_for_object(s3: Any, key: str, timeout: float = 180) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    raise AssertionError(f"s3://{BUCKET}/{key} never appeared")


def predictions(archive_bytes: bytes) -> dict[str, dict]:
    with zipfile.ZipFile(BytesIO(archive_bytes)) as archive:
        return {
            name: json.loads(archive.read(name))
            for name in archive.namelist()
            if name.endswith("_pred.json")
        }


def test_push_to_the_bucket_puts_predictions_next_to_it(
    start_service,
    s3_endpoint: str,
    s3_client: Any,
    model_cache: Path,
    seed_zip: Path,
    tmp_path: Path,
) -> None:  # type: ignore[no-untyped-def]
    queue_url = make_bucket_with_queue(s3_endpoint, BUCKET)
    config_file = s3_config(tmp_path, model_cache, s3_endpoint, queue_url)
    running: RunningService = start_service(load_config(config_file))
    pushed = subprocess.run(
        [
            sys.executable,
            "-m",
            "autoinfer.cli",
            "push",
            str(seed_zip),
            f"s3://{BUCKET}/incoming/",
            "--config",
            str(config_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert pushed.returncode == 0, pushed.stderr
    [key] = [
        o["Key"] for o in s3_client.list_objects_v2(Bucket=BUCKET, Prefix="incoming/")["Contents"]
    ]
    name = key.removeprefix("incoming/").removesuffix(".zip")
    assert name.startswith("images-")
    found = predictions(wait_for_object(s3_client, f"processed/{name}.zip"))
    assert len(found) == 5
    for prediction in found.values():
        wnid, _ = SEED_TRUTH[prediction["file"]]
        assert wnid in [c["id"] for c in prediction["classes"]]
    client = running.client()
    job = client.jobs.get(client.jobs.list(name=name)[0].id).dict  # lists carry no spec
    assert job["spec"]["data"]["input_uri"] == f"s3://{BUCKET}/{key}"
    assert job["spec"]["data"]["output_uri"] == f"s3://{BUCKET}/processed"
    assert job["output_location"] == f"s3://{BUCKET}/processed/{name}.zip"


def test_keys_with_spaces_and_unicode_work_end_to_end(
    start_service,
    s3_endpoint: str,
    s3_client: Any,
    model_cache: Path,
    seed_zip: Path,
    tmp_path: Path,
) -> None:  # type: ignore[no-untyped-def]
    queue_url = make_bucket_with_queue(s3_endpoint, BUCKET)
    start_service(load_config(s3_config(tmp_path, model_cache, s3_endpoint, queue_url)))
    s3_client.put_object(
        Bucket=BUCKET, Key="incoming/my photos été.zip", Body=seed_zip.read_bytes()
    )
    assert len(predictions(wait_for_object(s3_client, "processed/my photos été.zip"))) == 5


def test_missing_output_bucket_fails_the_job_with_one_line(
    start_service,
    s3_endpoint: str,
    s3_client: Any,
    model_cache: Path,
    seed_zip: Path,
    tmp_path: Path,
) -> None:  # type: ignore[no-untyped-def]
    queue_url = make_bucket_with_queue(s3_endpoint, BUCKET)
    running = start_service(load_config(s3_config(tmp_path, model_cache, s3_endpoint, queue_url)))
    s3_client.put_object(Bucket=BUCKET, Key="inputs/seed.zip", Body=seed_zip.read_bytes())
    client = running.client()
    job = client.jobs.create_from_spec(
        {
            "name": "to-nowhere",
            "data": {
                "input_uri": f"s3://{BUCKET}/inputs/seed.zip",
                "output_uri": "s3://no-such-bucket/out",
            },
        }
    )
    deadline = time.monotonic() + 180
    while job.status not in ("finished", "failed", "stopped") and time.monotonic() < deadline:
        time.sleep(0.3)
        job.refresh()
    assert job.status == "failed"
    assert (
        job.reason
        == "s3://no-such-bucket/out/to-nowhere.zip: bucket 'no-such-bucket' does not exist (NoSuchBucket)"
    )
