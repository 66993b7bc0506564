"""records: one row per memory of each source, its newest version sealed

Revision ID: akosha_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "akosha_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "akosha_records",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("memory_id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "memory_id"),
    )
    op.create_index("ix_akosha_records_source_tenant", "akosha_records", ["source", "tenant"])


def downgrade() -> None:
    op.drop_index("ix_akosha_records_source_tenant", table_name="akosha_records")
    op.drop_table("akosha_records")
