"""docs/ARCHITECTURE.md's "Add a service", followed literally.

The recipe's files are written, as they stand in the document, into a `mahavishnu/notes/`
folder outside the repository; its `cli.py` lines run as part of `mahavishnu.cli` in a launcher
that puts that folder on the package's search path (the recipe's step 6, without editing the
real cli.py). Then the `mahavishnu` command serves Notes over real HTTP, and the official MCP
client uses its tools: the service reads its own prefix and only that, migrates its own table
in its own SQLite file, names its metrics and logs after itself, and refuses Mahavishnu's tokens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.client import call_tool, mcp_client
from tests.support.recipes import (
    ROOT,
    edit,
    mypy_problems,
    recipe,
    recipe_section,
    ruff_problems,
    write_files,
)
from tests.support.server import SECRET, RunningServer, free_port, wait_ready

BLOCKS = recipe("add-a-service")
LAUNCHER = '''"""`mahavishnu` with the recipe's service: its folder on the package path, its cli.py lines run
as part of mahavishnu.cli. Usage: launcher.py PACKAGE_DIR CLI_LINES ARGS..."""
import sys
import tempfile
from pathlib import Path

import mahavishnu

mahavishnu.__path__.append(sys.argv.pop(1))
import mahavishnu.cli as cli
from tests.support.recipes import Block, compile_edit

lines = Path(sys.argv.pop(1)).read_text()
block = Block("add-a-service", "edit", "mahavishnu/cli.py", "python", lines)
exec(compile_edit(block, cli.__file__), vars(cli))
cli.app()
'''


def test_every_code_block_of_the_recipe_is_marked() -> None:
    """An unmarked block would be a step the test skips."""
    section = recipe_section("Recipe: add a service")
    assert section.count("\n```") == 2 * len(BLOCKS)
    assert [(b.kind, b.path) for b in BLOCKS] == [
        ("file", "mahavishnu/notes/settings.py"),
        ("file", "mahavishnu/notes/__init__.py"),
        ("file", "mahavishnu/notes/models.py"),
        ("file", "mahavishnu/notes/migrations/env.py"),
        ("file", "mahavishnu/notes/migrations/versions/notes_0001_notes.py"),
        ("file", "mahavishnu/notes/tools.py"),
        ("file", "mahavishnu/notes/service.py"),
        ("edit", "mahavishnu/cli.py"),
        ("edit", "pyproject.toml"),
    ]


def test_the_recipe_code_passes_the_project_lint(tmp_path: Path) -> None:
    assert ruff_problems(write_files(BLOCKS, tmp_path)) == ""


def test_the_recipe_code_type_checks(tmp_path: Path) -> None:
    """mypy --strict on the recipe's files and on cli.py with the recipe's lines, in an overlay of
    the package (its real modules linked, the new service's folder and the edited cli.py beside
    them), so `mahavishnu.notes` and `mahavishnu.platform` are one package as they would be."""
    package = tmp_path / "mahavishnu"
    package.mkdir()
    for entry in (ROOT / "mahavishnu").iterdir():
        if entry.name not in ("cli.py", "__pycache__"):
            (package / entry.name).symlink_to(entry)
    written = write_files(BLOCKS, tmp_path)
    cli = (ROOT / "mahavishnu" / "cli.py").read_text()
    (package / "cli.py").write_text(f"{cli}\n{edit(BLOCKS, 'mahavishnu/cli.py').code}")
    files = [*(str(p.relative_to(tmp_path)) for p in written), "mahavishnu/cli.py"]
    assert mypy_problems(files, cwd=tmp_path, search=tmp_path) == ""


def test_the_layers_edit_is_the_contract_plus_the_new_service() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    edited = tomllib.loads(edit(BLOCKS, "pyproject.toml").code)["layers"]
    assert [layer.replace(" | mahavishnu.notes", "") for layer in edited] == layers
    assert any(
        layer.startswith("mahavishnu.ops |") and layer.endswith(" | mahavishnu.notes") for layer in edited
    )


# --- serving ------------------------------------------------------------------------------------


@dataclass
class Notes:
    server: RunningServer
    tokens: dict[str, str]
    data_dir: Path


def _command(tmp_path: Path) -> list[str]:
    write_files(BLOCKS, tmp_path / "pkg")
    (tmp_path / "cli_lines.py").write_text(edit(BLOCKS, "mahavishnu/cli.py").code)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    launcher, package = tmp_path / "launcher.py", tmp_path / "pkg" / "mahavishnu"
    return [sys.executable, str(launcher), str(package), str(tmp_path / "cli_lines.py")]


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    """One deployment: Notes' own names, plus a Mahavishnu port and limit it must not read."""
    shared = {"POSTGRES_URL", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "POOL_MIN_SIZE", "POOL_MAX_SIZE"}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAHAVISHNU_", "NOTES_", "RATE_LIMIT_")) and k not in shared
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "MAHAVISHNU_CONFIG": str(tmp_path / "absent.yaml"),
            "MAHAVISHNU_AUTH_SECRET": SECRET,
            "MAHAVISHNU_PORT": str(free_port()),
            "NOTES_CONFIG": str(tmp_path / "absent.yaml"),
            "NOTES_AUTH_SECRET": SECRET,
            "NOTES_DATA_DIR": str(tmp_path / "var"),
            "NOTES_PORT": str(port),
            "NOTES_MAX_NOTE_CHARS": "40",
            "NOTES_SHUTDOWN_GRACE_SECONDS": "5",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_BURST": "100000",
        }
    )
    return env


def _mint(command: list[str], env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [*command, "token", "create", "--sub", "ci", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Notes]:
    """`mahavishnu serve notes`, its port from NOTES_PORT (no --port), and tokens from the CLI."""
    command, port = _command(tmp_path), free_port()
    env = _env(tmp_path, port)
    tokens = {
        "operator": _mint(command, env, "--service", "notes", "--role", "operator"),
        "viewer": _mint(command, env, "--service", "notes", "--role", "viewer"),
        "mahavishnu": _mint(command, env, "--role", "operator"),
    }
    log_path = tmp_path / "notes.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "serve", "notes"], env=env, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = RunningServer(process, port, log_path, env)
    try:
        wait_ready(server)
        yield Notes(server, tokens, tmp_path / "var")
    finally:
        server.stop()


async def test_the_recipe_service_serves_migrates_and_names_itself(notes: Notes) -> None:
    url = notes.server.url
    async with mcp_client(url, token=notes.tokens["operator"]) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"add_note", "list_notes", "get_health"} <= names
        first = (await client.call_tool("add_note", {"text": "buy milk"})).structured_content
        second = (await client.call_tool("add_note", {"text": "call home"})).structured_content
        assert first is not None
        assert second is not None
        assert (first["notes"], second["notes"]) == (1, 2)
        listed = (await client.call_tool("list_notes", {})).structured_content
        assert listed == {
            "notes": [{"id": second["id"], "text": "call home"}, {"id": first["id"], "text": "buy milk"}]
        }
        too_long = await client.call_tool("add_note", {"text": "x" * 41})  # NOTES_MAX_NOTE_CHARS=40
        assert too_long.is_error
        assert "1 to 40 characters" in str(too_long.content)

    viewer = call_tool(url, "add_note", {"text": "no"}, token=notes.tokens["viewer"])
    assert viewer.status_code == 403  # the gate applies the ToolSpec's min_role
    foreign = call_tool(url, "list_notes", {}, token=notes.tokens["mahavishnu"])
    assert foreign.status_code == 401  # same secret, but minted for Mahavishnu

    async with httpx.AsyncClient(timeout=5) as http:
        metrics = (await http.get(f"{notes.server.base}/metrics")).text
        health = (await http.get(f"{notes.server.base}/health")).json()
    assert 'notes_mcp_tool_calls_total{outcome="ok",tool="add_note"} 2.0' in metrics
    assert 'notes_mcp_tool_calls_total{outcome="invalid",tool="add_note"} 1.0' in metrics
    assert not [line for line in metrics.splitlines() if line.startswith("mahavishnu_")]

    assert health["status"] == "healthy", health
    with sqlite3.connect(notes.data_dir / "notes.db") as connection:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        revision = connection.execute("SELECT version_num FROM alembic_version_notes").fetchall()
    assert {"notes_notes", "alembic_version_notes"} <= tables
    assert "alembic_version" not in tables  # Mahavishnu's tree never ran here
    assert revision == [("notes_0001",)]
    assert not (notes.data_dir / "mahavishnu.db").exists()

    assert notes.server.stop() == 0
    lines = [json.loads(line) for line in notes.server.log_lines() if line.startswith("{")]
    assert any(line.get("tool") == "add_note" for line in lines)
    assert {line["service_name"] for line in lines} == {"notes"}
