"""Search finds what a user types, the same on SQLite and PostgreSQL: file names, paths, dotted
names, any case; phrases keep their order; results come in pages."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql

from mahavishnu.orchestrator.workflows.models import RepoRun
from mahavishnu.orchestrator.workflows.search import matches, phrases
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError
from tests.support.gitrepos import GIT_ENV
from tests.workflows.conftest import Harness, harness

FLEET = {"dirty": ["python"], "clean": ["python"]}

FOUND_IN_DIRTY_ONLY = [
    "README",
    "readme",
    "README.md",
    "readme.MD",
    "src/app.py",
    "app",
    "app.py",
    "src",
    "Foo.Bar",
    "FOO.BAR",
    "bar",
    "src/app.py README",
]
FOUND_NOWHERE = ["README.txt", "app.src", "READ", "py.app", "Foo.Baz", "README nowhere"]


def _dirty(repo: Path) -> None:
    """` M README.md`, `A  Foo.Bar` and `A  src/app.py` in `git status --short`."""
    env = {**os.environ, **GIT_ENV}
    (repo / "README.md").write_text("changed\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("print()\n")
    (repo / "Foo.Bar").write_text("x\n")
    subprocess.run(["git", "-C", str(repo), "add", "src/app.py", "Foo.Bar"], check=True, env=env)


async def _status_of_both(h: Harness) -> str:
    workflow_id = (await h.service.trigger(ADMIN, "git-status", tag="python")).workflow_id
    view = await h.wait(workflow_id)
    assert view.status == "succeeded", view.runs
    return workflow_id


def test_a_query_word_becomes_the_phrase_of_its_letters_and_digits() -> None:
    assert phrases("  README.md src/app.py  Foo.Bar my_module -- v1.2 ") == [
        "README md",
        "src app py",
        "Foo Bar",
        "my module",
        "v1 2",
    ]
    assert phrases("... --- ") == []


async def test_the_same_queries_find_the_same_runs(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET) as h:
        _dirty(h.repo("dirty"))
        workflow_id = await _status_of_both(h)
        for query in FOUND_IN_DIRTY_ONLY:
            hits = (await h.service.search(ADMIN, query)).hits
            assert [(x.workflow_id, x.repo) for x in hits] == [(workflow_id, "dirty")], query
        for query in FOUND_NOWHERE:
            assert (await h.service.search(ADMIN, query)).hits == [], query
        both = await h.service.search(ADMIN, "main")  # the branch line: `## main`
        assert sorted(x.repo for x in both.hits) == ["clean", "dirty"]
        assert "README.md" in (await h.service.search(ADMIN, "readme")).hits[0].excerpt
        with pytest.raises(InvalidArgumentError, match="no words"):
            await h.service.search(ADMIN, "./-")


async def test_search_results_come_in_pages(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET) as h:
        _dirty(h.repo("dirty"))
        ids = [await _status_of_both(h) for _ in range(3)]
        first = await h.service.search(ADMIN, "README.md", limit=2)
        assert (first.total, [x.workflow_id for x in first.hits]) == (3, ids[:0:-1])
        assert first.next_cursor is not None
        rest = await h.service.search(ADMIN, "README.md", limit=2, cursor=first.next_cursor)
        assert ([x.workflow_id for x in rest.hits], rest.next_cursor, rest.total) == ([ids[0]], None, 3)
        with pytest.raises(InvalidArgumentError, match="other filters"):
            await h.service.search(ADMIN, "main", limit=2, cursor=first.next_cursor)
        with pytest.raises(InvalidArgumentError, match="limit"):
            await h.service.search(ADMIN, "main", limit=201)


async def test_postgresql_searches_through_its_index(database: Database) -> None:
    """The search's document is the expression the GIN index is built on (migration 0004): a
    drift between them would still answer, by reading every row."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite searches its FTS5 table")
    query = select(RepoRun.id).where(matches("postgresql", ["readme md"]))
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    async with database.engine.connect() as connection:
        await connection.execute(text("SET enable_seqscan = off"))
        plan = await connection.execute(text("EXPLAIN " + sql))
        assert "ix_repo_runs_search" in "\n".join(row[0] for row in plan)
