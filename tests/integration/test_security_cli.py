"""`autoinfer keys` and `autoinfer secrets` against a real service."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import httpx

from tests.conftest import RunningService

CLI = [sys.executable, "-m", "autoinfer.cli"]


def run_cli(
    api: RunningService, *args: str, stdin: str = "", key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = api.cli_env()
    if key is not None:
        env["AUTOINFER_KEY"] = key
    return subprocess.run(
        [*CLI, *args],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_secrets_set_reads_the_value_from_stdin(api: RunningService) -> None:
    value = "cli-" + secrets.token_hex(12)
    result = run_cli(api, "secrets", "set", "from-stdin", stdin=value + "\n")
    assert result.returncode == 0, result.stderr
    assert value not in result.stdout + result.stderr
    assert api.service.resolve_secret("secret:from-stdin") == value  # the newline is dropped
    listed = run_cli(api, "secrets", "list", "--json")
    assert [item["name"] for item in json.loads(listed.stdout)] == ["from-stdin"]
    assert value not in listed.stdout


def test_secrets_set_refuses_a_value_given_as_an_argument(api: RunningService) -> None:
    result = run_cli(api, "secrets", "set", "in-argv", "the-value-itself", stdin="")
    assert result.returncode == 2
    assert "unexpected extra argument" in result.stderr.lower()
    assert httpx.get(f"{api.url}/v1/secrets", headers=api.headers).json()["secrets"] == []


def test_secrets_set_refuses_an_empty_value(api: RunningService) -> None:
    result = run_cli(api, "secrets", "set", "empty", stdin="\n")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: secret 'empty': the value is empty"


def test_secrets_rm_removes_and_says_when_there_is_none(api: RunningService) -> None:
    api.service.secrets.set("doomed", "doomed-value")
    assert run_cli(api, "secrets", "rm", "doomed").returncode == 0
    again = run_cli(api, "secrets", "rm", "doomed")
    assert again.returncode == 1 and "secret 'doomed': no such secret" in again.stderr


def test_keys_create_prints_the_key_once_and_revoke_ends_it(api: RunningService) -> None:
    created = run_cli(api, "keys", "create", "--name", "ci", "--role", "submit")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("ai_") and "will not be shown again" in created.stderr
    assert (
        httpx.get(f"{api.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )
    listed = run_cli(api, "keys", "list")
    assert "ci" in listed.stdout and "submit" in listed.stdout and key not in listed.stdout
    # A submit key cannot manage keys: one clear line, exit code 1.
    refused = run_cli(api, "keys", "list", key=key)
    assert refused.returncode == 1
    assert "this key's role 'submit' cannot GET /v1/keys (needs admin)" in " ".join(
        refused.stderr.split()
    )
    assert "Traceback" not in refused.stderr
    assert run_cli(api, "keys", "revoke", "ci").returncode == 0
    assert (
        httpx.get(f"{api.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code
        == 401
    )
