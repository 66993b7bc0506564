"""docs/ARCHITECTURE.md's "Add an engine", followed literally: its skeleton engine is written to
disk as the recipe's files, type-checks against `WorkflowEngine` under mypy --strict, is
registered in `ENGINES` by the recipe's own lines, and passes the contract tests of what it
implements (the same test functions the local engine passes, on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mahavishnu.orchestrator.workflows as workflows_package
from mahavishnu.orchestrator.workflows.ports import WorkflowEngine
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from tests.support.recipes import (
    ROOT,
    compile_edit,
    edit,
    mypy_problems,
    recipe,
    recipe_section,
    ruff_problems,
    write_files,
)
from tests.workflows import conftest
from tests.workflows import test_engine as contract
from tests.workflows.conftest import agent_workflow, harness

BLOCKS = recipe("add-an-engine")
PACKAGE = "mahavishnu.orchestrator.workflows.inline"
ENGINE_FILE = "mahavishnu/orchestrator/workflows/inline/engine.py"


@pytest.fixture(scope="module")
def recipe_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The recipe's files as a real subpackage of `workflows` (on its search path for this
    module's tests only), and its `ENGINES` entry made by the recipe's own conftest lines."""
    root = tmp_path_factory.mktemp("recipe-engine")
    write_files(BLOCKS, root)
    folder = str(root / "mahavishnu" / "orchestrator" / "workflows")
    workflows_package.__path__.append(folder)
    namespace = dict(vars(conftest))  # run as part of conftest.py: its names, its ENGINES
    exec(compile_edit(edit(BLOCKS, "tests/workflows/conftest.py"), conftest.__file__), namespace)  # noqa: S102 (the recipe's own lines, from docs/)
    try:
        yield
    finally:
        conftest.ENGINES.pop("inline", None)
        workflows_package.__path__.remove(folder)
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_the_recipe_is_marked_and_complete() -> None:
    """An unmarked block would be a step the test skips."""
    assert recipe_section("Recipe: add an engine").count("\n```") == 2 * len(BLOCKS)
    assert [(b.kind, b.path) for b in BLOCKS] == [
        ("file", "mahavishnu/orchestrator/workflows/inline/__init__.py"),
        ("file", ENGINE_FILE),
        ("edit", "pyproject.toml"),
        ("edit", "tests/workflows/conftest.py"),
    ]


def test_the_recipe_engine_passes_the_project_lint(tmp_path: Path) -> None:
    assert ruff_problems(write_files(BLOCKS, tmp_path)) == ""


def test_the_recipe_engine_type_checks_against_the_seam(tmp_path: Path) -> None:
    """mypy --strict on the recipe's engine, and on a use of it where a `WorkflowEngine` is
    expected: a missing or mistyped call fails here, not in production."""
    (engine,) = [b for b in BLOCKS if b.path == ENGINE_FILE]
    (tmp_path / "recipe_inline_engine.py").write_text(engine.code)
    (tmp_path / "recipe_use.py").write_text(
        "from mahavishnu.orchestrator.workflows.ports import WorkflowEngine\n"
        "from mahavishnu.platform.db import Database\n"
        "from recipe_inline_engine import InlineEngine\n\n\n"
        "def as_seam(db: Database) -> WorkflowEngine:\n"
        "    return InlineEngine(db, {})\n"
    )
    assert mypy_problems(["recipe_inline_engine.py", "recipe_use.py"], cwd=tmp_path) == ""


def test_the_recipe_engine_offers_the_whole_seam(recipe_engine: None) -> None:
    engine = importlib.import_module(PACKAGE).InlineEngine
    for name, wanted in vars(WorkflowEngine).items():
        if inspect.isfunction(wanted) and not name.startswith("_"):
            ours = inspect.signature(getattr(engine, name))
            assert list(ours.parameters) == list(inspect.signature(wanted).parameters), name


def test_the_pyproject_edit_extends_the_engine_seam_contract() -> None:
    """The recipe's lines are the contract's list as it stands, plus the new engine."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (seam,) = [c for c in contracts if c["name"].startswith("Engine seam")]
    edited = tomllib.loads(edit(BLOCKS, "pyproject.toml").code)["forbidden_modules"]
    assert edited == [*seam["forbidden_modules"], PACKAGE]


# --- the contract tests it implements, run against it -----------------------------------------


def _against_the_recipe_engine(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A contract test of `test_engine.py`, run here with the recipe's engine as `engine_kind`
    (a wrapper: marking the imported function itself would change it in its own module too)."""

    @functools.wraps(test)
    async def case(*args: Any, **kwargs: Any) -> None:
        await test(*args, **kwargs)

    marked = pytest.mark.usefixtures("recipe_engine", "engine_kind")(case)
    return pytest.mark.parametrize("engine_kind", ["inline"], indirect=True)(marked)


# Left out on purpose, as the recipe says: what asserts the local engine's metrics (the
# circuit-open gauge, the workflow counters), log files, concurrency limits and healing. The
# contract's cancel test reads the agent's child pid as soon as a run shows running, which the
# inline engine says at once: its own cancel test below waits for the child first.
test_git_status = _against_the_recipe_engine(contract.test_git_status_succeeds_in_every_selected_repo)
test_prompt = _against_the_recipe_engine(contract.test_agent_gets_the_prompt_as_one_argument)
test_failure = _against_the_recipe_engine(contract.test_failure_partial_and_exit_codes)
test_timeout = _against_the_recipe_engine(contract.test_timeout_kills_the_whole_process_group)
test_retry = _against_the_recipe_engine(contract.test_retry_then_success_records_every_attempt)
test_no_retry = _against_the_recipe_engine(contract.test_non_retryable_exit_code_is_not_retried)
test_dlq = _against_the_recipe_engine(contract.test_exhausted_retries_go_to_the_dlq_and_back_out)
test_probe = _against_the_recipe_engine(contract.test_half_open_probe_failure_reopens)
test_environment = _against_the_recipe_engine(contract.test_environment_is_an_allowlist)
test_missing_program = _against_the_recipe_engine(contract.test_missing_program_fails_cleanly)
test_waiters = _against_the_recipe_engine(contract.test_waiters_wake_when_the_engine_closes_the_workflow)


@pytest.mark.usefixtures("recipe_engine")
async def test_cancel_stops_the_running_attempt_and_the_queued_runs(
    database: Database, tmp_path: Path
) -> None:
    workflows = {"slow": agent_workflow(timeout_seconds=120)}
    async with harness(database, tmp_path, workflows=workflows, engine="inline") as h:
        summary = await h.service.trigger(ADMIN, "slow", params={"prompt": "spawn-child sleep:60"})
        view = await h.wait_for(summary.workflow_id, "running")
        (running,) = [h.repo(r.repo) for r in view.runs if r.status == "running"]
        child_file = running / ".fake-agent-child.pid"
        deadline = time.monotonic() + 10
        while not child_file.exists():
            assert time.monotonic() < deadline, "the agent never spawned its child"
            await asyncio.sleep(0.05)
        await h.service.cancel(ADMIN, summary.workflow_id)
        view = await h.wait(summary.workflow_id, within=10)
    assert view.status == "cancelled"
    assert {r.status for r in view.runs} == {"cancelled"}
    assert sorted(r.attempt for r in view.runs) == [0, 0, 1]  # one ran, two never started
    await asyncio.sleep(0.2)
    assert not contract.pid_alive(int(child_file.read_text())), "the cancelled attempt's child survived"
