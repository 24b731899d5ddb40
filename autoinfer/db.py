"""The database: one SQLAlchemy engine per service, SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from autoinfer.migrations import upgrade_schema
from autoinfer.orm import Base, UTCDateTime, utcnow

__all__ = ["Base", "Database", "UTCDateTime", "default_url", "utcnow"]


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'autoinfer.db').resolve()}"


class Database:
    """Owns the engine and hands out sessions. Opening it brings the schema to the newest
    migration (`autoinfer.migrations`) unless `upgrade` is false (`autoinfer migrate`)."""

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        self.engine: Engine = _make_engine(url)
        if upgrade:
            upgrade_schema(self.engine)
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

    def insert(self):  # postgresql.insert or sqlite.insert: two unrelated types
        """The dialect's INSERT that knows ON CONFLICT (both supported databases have it)."""
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:  # a DB-API connection
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine
