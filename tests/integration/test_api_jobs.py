"""The /v1/jobs API over a real HTTP server: auth, validation, errors, OpenAPI."""

import httpx

from tests.conftest import RunningService

SPEC = {
    "name": "api-job",
    "workers": ["true"],
    "model": {"source_type": "local", "source_uri": "/nonexistent"},
    "data": {"input_uri": "/nonexistent/in", "output_uri": "/nonexistent/out"},
}


def test_requests_without_a_key_get_401(api: RunningService) -> None:
    response = httpx.get(f"{api.url}/v1/jobs")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert "missing API key" in response.json()["error"]["message"]


def test_requests_with_a_wrong_key_get_401(api: RunningService) -> None:
    response = httpx.get(f"{api.url}/v1/jobs", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid API key"


def test_healthz_needs_no_key(api: RunningService) -> None:
    response = httpx.get(f"{api.url}/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_insecure_mode_accepts_requests_without_a_key(start_service) -> None:  # type: ignore[no-untyped-def]
    running = start_service(insecure=True)
    assert httpx.get(f"{running.url}/v1/jobs").status_code == 200


def test_bad_spec_gets_422_naming_the_field(api: RunningService) -> None:
    bad = {**SPEC, "timeout_s": -5}
    response = httpx.post(f"{api.url}/v1/jobs", json=bad, headers=api.headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_spec" and "timeout_s" in error["message"]


def test_non_json_body_gets_a_clean_422(api: RunningService) -> None:
    response = httpx.post(
        f"{api.url}/v1/jobs",
        content=b"{not json",
        headers={**api.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "error" in response.json() and "Traceback" not in response.text


def test_unknown_job_gets_404_in_the_error_format(api: RunningService) -> None:
    response = httpx.get(f"{api.url}/v1/jobs/nope", headers=api.headers)
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "job nope: no such job"}}


def test_created_job_is_listed_and_fetched(api: RunningService) -> None:
    created = httpx.post(f"{api.url}/v1/jobs", json=SPEC, headers=api.headers)
    assert created.status_code == 201
    job = created.json()
    listed = httpx.get(f"{api.url}/v1/jobs", headers=api.headers).json()
    assert listed["total"] == 1 and listed["jobs"][0]["id"] == job["id"]
    fetched = httpx.get(f"{api.url}/v1/jobs/{job['id']}", headers=api.headers).json()
    assert fetched["name"] == "api-job" and fetched["spec"]["workers"] == ["true"]


def test_idempotency_key_makes_creation_repeatable(api: RunningService) -> None:
    headers = {**api.headers, "Idempotency-Key": "event-123"}
    first = httpx.post(f"{api.url}/v1/jobs", json=SPEC, headers=headers).json()
    second = httpx.post(f"{api.url}/v1/jobs", json=SPEC, headers=headers).json()
    assert first["id"] == second["id"]
    assert httpx.get(f"{api.url}/v1/jobs", headers=api.headers).json()["total"] == 1


def test_openapi_documents_the_v1_routes(api: RunningService) -> None:
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    for path in (
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/logs",
        "/v1/jobs/{job_id}/stop",
        "/v1/events/s3",
    ):
        assert path in paths
