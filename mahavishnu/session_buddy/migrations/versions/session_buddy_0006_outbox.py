"""the outbox of memory versions and deletions for Akosha

Revision ID: session_buddy_0006
Revises: session_buddy_0005
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "session_buddy_0006"
down_revision = "session_buddy_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_buddy_outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("memory_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_session_buddy_outbox_memory_id", "session_buddy_outbox", ["memory_id"])
    # What was written before the outbox existed is queued too (every version, then every
    # deletion after all of them), so Akosha receives it once pushing is turned on.
    now = sa.bindparam("now", datetime.now(UTC), type_=UTCDateTime())
    op.execute(
        sa.text(
            "INSERT INTO session_buddy_outbox (tenant, memory_id, version, op, created_at) "
            "SELECT tenant, memory_id, version, 'upsert', :now FROM session_buddy_memory_versions "
            "ORDER BY created_at, memory_id, version"
        ).bindparams(now)
    )
    op.execute(
        sa.text(
            "INSERT INTO session_buddy_outbox (tenant, memory_id, version, op, created_at) "
            "SELECT tenant, id, version + 1, 'tombstone', :now FROM session_buddy_memories "
            "WHERE deleted_at IS NOT NULL ORDER BY deleted_at, id"
        ).bindparams(now)
    )


def downgrade() -> None:
    op.drop_index("ix_session_buddy_outbox_memory_id", table_name="session_buddy_outbox")
    op.drop_table("session_buddy_outbox")
