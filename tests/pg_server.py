"""Pytest plugin: a real PostgreSQL server from Debian's packages on a free loopback port.

`pg_server` runs `initdb` and `postgres` (from /usr/lib/postgresql/<version>/bin) in a fresh
folder once per test session; `pg_url` creates an empty database for one test and yields its
SQLAlchemy URL (`postgresql+psycopg://...`). As root, the server runs as the `postgres` user
(PostgreSQL refuses to run as root). Without PostgreSQL installed the fixtures fail, telling
how to install it: the replica tests are part of the suite, not optional.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
SUPERUSER = "postgres"
# Durability is not what the tests check; these make a test database several times faster.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
}


def postgres_bin_dir() -> Path:
    """The newest `/usr/lib/postgresql/<version>/bin`; fails the test if there is none."""
    candidates = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "postgres").is_file()),
        key=lambda p: _version_key(p.parent.name),
    )
    if not candidates:
        pytest.fail(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): "
            "install it with `apt-get install postgresql` (.ci/run does)",
            pytrace=False,
        )
    return candidates[-1]


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running PostgreSQL server owned by the test session."""

    bin_dir: Path
    root: Path
    port: int
    run_as: str | None  # the user the server runs as, when the tests run as root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` (trust authentication on loopback)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with psql as the superuser; the output, or a failed test with psql's error."""
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"psql {sql!r} failed: {result.stderr.strip()}", pytrace=False)
        return result.stdout

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = "test_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        self._run(
            [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate"],
            check=False,
        )

    def _run(self, command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}\n{self.log_tail()}",
                pytrace=False,
            )
        return result


def start_postgres(attempts: int = 3) -> PostgresServer:
    """initdb a fresh cluster in a new temporary folder and start it on a free port."""
    bin_dir = postgres_bin_dir()
    run_as = _server_user()
    # Not below pytest's tmp folders: they are private to the user running the tests.
    root = Path(tempfile.mkdtemp(prefix="autoinfer-pg-"))
    if run_as is not None:
        account = pwd.getpwnam(run_as)
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PostgresServer(bin_dir, root, 0, run_as)
    server._run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(server.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ]
    )
    failures = []
    for _ in range(attempts):
        server.port = _free_port()
        options = " ".join(f"-c {key}={value}" for key, value in SERVER_SETTINGS.items())
        options += f" -p {server.port} -k {root}"
        result = server._run(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(server.data_dir),
                "-l",
                str(server.log_path),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-o",
                options,
            ],
            check=False,
        )
        if result.returncode == 0:
            return server
        failures.append(f"port {server.port}: {(result.stderr or result.stdout).strip()}")
    shutil.rmtree(root, ignore_errors=True)
    pytest.fail(
        f"PostgreSQL did not start ({'; '.join(failures)}):\n{server.log_tail()}", pytrace=False
    )


def _server_user() -> str | None:
    """None when not root; else the `postgres` account, which Debian's package creates."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
            capture_output=True,
        )
    return "postgres"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session (each test gets its own database)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return pg_server.create_database()
