"""The run log the README names, `DATA_DIR/logs/WORKFLOW_ID/RUN_ID.ATTEMPT.log`: one for every
attempt, however short its output, with real processes in real git repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from tests.workflows.conftest import agent_workflow, harness

pytestmark = pytest.mark.usefixtures("engine_kind")


def log_file(root: Path, workflow_id: str, run_id: str, attempt: int) -> Path:
    return root / "var" / "logs" / workflow_id / f"{run_id}.{attempt}.log"


async def test_every_attempt_has_its_log_even_a_short_one(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        (h.repo("beta") / "README.md").write_text("changed\n")  # a dirty work tree
        summary = await h.service.trigger(ADMIN, "git-status", repos=["alpha", "beta"])
        view = await h.wait(summary.workflow_id)
    by_repo = {run.repo: run for run in view.runs}
    for name in ("alpha", "beta"):
        run = by_repo[name]
        text = log_file(tmp_path, summary.workflow_id, run.run_id, 1).read_text()
        assert text == run.output_tail  # short output: the whole of it, in the file and the tail
    assert "M README.md" in (by_repo["beta"].output_tail or "")
    assert "M README.md" not in (by_repo["alpha"].output_tail or "")


async def test_each_retry_has_a_log_of_its_own(database: Database, tmp_path: Path) -> None:
    workflows = {
        "flaky": agent_workflow(
            retry={"max_attempts": 3, "initial_backoff_seconds": 0.05, "jitter_seconds": 0.01}
        )
    }
    async with harness(database, tmp_path, workflows=workflows) as h:
        summary = await h.service.trigger(ADMIN, "flaky", repos=["alpha"], params={"prompt": "fail-until:3"})
        view = await h.wait(summary.workflow_id)
    run = view.runs[0]
    texts = [log_file(tmp_path, summary.workflow_id, run.run_id, n).read_text() for n in (1, 2, 3)]
    assert "attempt 1 fails on request" in texts[0]
    assert "attempt 2 fails on request" in texts[1]
    assert "fails on request" not in texts[2]
    assert texts[2] == run.output_tail


async def test_a_program_that_cannot_start_leaves_the_reason_in_its_log(
    database: Database, tmp_path: Path
) -> None:
    workflows = {"ghost": {"argv": ["/nonexistent/tool", "--version"]}}
    async with harness(database, tmp_path, workflows=workflows) as h:
        view = await h.wait((await h.service.trigger(ADMIN, "ghost", repos=["alpha"])).workflow_id)
    run = view.runs[0]
    text = log_file(tmp_path, view.workflow_id, run.run_id, 1).read_text()
    assert text == f"{run.error}\n"
    assert "could not start '/nonexistent/tool'" in text
