"""The database: one SQLAlchemy engine per service, SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored naive-in-UTC and always returned timezone-aware (SQLite drops tzinfo)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'autoinfer.db').resolve()}"


class Database:
    """Owns the engine and hands out sessions; creates the schema on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = _make_engine(url)
        # Import the table modules so that their classes are registered on Base.
        from autoinfer import inbox, keys, secrets  # noqa: F401
        from autoinfer.jobs import items, store  # noqa: F401
        from autoinfer.notifications import store as notifications  # noqa: F401

        _create_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite lets one writer in at a time and makes the others poll it with growing
        # sleeps; the threads of this process take turns on a lock instead (readers too: a
        # session is short), which under load is both faster and cheaper.
        self._turn: AbstractContextManager[object] = (
            threading.RLock() if self.is_sqlite else nullcontext()
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on error."""
        with self._turn, self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core connection inside a transaction, committed on success: for the hot paths
        (every job passes through them several times), where ORM sessions cost too much."""
        with self._turn, self.engine.begin() as connection:
            yield connection

    def insert(self):  # type: ignore[no-untyped-def]
        """The dialect's INSERT that knows ON CONFLICT (both supported databases have it)."""
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    def dispose(self) -> None:
        self.engine.dispose()


#: The PostgreSQL advisory lock that serializes schema creation (any constant would do).
SCHEMA_LOCK_KEY = 0x6175746F696E6672  # "autoinfr"


def _create_schema(engine: Engine) -> None:
    """Create the missing tables. On PostgreSQL, replicas starting together on an empty
    database take turns (an advisory lock), or both would try to create the same tables."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        Base.metadata.create_all(connection)


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine
