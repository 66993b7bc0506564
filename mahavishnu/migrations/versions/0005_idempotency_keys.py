"""idempotency keys of workflow triggers

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 04:20:00

A trigger retried with the same `idempotency_key` must create one workflow, across replicas
and concurrent calls: the key and a digest of the request's arguments are kept on the
workflow, and a unique index on (requested_by, idempotency_key) lets the first insert win.
Rows without a key (every earlier workflow) are not constrained: NULLs are distinct.
Columns and index are added in place (no batch rebuild: on SQLite that would copy the
workflows table under its runs' foreign keys).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEX = "uq_workflows_idempotency"
COLUMNS = ("idempotency_key", "request_fingerprint")


def upgrade() -> None:
    op.add_column("workflows", sa.Column("idempotency_key", sa.String(length=128), nullable=True))
    op.add_column("workflows", sa.Column("request_fingerprint", sa.String(length=64), nullable=True))
    op.create_index(INDEX, "workflows", ["requested_by", "idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="workflows")
    for column in reversed(COLUMNS):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE workflows DROP COLUMN {column}")  # in place (SQLite 3.35+)
        else:
            op.drop_column("workflows", column)
