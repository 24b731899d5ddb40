"""`POST /v1/events/s3` on a real HTTP server: authentication, storage before 2xx, and dedup
across sources; `GET /v1/events` and `GET /v1/triggers`."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI

from autoinfer.api import events as events_api
from autoinfer.api import triggers as triggers_api
from autoinfer.api.errors import install_error_handlers
from autoinfer.config import Config, load_config
from autoinfer.db import Database
from autoinfer.errors import AuthError
from autoinfer.events.webhook import sign
from autoinfer.jobs.service import JobService
from autoinfer.keys import Keys
from autoinfer.pipeline import EventPipeline
from autoinfer.storage.registry import StorageRegistry
from tests.support.waiting import wait_until

SEED_EVENT = Path(__file__).resolve().parents[1] / "data" / "example_event.json"
WEBHOOK_TOKEN = "webhook-token-123"
API_KEY = "api-key-456"
TRIGGER = {
    "name": "classify-incoming",
    "bucket": "data",
    "prefix": "incoming/",
    "suffix": ".zip",
    "job": {"data": {"output_uri": "{bucket_uri}/processed"}},
}


class MinimalService:
    """The attributes the routers use, around a real pipeline, job service and key store."""

    def __init__(self, config: Config, pipeline: EventPipeline, jobs: JobService) -> None:
        self.config = config
        self.pipeline = pipeline
        self.jobs = jobs
        self.keys = Keys(jobs.db, bootstrap=API_KEY)
        self.insecure = False

    def check_api_key(self, token: str) -> bool:
        try:
            self.keys.authorize(token, "POST", "/v1/events/s3")
        except AuthError:
            return False
        return True

    def resolve_secret(self, value: str) -> str:
        return {"secret:webhook": WEBHOOK_TOKEN}[value] if value.startswith("secret:") else value


class Server:
    """uvicorn serving `app` on a free port of 127.0.0.1 in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


def build(tmp_path: Path, sources: list[dict[str, Any]]) -> tuple[MinimalService, EventPipeline]:
    (tmp_path / "buckets" / "data" / "incoming").mkdir(parents=True, exist_ok=True)
    settings = {
        "data_dir": "state",
        "stores": {"local": {"type": "local", "root": "buckets"}},
        "sources": sources,
        "triggers": [TRIGGER],
    }
    path = tmp_path / "autoinfer.yaml"
    path.write_text(yaml.safe_dump(settings))
    config = load_config(path, env={})
    db = Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
    jobs = JobService(db)
    storage = StorageRegistry(config.stores, base_dir=config.base_dir)
    pipeline = EventPipeline(config, db, jobs, storage, settle_s=0.2)
    return MinimalService(config, pipeline, jobs), pipeline


def make_app(service: MinimalService) -> FastAPI:
    app = FastAPI()
    app.state.service = service
    install_error_handlers(app)
    app.include_router(events_api.router)
    app.include_router(triggers_api.router)
    return app


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[MinimalService, httpx.Client]]:
    sources = [
        {"type": "watch", "store": "local", "rescan_s": 60},
        {"type": "webhook", "store": "local", "token": "secret:webhook"},
    ]
    service, pipeline = build(tmp_path, sources)
    pipeline.start()
    try:
        with (
            Server(make_app(service)) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            yield service, client
    finally:
        pipeline.stop()


def notification(key: str, etag: str, bucket: str = "data", size: int = 7) -> dict[str, Any]:
    """What MinIO sends for a PUT (key URL-encoded)."""
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "eventTime": "2026-11-24T10:00:00.000Z",
                "eventName": "s3:ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {
                        "key": key.replace(" ", "+"),
                        "size": size,
                        "eTag": etag,
                        "sequencer": str(time.time_ns()),
                    },
                },
                "source": {"host": "127.0.0.1"},
            }
        ],
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed(body: bytes, token: str = WEBHOOK_TOKEN, at: int | None = None) -> dict[str, str]:
    return {"X-AutoInfer-Signature": sign(token, body, at), "Content-Type": "application/json"}


def test_event_delivered_five_times_by_two_sources_starts_one_job(
    served: tuple[MinimalService, httpx.Client], tmp_path: Path
) -> None:
    service, client = served
    content = b"archive"
    etag = hashlib.md5(content, usedforsecurity=False).hexdigest()
    body = json.dumps(notification("incoming/images-X.zip", f'"{etag}"')).encode()
    # 1-2: the webhook with the bearer token, as MinIO sends it.
    for _ in range(2):
        response = client.post("/v1/events/s3", content=body, headers=bearer(WEBHOOK_TOKEN))
        assert response.status_code == 200, response.text
    # 3-4: the webhook with a signed body.
    for _ in range(2):
        response = client.post("/v1/events/s3", content=body, headers=signed(body))
        assert response.status_code == 200, response.text
    # 5: the watcher sees the same object in the local store.
    (tmp_path / "buckets" / "data" / "incoming" / "images-X.zip").write_bytes(content)
    inbox = service.pipeline.inbox
    wait_until(lambda: inbox.list()[1] == 5, "five deliveries recorded")
    events, _ = inbox.list()
    assert sorted(e.outcome for e in events) == ["duplicate"] * 4 + ["matched"]
    assert {e.source for e in events} == {"webhook:local", "watch:local"}
    jobs, total = service.jobs.list()
    assert total == 1
    assert jobs[0].name == "images-X"
    [original] = [e for e in events if e.outcome == "matched"]
    assert original.deliveries == 5 and original.job_id == jobs[0].id


def test_answer_comes_after_the_events_are_stored(
    served: tuple[MinimalService, httpx.Client],
) -> None:
    service, client = served
    body = json.dumps(notification("incoming/my photos été.zip", "e1")).encode()
    response = client.post("/v1/events/s3", content=body, headers=bearer(WEBHOOK_TOKEN))
    assert response.status_code == 200
    [summary] = response.json()["events"]
    assert summary["outcome"] == "matched"
    stored = service.pipeline.inbox.get(summary["id"])  # already committed
    assert stored.key == "incoming/my photos été.zip"
    assert service.jobs.get(summary["job_id"]).name == "my photos été"


def test_seed_example_event_is_accepted_and_ignored_for_an_unknown_bucket(
    served: tuple[MinimalService, httpx.Client],
) -> None:
    _, client = served
    response = client.post(
        "/v1/events/s3", content=SEED_EVENT.read_bytes(), headers=bearer(WEBHOOK_TOKEN)
    )
    assert response.status_code == 200
    [summary] = response.json()["events"]
    assert summary["outcome"] == "ignored"
    assert summary["reason"].startswith(
        "no trigger for bucket 'trainml-inference-s3-trigger-example"
    )


def test_malformed_body_gets_400_naming_the_problem_and_the_service_keeps_serving(
    served: tuple[MinimalService, httpx.Client],
) -> None:
    service, client = served
    broken = notification("incoming/x.zip", "e")
    del broken["Records"][0]["s3"]["object"]["key"]
    response = client.post("/v1/events/s3", json=broken, headers=bearer(WEBHOOK_TOKEN))
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "invalid_event", "message": "Records[0].s3.object.key: missing"}
    }
    response = client.post("/v1/events/s3", content=b"{oops", headers=bearer(WEBHOOK_TOKEN))
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("body is not JSON: ")
    rejected, total = service.pipeline.inbox.list(outcome="rejected")
    assert total == 2 and rejected[0].body_excerpt == "{oops"
    # Still serving.
    good = client.post(
        "/v1/events/s3", json=notification("incoming/y.zip", "e2"), headers=bearer(WEBHOOK_TOKEN)
    )
    assert good.status_code == 200


def test_request_without_the_token_gets_401(served: tuple[MinimalService, httpx.Client]) -> None:
    service, client = served
    body = json.dumps(notification("incoming/x.zip", "e")).encode()
    response = client.post("/v1/events/s3", content=body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert "missing webhook credentials" in response.json()["error"]["message"]
    assert client.post("/v1/events/s3", content=body, headers=bearer("wrong")).status_code == 401
    assert service.pipeline.inbox.list()[1] == 0  # nothing stored from unauthenticated senders


def test_bad_signature_gets_401(served: tuple[MinimalService, httpx.Client]) -> None:
    _, client = served
    body = json.dumps(notification("incoming/x.zip", "e")).encode()
    tampered = body.replace(b"incoming/x.zip", b"incoming/z.zip")
    response = client.post("/v1/events/s3", content=tampered, headers=signed(body))
    assert response.status_code == 401
    assert "signature does not match" in response.json()["error"]["message"]
    wrong_key = client.post("/v1/events/s3", content=body, headers=signed(body, token="other"))
    assert wrong_key.status_code == 401
    malformed = client.post(
        "/v1/events/s3", content=body, headers={"X-AutoInfer-Signature": "sha256=abc"}
    )
    assert malformed.status_code == 401 and "malformed" in malformed.json()["error"]["message"]


def test_stale_signature_gets_401(served: tuple[MinimalService, httpx.Client]) -> None:
    _, client = served
    body = json.dumps(notification("incoming/x.zip", "e")).encode()
    response = client.post(
        "/v1/events/s3", content=body, headers=signed(body, at=int(time.time()) - 3600)
    )
    assert response.status_code == 401
    assert "away from the service's clock (tolerance 300 s)" in response.json()["error"]["message"]


def test_s3_test_event_is_acknowledged_without_events(
    served: tuple[MinimalService, httpx.Client],
) -> None:
    service, client = served
    body = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-24T10:00:00Z",
        "Bucket": "data",
    }
    response = client.post("/v1/events/s3", json=body, headers=bearer(WEBHOOK_TOKEN))
    assert response.status_code == 200 and response.json()["test_event"] is True
    assert service.pipeline.inbox.list()[1] == 0


def test_event_list_and_trigger_list_need_the_api_key(
    served: tuple[MinimalService, httpx.Client],
) -> None:
    _, client = served
    client.post(
        "/v1/events/s3", json=notification("incoming/a.zip", "e1"), headers=bearer(WEBHOOK_TOKEN)
    )
    client.post(
        "/v1/events/s3", json=notification("incoming/a.zip", "e1"), headers=bearer(WEBHOOK_TOKEN)
    )
    client.post(
        "/v1/events/s3", json=notification("other/b.zip", "e2"), headers=bearer(WEBHOOK_TOKEN)
    )
    assert client.get("/v1/events").status_code == 401
    assert client.get("/v1/events", headers=bearer(WEBHOOK_TOKEN)).status_code == 401
    page = client.get("/v1/events", params={"limit": 2}, headers=bearer(API_KEY)).json()
    assert page["total"] == 3 and len(page["events"]) == 2
    duplicates = client.get(
        "/v1/events", params={"outcome": "duplicate"}, headers=bearer(API_KEY)
    ).json()
    assert duplicates["total"] == 1 and duplicates["events"][0]["duplicate_of"] is not None
    bad_filter = client.get("/v1/events", params={"outcome": "bogus"}, headers=bearer(API_KEY))
    assert bad_filter.status_code == 422
    one = client.get(f"/v1/events/{duplicates['events'][0]['id']}", headers=bearer(API_KEY))
    assert one.status_code == 200 and one.json()["outcome"] == "duplicate"
    assert client.get("/v1/events/999999", headers=bearer(API_KEY)).status_code == 404
    triggers = client.get("/v1/triggers", headers=bearer(API_KEY)).json()["triggers"]
    assert triggers == [
        {
            "name": "classify-incoming",
            "bucket": "data",
            "prefix": "incoming/",
            "suffix": ".zip",
            "events": ["ObjectCreated:*"],
            "kind": "rule",
            "handler": None,
            "job": TRIGGER["job"],
            "counts": {"matched": 1, "failed": 0},
        }
    ]


def test_without_a_webhook_source_the_api_key_authenticates(tmp_path: Path) -> None:
    service, pipeline = build(tmp_path, [])
    with Server(make_app(service)) as server, httpx.Client(base_url=server.url) as client:
        body = notification("incoming/a.zip", "e1")
        assert client.post("/v1/events/s3", json=body).status_code == 401
        assert client.post("/v1/events/s3", json=body, headers=bearer("nope")).status_code == 401
        response = client.post("/v1/events/s3", json=body, headers=bearer(API_KEY))
        assert response.status_code == 200
        assert response.json()["events"][0]["outcome"] == "matched"
    assert pipeline.inbox.list()[0][0].source == "webhook"
