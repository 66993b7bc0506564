"""backup events, owned by ops

Revision ID: ops_0001
Revises:

`backup_events` in every service's database. Mahavishnu databases made before ops had a tree
already hold the table (Mahavishnu's revision 0002 created it, with these columns and
indexes): there this revision adopts it as it is, rows included, and only records its
version. Anywhere else it creates it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ops_0001"
down_revision = None
branch_labels = None
depends_on = None

TABLE = "backup_events"


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table(TABLE):
        return  # adopted from Mahavishnu's 0002: same definition, keep the rows
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("archive", sa.String(length=255), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backup_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_backup_events_kind"), ["kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backup_events_kind"))
        batch_op.drop_index(batch_op.f("ix_backup_events_created_at"))
    op.drop_table(TABLE)
