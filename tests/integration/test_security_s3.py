"""A secret set through the API as an S3 store's credentials (`credentials: secret:NAME`),
against moto checking signatures: the ambient AWS variables are wrong on purpose."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from autoinfer.config import StoreConfig
from autoinfer.errors import StorageError
from autoinfer.storage.s3 import make_s3_factory
from tests.conftest import RunningService
from tests.s3_server import AwsKeys, aws_client
from tests.support.worker_jobs import make_model, wait_terminal

BUCKET = "allowed-data"


@pytest.fixture
def lake(
    start_service: Callable[..., RunningService], s3_endpoint: str, s3_auth: AwsKeys
) -> RunningService:
    """A service with the S3 store `lake` whose credentials are the stored secret `lake`."""
    config = StoreConfig(type="s3", endpoint_url=s3_endpoint, credentials="secret:lake")
    api = start_service(stores={"lake": config})
    response = httpx.put(
        f"{api.url}/v1/secrets/lake", json={"value": s3_auth.secret_value}, headers=api.headers
    )
    assert response.status_code == 200, response.text
    owner = aws_client(
        "s3",
        s3_endpoint,
        aws_access_key_id=s3_auth.access_key_id,
        aws_secret_access_key=s3_auth.secret_access_key,
    )
    owner.create_bucket(Bucket=BUCKET)
    return api


def test_a_stored_secret_is_the_s3_stores_credentials(
    lake: RunningService, s3_auth: AwsKeys, tmp_path: Path
) -> None:
    factory = make_s3_factory(
        lake.service.storage.store_configs, lake.service.resolve_secret, max_attempts=1
    )
    storage = factory(f"s3://{BUCKET}")
    src = tmp_path / "x.txt"
    src.write_text("hello")
    uri = f"s3://{BUCKET}/incoming/x.txt"
    assert storage.upload(src, uri).size == 5
    assert storage.download(uri, tmp_path / "back").read_text() == "hello"
    assert lake.service.redact(s3_auth.secret_value) == "***"


def test_a_job_reads_and_writes_s3_with_the_stored_credentials(
    lake: RunningService, s3_auth: AwsKeys, seed_zip: Path, tmp_path: Path
) -> None:
    try:
        lake.service.storage.for_uri(f"s3://{BUCKET}/incoming/images.zip")
    except StorageError as error:
        pytest.skip(f"the service does not serve s3:// yet: {error}")
    factory = make_s3_factory(lake.service.storage.store_configs, lake.service.resolve_secret)
    factory(f"s3://{BUCKET}").upload(seed_zip, f"s3://{BUCKET}/incoming/images.zip")
    model = make_model(tmp_path / "model")
    client = lake.client()
    job = client.jobs.create_from_spec(
        {
            "name": "from-s3",
            "model": {"source_type": "local", "source_uri": str(model)},
            "workers": ["python predict.py"],
            "data": {
                "input_uri": f"s3://{BUCKET}/incoming/images.zip",
                "output_uri": f"s3://{BUCKET}/processed",
            },
        }
    )
    result = wait_terminal(client, job.id)
    assert result["status"] == "finished", result["reason"]
    assert result["output_location"] == f"s3://{BUCKET}/processed/from-s3.zip"
    log = httpx.get(f"{lake.url}/v1/jobs/{job.id}/logs", headers=lake.headers).text
    assert s3_auth.secret_access_key not in log
