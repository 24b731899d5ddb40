"""The second wave: the notifications outbox, per-item results, the retention index.

Builds between 0.1.0 and migrations made some of these with `create_all` (and the index on
first use of retention): each table and index is created only if it is missing, so such a
database, stamped at 0001 like 0.1.0's, upgrades too.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_at", sa.DateTime(), nullable=False),
        sa.Column("give_up_at", sa.DateTime(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("webhook_id"),
        if_not_exists=True,
    )
    for name, columns in (
        ("ix_notifications_created_at", ["created_at"]),
        ("ix_notifications_due", ["status", "next_at"]),
        ("ix_notifications_job_id", ["job_id"]),
        ("ix_notifications_target", ["target"]),
    ):
        op.create_index(name, "notifications", columns, if_not_exists=True)
    op.create_table(
        "job_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("top", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_job_items_job", "job_items", ["job_id", "status", "id"], if_not_exists=True)
    op.create_index("ix_jobs_status_updated", "jobs", ["status", "updated_at"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_status_updated", table_name="jobs")
    op.drop_index("ix_job_items_job", table_name="job_items")
    op.drop_table("job_items")
    for name in (
        "ix_notifications_target",
        "ix_notifications_job_id",
        "ix_notifications_due",
        "ix_notifications_created_at",
    ):
        op.drop_index(name, table_name="notifications")
    op.drop_table("notifications")
