"""One tokenisation of run output for both databases, so a search finds the same runs on each.

SQLite's FTS5 (`unicode61`) splits text at every character that is not a letter or a digit;
PostgreSQL's text-search parser keeps `README.md`, `src/app.py` and `Foo.Bar` whole (as file
and host names), so a search for `README` found ` M README.md` on SQLite only. Here both sides
see the same words: on PostgreSQL the document is first cut at the same characters
(`regexp_replace`, in the expression its GIN index is built on, migration 0004), and a query
word becomes the phrase of its letter-and-digit runs on both: `readme.md` is `readme` followed
by `md`, wherever it stands.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, select, text

__all__ = ["DOCUMENT_SQL", "matches", "phrases"]

_RUN = re.compile(r"[^\W_]+")
"""Letters and digits, as FTS5's `unicode61` tokenizer groups them (`_` separates)."""

DOCUMENT_SQL = (
    "to_tsvector('simple', regexp_replace("
    "coalesce(output_tail, '') || ' ' || coalesce(error, ''), '[^[:alnum:]]+', ' ', 'g'))"
)
"""The PostgreSQL document, exactly as its GIN index is defined (the planner matches text)."""


def phrases(query_text: str) -> list[str]:
    """Each whitespace-separated word of the query as its letter-and-digit runs, space-joined;
    words with no letter or digit are dropped. Every phrase must occur (AND)."""
    found = (" ".join(_RUN.findall(word)) for word in query_text.split())
    return [phrase for phrase in found if phrase]


def matches(dialect: str, words: list[str]) -> ColumnElement[bool]:
    """A condition on `repo_runs` rows: every phrase occurs in the run's output or error."""
    if dialect == "postgresql":
        document: ColumnElement[Any] = literal_column(DOCUMENT_SQL)
        return and_(*(document.op("@@")(func.phraseto_tsquery(text("'simple'"), phrase)) for phrase in words))
    # The phrases hold only letters, digits and spaces: quoting them needs no escaping.
    terms = " ".join(f'"{phrase}"' for phrase in words)
    matching: Select[Any] = (
        select(literal_column("rowid"))
        .select_from(text("repo_runs_fts"))
        .where(text("repo_runs_fts MATCH :terms").bindparams(terms=terms))
    )
    return literal_column("repo_runs.rowid").in_(matching)
