"""backup events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 00:58:27.896416

The table now belongs to ops (their tree, `mahavishnu/ops/migrations`, revision ops_0001, with
its own version table). This released revision keeps its id and its effect on every database
that ran it, so existing deployments upgrade as before; two guards make it share the table
instead of fighting over it:
- upgrade creates `backup_events` only where it is missing (ops may have made it first, e.g.
  in a database still at 0001 when ops ran), with the same columns and indexes as before;
- downgrade drops it only while ops' tree has not adopted it (no `alembic_version_ops`):
  stepping Mahavishnu's schema back must not delete ops' backup log.
Editing the revision this way, rather than adding a 0005 that hands the table over, keeps one
definition of the table in Mahavishnu's history and changes nothing for a database that
already ran 0002.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OPS_VERSION_TABLE = "alembic_version_ops"


def _has_table(name: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _has_table("backup_events"):
        return
    op.create_table(
        "backup_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("archive", sa.String(length=255), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("backup_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backup_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_backup_events_kind"), ["kind"], unique=False)


def downgrade() -> None:
    if _has_table(OPS_VERSION_TABLE) or not _has_table("backup_events"):
        return  # ops own the table now: their tree drops it, not Mahavishnu's
    with op.batch_alter_table("backup_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backup_events_kind"))
        batch_op.drop_index(batch_op.f("ix_backup_events_created_at"))
    op.drop_table("backup_events")
