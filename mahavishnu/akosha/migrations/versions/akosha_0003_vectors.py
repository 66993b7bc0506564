"""vectors: each live record's embedding, sealed, with when it was last read

Revision ID: akosha_0003
Revises: akosha_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "akosha_0003"
down_revision = "akosha_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "akosha_vectors",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("memory_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("accessed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("source", "memory_id"),
    )


def downgrade() -> None:
    op.drop_table("akosha_vectors")
