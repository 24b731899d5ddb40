"""Per-item results: each input item of a job with its outcome (ok or error) and top class.

A built-in model job records one row per image as the predictor pool hands its results back;
a worker-command job records its input files with the job's outcome, or what the model wrote
in an optional `items.json`. The job's read model carries the counts (`items: {ok, error}`),
`GET /v1/jobs/{id}/items` pages through the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from autoinfer.orm import Base

if TYPE_CHECKING:
    from autoinfer.db import Database

ItemStatus = Literal["ok", "error"]
#: Rows written per INSERT (a job of many thousand images writes in several).
WRITE_CHUNK = 500


class ItemRow(Base):
    __tablename__ = "job_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    file: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    top: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (Index("ix_job_items_job", "job_id", "status", "id"),)


class ItemRecord(BaseModel):
    """One input item's outcome: `top` is the likeliest class `{id, name, confidence}`."""

    file: str
    status: ItemStatus
    error: str | None = None
    top: dict[str, Any] | None = None


class ItemCounts(BaseModel):
    ok: int = 0
    error: int = 0


class ItemPage(BaseModel):
    items: list[ItemRecord]
    total: int


#: Item results waiting to be stored with a job's status change: (whether they replace the
#: earlier attempts' items, the items).
ItemBatch = tuple[bool, Sequence["ItemRecord"]]


def write_items(
    connection: Connection, job_id: str, items: Sequence[ItemRecord], *, replace: bool
) -> None:
    """Add `items` to the job's results in `connection`'s transaction; `replace`: its earlier
    results go first."""
    if replace:
        connection.execute(delete(ItemRow).where(ItemRow.job_id == job_id))
    if items:
        connection.execute(
            insert(ItemRow), [{"job_id": job_id, **item.model_dump()} for item in items]
        )


def item_from_prediction(prediction: Mapping[str, Any]) -> ItemRecord:
    """A prediction record (`{"file", "classes"}` or `{"file", "error"}`) as an item."""
    if "error" in prediction:
        return ItemRecord(file=prediction["file"], status="error", error=str(prediction["error"]))
    classes = prediction.get("classes") or []
    return ItemRecord(
        file=prediction["file"], status="ok", top=dict(classes[0]) if classes else None
    )


def counts_in(connection: Connection, job_id: str) -> ItemCounts:
    """A job's item counts, read on `connection` (inside a caller's transaction)."""
    return item_counts(connection, [job_id]).get(job_id, ItemCounts())


def item_counts(connection: Connection, job_ids: Sequence[str]) -> dict[str, ItemCounts]:
    """The item counts of each of `job_ids` that has items (one grouped query)."""
    if not job_ids:
        return {}
    return _counts(connection.execute(_COUNTS, {"ids": list(job_ids)}).all())


class JobItems:
    """Writes and reads the per-item results of jobs."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, job_id: str, items: Sequence[ItemRecord], *, replace: bool = False) -> None:
        """Add `items` to the job's results (in chunks, each its own short transaction);
        `replace`: the job's earlier results go first, in the first chunk's transaction (a new
        attempt's first write: one transaction where `clear` and `record` take two)."""
        for start in range(0, max(len(items), 1 if replace else 0), WRITE_CHUNK):
            rows = items[start : start + WRITE_CHUNK]
            with self.db.connection() as connection:
                write_items(connection, job_id, rows, replace=replace and start == 0)

    def clear(self, job_id: str) -> None:
        """Forget the job's results (a new attempt records them again)."""
        with self.db.connection() as connection:
            connection.execute(delete(ItemRow).where(ItemRow.job_id == job_id))

    def page(
        self, job_id: str, *, status: ItemStatus | None = None, limit: int = 100, offset: int = 0
    ) -> ItemPage:
        """The job's items in the order they were recorded, optionally only ok or errors."""
        filters = [ItemRow.job_id == job_id]
        if status is not None:
            filters.append(ItemRow.status == status)
        with self.db.session() as session:
            total = session.scalar(select(func.count()).select_from(ItemRow).where(*filters)) or 0
            rows = session.scalars(
                select(ItemRow).where(*filters).order_by(ItemRow.id).limit(limit).offset(offset)
            ).all()
        items = [
            ItemRecord(file=row.file, status=row.status, error=row.error, top=row.top)
            for row in rows
        ]
        return ItemPage(items=items, total=total)

    def counts(self, job_ids: Iterable[str]) -> dict[str, ItemCounts]:
        """The item counts of each job that has items."""
        with self.db.connection() as connection:
            return item_counts(connection, list(job_ids))


def _counts(rows: Iterable[Any]) -> dict[str, ItemCounts]:
    counts: dict[str, ItemCounts] = {}
    for job_id, status, count in rows:
        target = counts.setdefault(job_id, ItemCounts())
        if status in ("ok", "error"):
            setattr(target, status, count)
    return counts


_COUNTS = (
    select(ItemRow.job_id, ItemRow.status, func.count())
    .where(ItemRow.job_id.in_(bindparam("ids", expanding=True)))
    .group_by(ItemRow.job_id, ItemRow.status)
)
