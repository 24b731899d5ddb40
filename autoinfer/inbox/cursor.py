"""A source's cursor: which objects a watcher or poller has already reported, so rescans and
restarts report only what changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import (
    delete,
    select,
)

from autoinfer.inbox.tables import SeenObjectRow, SourceCursorRow
from autoinfer.orm import utcnow

if TYPE_CHECKING:
    from autoinfer.db import Database


@dataclass(frozen=True)
class SeenObject:
    etag: str | None
    size: int | None
    stamp: str | None


class SourceCursor:
    """What one source (by name) has already reported, so rescans and restarts report only
    what changed. Scoped by the source's name, which includes its bucket and prefix."""

    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source
        # One statement for any number of objects (run as an executemany), built once.
        upsert = db.insert()(SeenObjectRow)
        self._upsert = upsert.on_conflict_do_update(
            index_elements=["source", "bucket", "key"],
            set_={name: upsert.excluded[name] for name in ("etag", "size", "stamp", "seen_at")},
        )

    def started(self) -> bool:
        """Whether this source has completed a first scan before (in this or an earlier run)."""
        with self.db.session() as session:
            return session.get(SourceCursorRow, self.source) is not None

    def mark_scanned(self) -> None:
        now = utcnow()
        with self.db.session() as session:
            row = session.get(SourceCursorRow, self.source)
            if row is None:
                session.add(SourceCursorRow(source=self.source, started_at=now, scanned_at=now))
            else:
                row.scanned_at = now

    def seen(self, bucket: str | None = None) -> dict[tuple[str, str], SeenObject]:
        """(bucket, key) → what was reported of it."""
        query = select(SeenObjectRow).where(SeenObjectRow.source == self.source)
        if bucket is not None:
            query = query.where(SeenObjectRow.bucket == bucket)
        with self.db.session() as session:
            return {
                (row.bucket, row.key): SeenObject(etag=row.etag, size=row.size, stamp=row.stamp)
                for row in session.scalars(query)
            }

    def remember(self, objects: Iterable[tuple[str, str, SeenObject]]) -> None:
        """Record (bucket, key, state) as reported, replacing what was known of those keys."""
        rows = [
            {
                "source": self.source,
                "bucket": bucket,
                "key": key,
                "etag": state.etag,
                "size": state.size,
                "stamp": state.stamp,
                "seen_at": utcnow(),
            }
            for bucket, key, state in objects
        ]
        if not rows:
            return
        with self.db.connection() as connection:
            connection.execute(self._upsert, rows)

    def forget(self, keys: Iterable[tuple[str, str]]) -> None:
        """Drop (bucket, key) entries of objects that no longer exist."""
        keys = list(keys)
        with self.db.session() as session:
            for bucket, key in keys:
                session.execute(
                    delete(SeenObjectRow).where(
                        SeenObjectRow.source == self.source,
                        SeenObjectRow.bucket == bucket,
                        SeenObjectRow.key == key,
                    )
                )
