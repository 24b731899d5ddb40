"""Schema migrations (Alembic), run from inside the package: no alembic.ini, no separate tool.

`upgrade_schema(engine)` is what opening a `Database` calls: it brings the database to the
newest revision under a lock (PostgreSQL: the advisory lock every replica takes; SQLite:
BEGIN IMMEDIATE), so replicas starting together migrate once. A database made by a release
before migrations (its tables, no `alembic_version`) is recognised and stamped first.
`autoinfer migrate` runs the same step and says what it did.

A new table or column gets a revision file under `versions/` (`0002_second_wave.py` shows the
form); `tests/integration/test_migrations.py` fails while the revisions and the models differ
and prints the missing operations.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("autoinfer.migrations")


def _only_the_upgrades(record: logging.LogRecord) -> bool:
    """Keep alembic's "Running upgrade" lines; drop its set-up chatter (seven plugin lines,
    and which dialect it works with) from the service's log."""
    return not record.getMessage().startswith(("Context impl", "Will assume"))


# Set before alembic is imported (in the functions below), which is when it logs its plugins.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
logging.getLogger("alembic.runtime.migration").addFilter(_only_the_upgrades)

SCRIPT_LOCATION = str(Path(__file__).resolve().parent)
#: The PostgreSQL advisory lock that serializes schema changes (any constant would do).
SCHEMA_LOCK_KEY = 0x6175746F696E6672  # "autoinfr"
#: The revision of a database made before migrations (0.1.0's `create_all`): it has `jobs`
#: and no `alembic_version`. Builds between 0.1.0 and migrations made some of 0002's tables
#: too: 0002 creates each table and index only if it is missing.
BASELINE = "0001"
BASELINE_TABLE = "jobs"
VERSION_TABLE = "alembic_version"
#: Alembic keeps the running migration's context in a module global: one at a time per process.
_ALEMBIC_TURN = threading.Lock()


@dataclass(frozen=True)
class SchemaUpgrade:
    """What `upgrade_schema` found and did."""

    #: The revision found; None for an empty database or one made before migrations.
    before: str | None
    #: The revision a database made before migrations was recognised as (and stamped).
    stamped: str | None
    after: str

    @property
    def changed(self) -> bool:
        return (self.stamped or self.before) != self.after


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Alembic's configuration, built in code: the script folder in this package, and the
    connection to work on (or a URL, for `alembic` commands run by a developer)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision in `versions/`."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(SCRIPT_LOCATION).get_current_head()
    assert head is not None, "autoinfer/migrations/versions holds no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: no `alembic_version` table)."""
    with engine.connect() as connection:
        return _read_revision(connection)


def _read_revision(connection: Connection) -> str | None:
    # Read directly: alembic's MigrationContext logs two INFO lines each time it is made.
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade_schema(engine: Engine) -> SchemaUpgrade:
    """Bring the database to the head revision; when it is there, only a look at its version."""
    head = head_revision()
    found = current_revision(engine)
    if found == head:
        return SchemaUpgrade(found, None, head)
    with _schema_lock(engine) as connection:
        # Read again under the lock: a replica may have migrated while this one waited.
        before = _read_revision(connection)
        from alembic import command

        config = alembic_config(connection)
        stamped = _pre_migration_revision(connection) if before is None else None
        with _ALEMBIC_TURN:  # taken after the database's lock, never before: no deadlock
            if stamped is not None:
                command.stamp(config, stamped)
            if (stamped or before) != head:
                command.upgrade(config, "head")
        done = SchemaUpgrade(before, stamped, head)
    if done.changed:
        log.info("database schema: %s -> %s", done.stamped or done.before or "empty", head)
    return done


def _pre_migration_revision(connection: Connection) -> str | None:
    """BASELINE for a database made before migrations; None for an empty one."""
    return BASELINE if inspect(connection).has_table(BASELINE_TABLE) else None


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's schema lock until commit."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        elif engine.dialect.name == "sqlite":
            # Takes the write lock now (others wait on busy_timeout) instead of at the first write.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
