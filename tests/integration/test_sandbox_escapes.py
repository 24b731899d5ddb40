"""The escapes of issue 16 fail against a real `autoinfer serve` with keys on: a `submit` key
holder's job cannot name the service's data folder, and its worker commands cannot read the
master key, the database, another job's folder or /etc/shadow, cannot reach the service's API,
and do not see the service's environment. With the network allowed by the spec, the same
connection succeeds: the refusal is the sandbox's."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.service_harness import ServiceProcess, free_port, service_config

TERMINAL = ("finished", "failed", "stopped")
CANARY = f"canary-{uuid.uuid4().hex}"
VICTIM_SECRET = f"victim-secret-{uuid.uuid4().hex}"
STORED_SECRET = f"stored-secret-{uuid.uuid4().hex}"

PROBE = textwrap.dedent(
    """
    import os, socket, sys
    what, target = sys.argv[1], sys.argv[2]
    if what == "read":
        try:
            with open(target, "rb") as handle:
                data = handle.read()
        except OSError as error:
            print(f"read refused: {type(error).__name__}", flush=True)
        else:
            print(f"read {len(data)} bytes", flush=True)
            sys.stdout.buffer.write(data)
            out = os.path.join(os.environ["AUTOINFER_OUTPUT_PATH"], "stolen.bin")
            open(out, "wb").write(data)
    elif what == "connect":
        host, port = target.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as error:
            print(f"connect refused: {type(error).__name__}", flush=True)
        else:
            print("connected", flush=True)
    elif what in ("link", "items-link", "errors-link"):
        # Links in the output, left for the service to follow: when it uploads the output,
        # reads the model's items.json, or writes errors.json.
        out = os.environ["AUTOINFER_OUTPUT_PATH"]
        if what == "errors-link":
            items = '[{"file": "input.txt", "status": "error", "error": "planted"}]'
            open(os.path.join(out, "items.json"), "w").write(items)
        name = {"link": "leak.txt", "items-link": "items.json", "errors-link": "errors.json"}
        os.symlink(target, os.path.join(out, name[what]))
        print("linked", flush=True)
    elif what == "env":
        for name, value in sorted(os.environ.items()):
            print(f"{name}={value}", flush=True)
    elif what == "wait":
        open(os.path.join(os.environ["AUTOINFER_DATA_PATH"], "mine.txt"), "w").write(target)
        print("victim ready", flush=True)
        import time
        time.sleep(300)
    """
)


class Service:
    """The service subprocess, an admin client and a `submit` key's client."""

    def __init__(self, process: ServiceProcess, root: Path) -> None:
        self.process = process
        self.root = root
        self.data_dir = root / "service"
        self.models = root / "models"
        self.inputs = root / "inputs"
        self.outputs = root / "buckets" / "data" / "out"
        key = process.post(
            "/v1/keys", {"name": f"submitter-{uuid.uuid4().hex[:8]}", "role": "submit"}
        )
        self.submit = httpx.Client(
            base_url=process.url, headers={"Authorization": f"Bearer {key['key']}"}, timeout=30
        )

    def spec(self, name: str, workers: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "model": {"source_type": "local", "source_uri": str(self.models / "probe")},
            "workers": workers,
            "data": {"input_uri": str(self.inputs / "input.txt"), "output_uri": str(self.outputs)},
            **extra,
        }

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.submit.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        return response.json()

    def wait(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.submit.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("finished", "failed", "stopped"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not end")

    def logs(self, job_id: str) -> str:
        lines = self.submit.get(f"/v1/jobs/{job_id}/logs").json()["lines"]
        return "\n".join(line["line"] for line in lines)

    def run(self, name: str, *args: str, **extra: Any) -> tuple[dict[str, Any], str, bytes]:
        """Run the probe with `args` to its end: (job, log text, every byte of its output)."""
        job = self.wait(
            self.create(self.spec(name, [f"python probe.py {' '.join(args)}"], **extra))["id"]
        )
        output = b""
        if job["output_location"]:
            with zipfile.ZipFile(
                io.BytesIO(Path(job["output_location"].removeprefix("file://")).read_bytes())
            ) as archive:
                output = b"".join(archive.read(member) for member in archive.namelist())
        return job, self.logs(job["id"]), output


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("escapes")
    (root / "buckets" / "data").mkdir(parents=True)
    (root / "models" / "probe").mkdir(parents=True)
    (root / "models" / "probe" / "probe.py").write_text(PROBE)
    (root / "inputs").mkdir()
    (root / "inputs" / "input.txt").write_text("input\n")
    config = service_config(root, port=free_port(), cache_dir=model_cache, triggers=[])
    config["allowed_paths"] = [str(root / "models"), str(root / "inputs")]
    process = ServiceProcess(config, root, env={"AUTOINFER_CANARY": CANARY})
    process.start()
    try:
        process.http.put("/v1/secrets/STOLEN", json={"value": STORED_SECRET}).raise_for_status()
        yield Service(process, root)
    finally:
        process.close()


def test_a_worker_sees_what_programs_need_of_etc_as_its_unprivileged_user(
    service: Service,
) -> None:
    workers = ["id", "head -1 /etc/hosts", 'test -n "$(ls /etc/ssl/certs)" && echo certs ok']
    job = service.wait(service.create(service.spec("etc", workers))["id"])
    assert job["status"] == "finished", job["reason"]
    logs = service.logs(job["id"])
    expected = "uid=65534(job) gid=65534(job)" if os.geteuid() == 0 else f"uid={os.geteuid()}("
    assert expected in logs and "localhost" in logs and "certs ok" in logs, logs


def test_a_submit_keys_job_whose_input_is_inside_data_dir_gets_422(service: Service) -> None:
    spec = service.spec("steal-db", ["true"])
    spec["data"]["input_uri"] = str(service.data_dir / "autoinfer.db")
    response = service.submit.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "path_not_allowed"
    assert error["message"] == (
        f"data.input_uri: {service.data_dir / 'autoinfer.db'} must lie inside a local store "
        "root or allowed_paths; data_dir is never allowed"
    )


def test_a_symlink_or_dotdot_into_data_dir_is_refused_too(service: Service) -> None:
    link = service.inputs / "innocent.zip"
    link.symlink_to(service.data_dir / "master.key")
    climbing = f"file://{service.inputs}/../service/master.key"
    for uri, field in ((str(link), "data.input_uri"), (climbing, "data.input_uri")):
        spec = service.spec("steal-key", ["true"])
        spec["data"]["input_uri"] = uri
        response = service.submit.post("/v1/jobs", json=spec)
        assert response.status_code == 422, (uri, response.text)
        assert response.json()["error"]["message"].startswith(f"{field}: {uri} must lie inside")
    spec = service.spec("write-into-data-dir", ["true"])
    spec["data"]["output_uri"] = str(service.data_dir / "scratch")
    spec["model"]["source_uri"] = f"file://{service.data_dir}"
    message = service.submit.post("/v1/jobs", json=spec).json()["error"]["message"]
    assert "data.output_uri: " in message and "model.source_uri: " in message


def _assert_read_refused(service: Service, name: str, target: Path, secret: bytes) -> None:
    assert secret, "nothing to look for"
    job, logs, output = service.run(name, "read", str(target))
    assert job["status"] == "finished", job["reason"]
    assert "read refused: " in logs, logs
    assert secret not in logs.encode() and secret not in output


def test_a_worker_command_cannot_read_the_master_key(service: Service) -> None:
    key_file = service.data_dir / "master.key"
    _assert_read_refused(service, "read-master-key", key_file, key_file.read_bytes().strip())


def test_a_worker_command_cannot_read_the_database(service: Service) -> None:
    database = service.data_dir / "autoinfer.db"
    _assert_read_refused(service, "read-db", database, database.read_bytes()[:16])  # its header


def test_a_worker_command_cannot_read_etc_shadow(service: Service) -> None:
    shadow = Path("/etc/shadow").read_bytes()
    _assert_read_refused(service, "read-shadow", Path("/etc/shadow"), shadow.splitlines()[0])


def test_a_worker_command_cannot_read_another_jobs_folder(service: Service) -> None:
    victim = service.create(service.spec("victim", [f"python probe.py wait {VICTIM_SECRET}"]))
    scratch = service.data_dir / "scratch"
    deadline = time.monotonic() + 60
    while not list(scratch.glob(f"{victim['id']}-*/data/mine.txt")):
        assert time.monotonic() < deadline, "the victim never started"
        time.sleep(0.1)
    stash = next(scratch.glob(f"{victim['id']}-*/data/mine.txt"))
    try:
        _assert_read_refused(service, "read-victim", stash, VICTIM_SECRET.encode())
        _, logs, _ = service.run("list-victim", "read", str(stash.parent.parent))
        assert "read refused: " in logs
    finally:
        service.submit.post(f"/v1/jobs/{victim['id']}/stop")


@pytest.mark.parametrize("archive", [True, False])
def test_a_link_in_the_output_does_not_carry_the_master_key_out(
    service: Service, archive: bool
) -> None:
    key_file = service.data_dir / "master.key"
    output = service.root / "buckets" / "data" / f"links-{archive}"
    spec = service.spec(f"link-{archive}", [f"python probe.py link {key_file}"])
    spec["data"]["output_uri"] = str(output)
    spec["data"]["output_options"] = {"archive": archive}
    job = service.wait(service.create(spec)["id"])
    assert job["status"] == "failed"
    assert "leak.txt' is a link to something outside the output folder" in job["reason"]
    secret = key_file.read_bytes().strip()
    leaked = [p for p in output.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaked == []


def test_an_items_file_linked_to_the_master_key_is_not_read_into_the_log(
    service: Service,
) -> None:
    key_file = service.data_dir / "master.key"
    job, logs, _ = service.run("items-link", "items-link", str(key_file))
    assert "linked" in logs and "items.json ignored: it is a link" in logs, job["reason"]
    assert key_file.read_bytes().strip() not in logs.encode()


def test_an_errors_file_linked_out_of_the_sandbox_is_not_written_through(
    service: Service,
) -> None:
    planted = service.root / "planted-by-a-job.txt"
    job, logs, _ = service.run("errors-link", "errors-link", str(planted))
    assert "linked" in logs, job["reason"]
    assert not planted.exists() and not planted.is_symlink()


def test_a_worker_command_cannot_connect_to_the_services_api(service: Service) -> None:
    port = service.process.url.rsplit(":", 1)[1]
    job, logs, _ = service.run("call-home", "connect", f"127.0.0.1:{port}")
    assert job["status"] == "finished", job["reason"]
    assert "connect refused: " in logs and "connected" not in logs.splitlines()


def test_network_allowed_by_the_spec_lets_the_same_connection_through(service: Service) -> None:
    port = service.process.url.rsplit(":", 1)[1]
    job, logs, _ = service.run(
        "call-home-allowed", "connect", f"127.0.0.1:{port}", environment={"network": True}
    )
    assert job["status"] == "finished", job["reason"]
    assert "connected" in logs.splitlines(), logs


def test_the_services_environment_is_not_visible_to_a_worker(service: Service) -> None:
    job, logs, _ = service.run(
        "environ", "env", "-", environment={"env": [{"key": "MINE", "value": "visible"}]}
    )
    assert job["status"] == "finished", job["reason"]
    assert CANARY not in logs and "AUTOINFER_CANARY" not in logs
    names = {line.split("=", 1)[0] for line in logs.splitlines() if "=" in line}
    assert {"MINE", "AUTOINFER_DATA_PATH", "TRAINML_OUTPUT_PATH", "PATH", "HOME"} <= names
    assert STORED_SECRET not in logs


def test_worker_commands_can_be_kept_from_submit_keys(
    tmp_path: Path, model_cache: Path, seed_zip: Path
) -> None:
    (tmp_path / "buckets" / "data").mkdir(parents=True)
    config = service_config(tmp_path, port=free_port(), cache_dir=model_cache, triggers=[])
    config["worker_commands_role"] = "code"
    config["allowed_paths"] = [str(seed_zip.parent)]
    process = ServiceProcess(config, tmp_path)
    process.start()
    try:
        keys = {
            role: process.post("/v1/keys", {"name": role, "role": role})["key"]
            for role in ("submit", "code")
        }
        spec = {
            "name": "with-workers",
            "workers": ["true"],
            "model": {"source_type": "local", "source_uri": str(seed_zip.parent)},
            "data": {"input_uri": str(seed_zip), "output_uri": str(tmp_path / "buckets" / "data")},
        }

        def post(role: str, body: dict[str, Any]) -> httpx.Response:
            return httpx.post(
                f"{process.url}/v1/jobs",
                json=body,
                headers={"Authorization": f"Bearer {keys[role]}"},
            )

        refused = post("submit", spec)
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == (
            "this key's role 'submit' cannot run worker commands (needs code: "
            "worker_commands_role); built-in models need no workers"
        )
        assert post("code", spec).status_code == 201
        builtin = {**spec, "name": "builtin", "workers": [], "model": {"source_type": "builtin"}}
        assert post("submit", builtin).status_code == 201
    finally:
        process.close()


def test_without_bwrap_worker_jobs_fail_at_once_and_builtin_jobs_still_run(
    tmp_path: Path, model_cache: Path, seed_zip: Path
) -> None:
    (tmp_path / "buckets" / "data").mkdir(parents=True)
    (tmp_path / "in.txt").write_text("x")
    config = service_config(tmp_path, port=free_port(), cache_dir=model_cache, triggers=[])
    config["allowed_paths"] = [str(tmp_path), str(seed_zip)]
    no_bwrap = tmp_path / "bin"  # a PATH holding everything but bwrap
    no_bwrap.mkdir()
    for tool in ("git", "setpriv", "prlimit", "sh"):
        os.symlink(f"/usr/bin/{tool}", no_bwrap / tool)
    process = ServiceProcess(config, tmp_path, env={"PATH": str(no_bwrap)})
    process.start()
    try:
        job = process.post(
            "/v1/jobs",
            {
                "name": "needs-bwrap",
                "workers": ["true"],
                "model": {"source_type": "local", "source_uri": str(tmp_path / "buckets")},
                "data": {
                    "input_uri": str(tmp_path / "in.txt"),
                    "output_uri": str(tmp_path / "buckets" / "data"),
                },
            },
        )
        deadline = time.monotonic() + 60
        while (job := process.get(f"/v1/jobs/{job['id']}"))["status"] != "failed":
            assert time.monotonic() < deadline, job["status"]
            time.sleep(0.1)
        assert job["reason"] == (
            "bwrap not found: install bubblewrap (apt-get install bubblewrap) or set "
            "sandbox: none in the config"
        )
        assert job["attempt"] == 1 and "running" not in [t["status"] for t in job["transitions"]]
        assert "jobs with worker commands will fail: bwrap not found" in process.log_tail()
        builtin = process.post(
            "/v1/jobs",
            {
                "name": "builtin",
                "data": {
                    "input_uri": str(seed_zip),
                    "output_uri": str(tmp_path / "buckets" / "data"),
                },
            },
        )
        deadline = time.monotonic() + 300
        while (builtin := process.get(f"/v1/jobs/{builtin['id']}"))["status"] not in TERMINAL:
            assert time.monotonic() < deadline, builtin["status"]
            time.sleep(0.2)
        assert builtin["status"] == "finished", builtin["reason"]
    finally:
        process.close()


def _doctor(
    config: dict[str, Any], folder: Path, env: dict[str, str] | None = None
) -> tuple[int, str]:
    path = folder / "doctor.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "autoinfer.cli", "doctor", "--config", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400", **(env or {})},
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_doctor_proves_the_sandbox_works_and_names_what_is_wrong(tmp_path: Path) -> None:
    config = {"data_dir": str(tmp_path / "service")}
    code, out = _doctor(config, tmp_path)
    assert code == 0, out
    assert "✓ sandbox: bwrap (jobs run as " in out and ": a test command ran" in out
    no_bwrap = tmp_path / "bin"
    no_bwrap.mkdir()
    for tool in ("setpriv", "prlimit", "sh"):
        os.symlink(f"/usr/bin/{tool}", no_bwrap / tool)
    code, out = _doctor(config, tmp_path, {"PATH": str(no_bwrap)})
    assert code == 1
    assert "✗ sandbox: bwrap not found: install bubblewrap (apt-get install bubblewrap)" in out


def test_sandbox_none_is_warned_about_at_start_and_by_doctor(
    tmp_path: Path, model_cache: Path
) -> None:
    code, out = _doctor({"data_dir": str(tmp_path / "service"), "sandbox": "none"}, tmp_path)
    assert code == 0 and "warning: sandbox: none — worker commands run as the service's user" in out
    (tmp_path / "buckets").mkdir()
    config = service_config(tmp_path, port=free_port(), cache_dir=model_cache, triggers=[])
    process = ServiceProcess({**config, "sandbox": "none"}, tmp_path)
    process.start()
    try:
        assert "sandbox: none — worker commands run as the service's user" in process.log_tail()
    finally:
        process.close()
