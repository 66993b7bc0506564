"""trace context of the call that triggered a workflow

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 04:15:00

A workflow outlives the request that triggered it; its W3C `traceparent` is kept so the
workflow's span and its runs' spans join that request's trace, even in another process.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("workflows", "repo_runs")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("trace_parent", sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name == "sqlite":
            # In place (SQLite 3.35+): batch mode would rebuild repo_runs and lose the triggers
            # that keep its full-text index current.
            op.execute(f"ALTER TABLE {table} DROP COLUMN trace_parent")
        else:
            op.drop_column(table, "trace_parent")
