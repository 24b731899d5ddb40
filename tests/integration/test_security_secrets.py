"""Secrets over a real service: encrypted at rest, resolved into a job's environment only,
and replaced by `***` in job logs, failure reasons, API responses and the service's log."""

from __future__ import annotations

import hashlib
import logging
import secrets
import stat
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from autoinfer.errors import ConfigError
from tests.conftest import RunningService
from tests.support.worker_jobs import make_model, wait_terminal

PRINTS_SECRETS = textwrap.dedent(
    """
    import hashlib, os, sys
    token, password = os.environ["TOKEN"], os.environ["DB_PASSWORD"]
    print("token is", token, flush=True)
    print("token sha256", hashlib.sha256(token.encode()).hexdigest(), flush=True)
    print("password sha256", hashlib.sha256(password.encode()).hexdigest(), flush=True)
    if os.environ.get("FAIL"):
        sys.exit(f"login refused for token {token}")
    """
)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def put_secret(api: RunningService, name: str, value: str) -> httpx.Response:
    response = httpx.put(f"{api.url}/v1/secrets/{name}", json={"value": value}, headers=api.headers)
    assert response.status_code == 200, response.text
    return response


def secret_job(
    api: RunningService, tmp_path: Path, seed_zip: Path, name: str, *, fail: bool = False
) -> dict:
    model = make_model(tmp_path / f"model-{name}", PRINTS_SECRETS)
    env = [{"key": "TOKEN", "value": "secret:api-token"}]
    if fail:
        env.append({"key": "FAIL", "value": "1"})
    spec = {
        "name": name,
        "model": {"source_type": "local", "source_uri": str(model)},
        "workers": ["python predict.py"],
        "data": {"input_uri": str(seed_zip), "output_uri": str(tmp_path / "out")},
        "environment": {"env": env, "secrets": ["DB_PASSWORD"]},
    }
    client = api.client()
    job = client.jobs.create_from_spec(spec)
    return wait_terminal(client, job.id)


@pytest.fixture
def token() -> str:
    return "tok-" + secrets.token_hex(12)


@pytest.fixture
def password() -> str:
    return "pw-" + secrets.token_hex(12)


@pytest.fixture
def with_secrets(api: RunningService, token: str, password: str) -> RunningService:
    put_secret(api, "api-token", token)
    put_secret(api, "DB_PASSWORD", password)
    return api


def test_master_key_file_is_created_with_mode_0600(api: RunningService) -> None:
    master = Path(api.service.data_dir) / "master.key"
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    Fernet(master.read_bytes().strip())  # a valid Fernet key


def test_the_secret_store_on_disk_never_holds_the_plaintext(
    api: RunningService, token: str
) -> None:
    put_secret(api, "api-token", token)
    put_secret(api, "other", token + "-2")
    assert api.service.resolve_secret("secret:api-token") == token
    data_dir = Path(api.service.data_dir)
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    assert any(path.name.startswith("autoinfer.db") for path in files)
    on_disk = b"".join(path.read_bytes() for path in files)
    assert token.encode() not in on_disk
    assert b"api-token" in on_disk  # the store is there, only the value is not readable


def test_secrets_are_listed_by_name_and_never_returned(api: RunningService, token: str) -> None:
    put_secret(api, "api-token", token)
    response = httpx.get(f"{api.url}/v1/secrets", headers=api.headers)
    assert [item["name"] for item in response.json()["secrets"]] == ["api-token"]
    assert token not in response.text
    assert httpx.get(f"{api.url}/v1/secrets/api-token", headers=api.headers).status_code in (
        404,
        405,
    )


def test_a_removed_secret_no_longer_resolves(api: RunningService, token: str) -> None:
    put_secret(api, "api-token", token)
    assert httpx.delete(f"{api.url}/v1/secrets/api-token", headers=api.headers).status_code == 204
    assert httpx.delete(f"{api.url}/v1/secrets/api-token", headers=api.headers).status_code == 404
    with pytest.raises(ConfigError, match="secret 'api-token' is not set"):
        api.service.resolve_secret("secret:api-token")


def test_a_secret_can_be_replaced(api: RunningService, token: str) -> None:
    put_secret(api, "api-token", "first-value")
    put_secret(api, "api-token", token)
    assert api.service.resolve_secret("secret:api-token") == token
    assert api.service.redact("first-value and " + token) == "*** and ***"


def test_bad_secret_names_and_empty_values_are_refused(api: RunningService) -> None:
    bad_name = httpx.put(
        f"{api.url}/v1/secrets/.hidden", json={"value": "abcd"}, headers=api.headers
    )
    assert (
        bad_name.status_code == 400
        and "secret name '.hidden'" in bad_name.json()["error"]["message"]
    )
    empty = httpx.put(f"{api.url}/v1/secrets/x", json={"value": ""}, headers=api.headers)
    assert empty.status_code == 422


def test_secrets_resolve_in_jobs_and_are_masked_in_the_log_and_api(
    with_secrets: RunningService, tmp_path: Path, seed_zip: Path, token: str, password: str
) -> None:
    api = with_secrets
    job = secret_job(api, tmp_path, seed_zip, "uses-secrets")
    assert job["status"] == "finished", job["reason"]
    lines = [line["line"] for line in api.client().jobs.get(job["id"]).logs()]
    assert "token is ***" in lines
    # The job saw the real values: their hashes are printed.
    assert f"token sha256 {sha256(token)}" in lines
    assert f"password sha256 {sha256(password)}" in lines
    for path in (
        f"/v1/jobs/{job['id']}/logs",
        f"/v1/jobs/{job['id']}/logs?follow=true",
        f"/v1/jobs/{job['id']}",
    ):
        body = httpx.get(api.url + path, headers=api.headers).text
        assert token not in body and password not in body
    assert (
        "token is ***" in httpx.get(f"{api.url}/v1/jobs/{job['id']}/logs", headers=api.headers).text
    )


def test_a_failure_reason_quoting_a_secret_is_masked(
    with_secrets: RunningService, tmp_path: Path, seed_zip: Path, token: str
) -> None:
    api = with_secrets
    job = secret_job(api, tmp_path, seed_zip, "fails-with-secret", fail=True)
    assert job["status"] == "failed"
    assert job["reason"].endswith("login refused for token ***"), job["reason"]
    body = httpx.get(f"{api.url}/v1/jobs/{job['id']}", headers=api.headers).text
    assert token not in body
    assert all(token not in (t["reason"] or "") for t in job["transitions"])


def test_environment_fallback_secrets_are_masked_too(
    api: RunningService, tmp_path: Path, seed_zip: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("AUTOINFER_SECRET_API_TOKEN", token)
    monkeypatch.setenv("AUTOINFER_SECRET_DB_PASSWORD", "from-the-environment")
    job = secret_job(api, tmp_path, seed_zip, "env-secrets")
    assert job["status"] == "finished", job["reason"]
    lines = [line["line"] for line in api.client().jobs.get(job["id"]).logs()]
    assert "token is ***" in lines and f"token sha256 {sha256(token)}" in lines


def test_a_job_naming_an_unknown_secret_fails_naming_it(
    api: RunningService, tmp_path: Path, seed_zip: Path
) -> None:
    job = secret_job(api, tmp_path, seed_zip, "unknown-secret")
    assert job["status"] == "failed"
    assert "secret 'api-token' is not set" in job["reason"]


def test_api_error_messages_mask_secret_values(with_secrets: RunningService, token: str) -> None:
    response = httpx.get(f"{with_secrets.url}/v1/jobs/{token}", headers=with_secrets.headers)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "job ***: no such job"


def test_master_key_from_the_environment_creates_no_file(
    start_service: Callable[..., RunningService],
    make_config: Callable,
    monkeypatch: pytest.MonkeyPatch,
    token: str,
) -> None:
    monkeypatch.setenv("AUTOINFER_MASTER_KEY", Fernet.generate_key().decode())
    first = start_service()
    put_secret(first, "api-token", token)
    first.server.stop()
    assert not (Path(first.service.data_dir) / "master.key").exists()
    second = start_service()  # the same data dir and key: the secret still reads
    assert second.service.resolve_secret("secret:api-token") == token


def test_a_secret_under_another_master_key_fails_to_resolve_naming_it(
    start_service: Callable[..., RunningService], monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    first = start_service()
    put_secret(first, "api-token", token)
    first.server.stop()
    monkeypatch.setenv("AUTOINFER_MASTER_KEY", Fernet.generate_key().decode())
    second = start_service()
    with pytest.raises(
        ConfigError, match="secret 'api-token': cannot be decrypted with this master key"
    ):
        second.service.resolve_secret("secret:api-token")


def test_a_malformed_master_key_is_a_config_error(
    make_config: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoinfer.service import AutoInferService

    monkeypatch.setenv("AUTOINFER_MASTER_KEY", "not-a-key")
    with pytest.raises(ConfigError, match="AUTOINFER_MASTER_KEY: not a master key"):
        AutoInferService(make_config())


# --- the service's own log ------------------------------------------------------------------


@pytest.fixture
def service_log(api: RunningService, tmp_path: Path) -> Iterator[Path]:
    """Every log record of the process into a file, from once the service is up (uvicorn's
    own loggers included: its startup replaces their handlers)."""
    path = tmp_path / "service.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [
        logging.getLogger(),
        logging.getLogger("uvicorn"),
        logging.getLogger("uvicorn.access"),
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    yield path
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)
    handler.close()


def test_no_secret_value_appears_in_the_service_log(
    api: RunningService,
    service_log: Path,
    tmp_path: Path,
    seed_zip: Path,
    token: str,
    password: str,
) -> None:
    put_secret(api, "api-token", token)
    put_secret(api, "DB_PASSWORD", password)
    secret_job(api, tmp_path, seed_zip, "logged-ok")
    secret_job(api, tmp_path, seed_zip, "logged-failure", fail=True)
    httpx.get(f"{api.url}/v1/jobs/{token}", headers=api.headers)
    # Code that carelessly logs a value: through a propagating logger, a non-propagating one
    # (uvicorn's), in arguments, in the message, and in an exception's traceback.
    logging.getLogger("autoinfer.careless").warning("connecting with %s", token)
    logging.getLogger("uvicorn.error").error(f"bad password {password}")  # noqa: G004 - the case
    try:
        raise ValueError(f"token {token} rejected")
    except ValueError:
        logging.getLogger("autoinfer.careless").exception("request failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = service_log.read_text()
    assert "connecting with ***" in text and "bad password ***" in text
    assert "ValueError: token *** rejected" in text
    assert token not in text and password not in text
