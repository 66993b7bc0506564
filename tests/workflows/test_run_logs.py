"""The run log the README names, `DATA_DIR/logs/WORKFLOW_ID/RUN_ID.ATTEMPT.log`: there for every
attempt that did not succeed (however short its output) and for every output longer than the
tail; a successful short output is all in the database. Real processes, real git repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from tests.workflows.conftest import agent_workflow, harness

pytestmark = pytest.mark.usefixtures("engine_kind")


def log_file(root: Path, workflow_id: str, run_id: str, attempt: int) -> Path:
    return root / "var" / "logs" / workflow_id / f"{run_id}.{attempt}.log"


async def test_a_failed_attempt_has_its_log_a_short_success_needs_none(
    database: Database, tmp_path: Path
) -> None:
    pull_twice = {
        "argv": ["git", "pull", "--ff-only"],
        "retry": {"max_attempts": 2, "initial_backoff_seconds": 0.05},
    }
    async with harness(database, tmp_path, workflows={"pull": pull_twice}) as h:
        (h.repo("beta") / "README.md").write_text("changed\n")  # a dirty work tree
        clean = await h.service.trigger(ADMIN, "git-status", repos=["alpha", "beta"])
        pulled = await h.service.trigger(ADMIN, "pull", repos=["alpha"])  # no remote: fails
        status = await h.wait(clean.workflow_id)
        pull = await h.wait(pulled.workflow_id)
    by_repo = {run.repo: run for run in status.runs}
    assert "M README.md" in (by_repo["beta"].output_tail or "")
    for run in status.runs:  # succeeded, short: the whole output is the tail, no file
        assert run.status == "succeeded"
        assert not log_file(tmp_path, status.workflow_id, run.run_id, 1).exists()
    [run] = pull.runs
    assert run.status == "failed"
    assert run.attempt == 2
    for attempt in (1, 2):
        text = log_file(tmp_path, pull.workflow_id, run.run_id, attempt).read_text()
        assert "There is no tracking information for the current branch." in text
    assert text == run.output_tail  # short output: the file holds all of it, as the tail does


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
    texts = [log_file(tmp_path, summary.workflow_id, run.run_id, n).read_text() for n in (1, 2)]
    assert "attempt 1 fails on request" in texts[0]
    assert "attempt 2 fails on request" in texts[1]
    assert not log_file(tmp_path, summary.workflow_id, run.run_id, 3).exists()  # it succeeded


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
