"""The engine seam holds: the service and the engine-neutral modules never reach into the local
engine, and the local engine offers everything `WorkflowEngine` asks for."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

from mahavishnu.orchestrator.workflows import ports
from mahavishnu.orchestrator.workflows.local import LocalEngine
from mahavishnu.orchestrator.workflows.ports import WorkflowEngine

WORKFLOWS = Path(ports.__file__).resolve().parent
LOCAL = "mahavishnu.orchestrator.workflows.local"
NEUTRAL = (
    "service.py",
    "tools.py",
    "records.py",
    "outcomes.py",
    "decisions.py",
    "ports.py",
    "reads.py",
    "views.py",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_engine_neutral_modules_do_not_import_the_local_engine() -> None:
    for name in NEUTRAL:
        reached = {m for m in _imports(WORKFLOWS / name) if m.startswith(LOCAL)}
        assert reached == set(), f"{name} imports {reached}"


def test_the_reaper_script_imports_only_the_standard_library() -> None:
    """`groups.py` also runs alone (`python -I -S groups.py reap LEDGER`), without the package."""
    imported = {name.partition(".")[0] for name in _imports(WORKFLOWS / "local" / "groups.py")}
    assert imported <= sys.stdlib_module_names | {"__future__"}


def test_the_local_engine_offers_the_whole_seam() -> None:
    wanted = {n for n, v in vars(WorkflowEngine).items() if inspect.isfunction(v) and not n.startswith("_")}
    assert wanted == {"submit", "cancel", "report_closed", "until_closed", "heal", "running"}
    for name in wanted:
        ours, theirs = (
            inspect.signature(getattr(LocalEngine, name)),
            inspect.signature(getattr(WorkflowEngine, name)),
        )
        assert list(ours.parameters) == list(theirs.parameters), name
