"""search: the same words on PostgreSQL as on SQLite

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 11:30:00

PostgreSQL's text-search parser kept `README.md` or `src/app.py` whole, so `README` found
nothing there while SQLite's FTS5 found it. The GIN index is rebuilt on the document cut at
every character that is not a letter or a digit, as FTS5 cuts it
(`mahavishnu.orchestrator.workflows.search`). SQLite is unchanged.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

WORDS = (
    "to_tsvector('simple', regexp_replace("
    "coalesce(output_tail, '') || ' ' || coalesce(error, ''), '[^[:alnum:]]+', ' ', 'g'))"
)
"""Written out, not imported: a migration keeps meaning what it meant when it was written."""
PARSED = "to_tsvector('simple', coalesce(output_tail, '') || ' ' || coalesce(error, ''))"


def _index_on(document: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_repo_runs_search")
    op.execute(f"CREATE INDEX ix_repo_runs_search ON repo_runs USING GIN ({document})")


def upgrade() -> None:
    _index_on(WORDS)


def downgrade() -> None:
    _index_on(PARSED)
