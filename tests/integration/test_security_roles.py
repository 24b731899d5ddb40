"""API keys and roles over a real service: who may do what, revocation, and what is stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from autoinfer.keys import Role, required_role
from tests.conftest import EXAMPLE_EVENT, RunningService

SPEC = {
    "name": "role-job",
    "workers": ["true"],
    "model": {"source_type": "local", "source_uri": "/nonexistent"},
    "data": {"input_uri": "/nonexistent/in", "output_uri": "/nonexistent/out"},
}


def make_key(api: RunningService, name: str, role: str) -> str:
    response = httpx.post(
        f"{api.url}/v1/keys", json={"name": name, "role": role}, headers=api.headers
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def job_id(api: RunningService) -> str:
    response = httpx.post(f"{api.url}/v1/jobs", json=SPEC, headers=api.headers)
    assert response.status_code == 201
    return response.json()["id"]


# Each request: (method, path template, body). `{job}` is a job of the service.
READS = [
    ("GET", "/v1/jobs", None),
    ("GET", "/v1/jobs/{job}", None),
    ("GET", "/v1/jobs/{job}/logs", None),
    ("GET", "/v1/events", None),
    ("GET", "/v1/triggers", None),
]
SUBMITS = [
    ("POST", "/v1/jobs", {**SPEC, "name": "submitted"}),
    ("POST", "/v1/jobs/{job}/stop", None),
    ("POST", "/v1/events/s3", "example-event"),
]
ADMINS = [
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {"name": "made-by-test", "role": "read"}),
    ("GET", "/v1/secrets", None),
    ("PUT", "/v1/secrets/made-by-test", {"value": "some value"}),
]


def send(
    api: RunningService, key: str, method: str, path: str, body: object, job: str
) -> httpx.Response:
    kwargs: dict = {"headers": bearer(key)}
    if body == "example-event":
        kwargs["content"] = EXAMPLE_EVENT.read_bytes()
    elif body is not None:
        kwargs["json"] = body
    return httpx.request(method, api.url + path.format(job=job), **kwargs)


@pytest.mark.parametrize(
    ("role", "allowed", "refused"),
    [
        ("read", READS, SUBMITS + ADMINS),
        ("submit", READS + SUBMITS, ADMINS),
        ("admin", READS + SUBMITS + ADMINS, []),
    ],
)
def test_each_role_can_do_what_it_should_and_gets_403_for_the_rest(
    api: RunningService, job_id: str, role: str, allowed: list, refused: list
) -> None:
    key = make_key(api, f"{role}-key", role)
    for method, path, body in allowed:
        response = send(api, key, method, path, body, job_id)
        # Past the role check; the request itself may still conflict (a job already ended).
        assert response.status_code not in (401, 403), (method, path, response.text)
        assert response.status_code < 400 or response.status_code == 409, (
            method,
            path,
            response.text,
        )
    for method, path, body in refused:
        response = send(api, key, method, path, body, job_id)
        assert response.status_code == 403, (method, path, response.text)
        error = response.json()["error"]
        assert error["code"] == "forbidden"
        assert f"this key's role '{role}' cannot {method}" in error["message"]


def test_forbidden_message_names_the_role_the_request_and_the_role_needed(
    api: RunningService,
) -> None:
    key = make_key(api, "reader", "read")
    response = httpx.post(f"{api.url}/v1/jobs", json=SPEC, headers=bearer(key))
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "forbidden",
            "message": "this key's role 'read' cannot POST /v1/jobs (needs submit)",
        }
    }
    assert httpx.get(f"{api.url}/v1/jobs", headers=bearer(key)).json()["total"] == 0


def test_the_bootstrap_key_is_admin(api: RunningService) -> None:
    assert httpx.get(f"{api.url}/v1/keys", headers=api.headers).status_code == 200
    assert httpx.get(f"{api.url}/v1/secrets", headers=api.headers).status_code == 200


def test_a_revoked_key_gets_401_and_others_keep_working(api: RunningService) -> None:
    doomed = make_key(api, "doomed", "submit")
    kept = make_key(api, "kept", "submit")
    assert httpx.get(f"{api.url}/v1/jobs", headers=bearer(doomed)).status_code == 200
    revoked = httpx.delete(f"{api.url}/v1/keys/doomed", headers=api.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    response = httpx.get(f"{api.url}/v1/jobs", headers=bearer(doomed))
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "unauthorized",
        "message": "API key 'doomed' was revoked",
    }
    webhook = httpx.post(
        f"{api.url}/v1/events/s3", content=EXAMPLE_EVENT.read_bytes(), headers=bearer(doomed)
    )
    assert webhook.status_code == 401
    assert httpx.get(f"{api.url}/v1/jobs", headers=bearer(kept)).status_code == 200


def test_revoke_by_id_and_the_name_can_be_reused(api: RunningService) -> None:
    created = httpx.post(
        f"{api.url}/v1/keys", json={"name": "ci", "role": "read"}, headers=api.headers
    ).json()
    again = httpx.post(
        f"{api.url}/v1/keys", json={"name": "ci", "role": "read"}, headers=api.headers
    )
    assert again.status_code == 409
    assert (
        httpx.delete(f"{api.url}/v1/keys/{created['id']}", headers=api.headers).status_code == 200
    )
    renewed = httpx.post(
        f"{api.url}/v1/keys", json={"name": "ci", "role": "submit"}, headers=api.headers
    )
    assert renewed.status_code == 201
    assert httpx.get(f"{api.url}/v1/jobs", headers=bearer(created["key"])).status_code == 401
    assert httpx.get(f"{api.url}/v1/jobs", headers=bearer(renewed.json()["key"])).status_code == 200


def test_unknown_key_to_revoke_is_404(api: RunningService) -> None:
    response = httpx.delete(f"{api.url}/v1/keys/nobody", headers=api.headers)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "key 'nobody': no key with this name or id"


def test_a_bad_role_or_name_is_refused(api: RunningService) -> None:
    bad_role = httpx.post(
        f"{api.url}/v1/keys", json={"name": "x", "role": "root"}, headers=api.headers
    )
    assert bad_role.status_code == 422
    bad_name = httpx.post(
        f"{api.url}/v1/keys", json={"name": "a b", "role": "read"}, headers=api.headers
    )
    assert bad_name.status_code == 400 and "key name 'a b'" in bad_name.json()["error"]["message"]


def test_keys_are_shown_once_and_stored_only_as_a_hash(api: RunningService) -> None:
    key = make_key(api, "hashed", "read")
    assert key.startswith("ai_") and len(key) > 40
    listed = httpx.get(f"{api.url}/v1/keys", headers=api.headers)
    assert key not in listed.text
    assert [item["name"] for item in listed.json()["keys"]] == ["hashed"]
    assert set(listed.json()["keys"][0]) == {
        "id",
        "name",
        "role",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    stored = b"".join(
        path.read_bytes() for path in Path(api.service.data_dir).glob("autoinfer.db*")
    )
    assert key.encode() not in stored


def test_use_of_a_key_is_recorded(api: RunningService) -> None:
    key = make_key(api, "used", "read")
    (before,) = httpx.get(f"{api.url}/v1/keys", headers=api.headers).json()["keys"]
    assert before["last_used_at"] is None
    httpx.get(f"{api.url}/v1/jobs", headers=bearer(key))
    (after,) = httpx.get(f"{api.url}/v1/keys", headers=api.headers).json()["keys"]
    assert after["last_used_at"] is not None


def test_keys_are_checked_by_a_restarted_service(
    start_service: Callable[..., RunningService],
) -> None:
    first = start_service()
    key = make_key(first, "durable", "submit")
    first.server.stop()
    second = start_service()  # same data dir, same database
    assert httpx.get(f"{second.url}/v1/jobs", headers=bearer(key)).status_code == 200


def test_insecure_mode_needs_no_key_even_for_admin_routes(
    start_service: Callable[..., RunningService],
) -> None:
    running = start_service(insecure=True)
    assert httpx.get(f"{running.url}/v1/keys").status_code == 200


def test_health_and_dashboard_pages_need_no_key_but_their_data_does(api: RunningService) -> None:
    assert httpx.get(f"{api.url}/healthz").status_code == 200
    assert httpx.get(f"{api.url}/").status_code == 200
    assert httpx.get(f"{api.url}/v1/jobs").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/v1/jobs", Role.READ),
        ("HEAD", "/v1/jobs/{job_id}", Role.READ),
        ("POST", "/v1/jobs", Role.SUBMIT),
        ("DELETE", "/v1/jobs/{job_id}", Role.SUBMIT),
        ("POST", "/v1/events/s3", Role.SUBMIT),
        ("GET", "/v1/keys", Role.ADMIN),
        ("GET", "/v1/secrets/", Role.ADMIN),
        ("GET", "/v1/jobs/../keys", Role.ADMIN),
        ("GET", "/V1/Secrets", Role.ADMIN),
        ("GET", "/v1/triggers", Role.READ),
        ("POST", "/v1/triggers", Role.ADMIN),
        ("GET", "/v1/keysmith", Role.READ),
    ],
)
def test_policy_maps_each_request_to_the_least_role(method: str, path: str, role: Role) -> None:
    assert required_role(method, path) is role


def test_roles_include_the_ones_below() -> None:
    assert Role.ADMIN.allows(Role.SUBMIT) and Role.SUBMIT.allows(Role.READ)
    assert not Role.READ.allows(Role.SUBMIT) and not Role.SUBMIT.allows(Role.ADMIN)
