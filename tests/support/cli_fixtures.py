"""The `mahavishnu` command as a user runs it: a subprocess, over real git repositories,
with its settings, manifest and database in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from tests.conftest import PG_URL, drop_schema

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}
COMMAND_TIMEOUT = 90

# Workflows the tests run: each decides from files in the repository, so a test can make
# one repository fail and later succeed without touching the settings.
WORKFLOWS: dict[str, Any] = {
    "check": {
        "description": "Succeeds when the repository holds a file named `ok`.",
        "argv": [
            "python3",
            "-c",
            "import os, sys; print('checked', os.path.basename(os.getcwd())); "
            "sys.exit(0 if os.path.exists('ok') else 3)",
        ],
        "retry": {"max_attempts": 1},
    },
    "fail": {"argv": ["python3", "-c", "import sys; sys.exit(3)"], "retry": {"max_attempts": 1}},
    "slow": {
        "description": "Records its pid, then sleeps until stopped.",
        "argv": [
            "python3",
            "-c",
            "import os, time; open('.slow.pid', 'w').write(str(os.getpid())); time.sleep(120)",
        ],
    },
    "echo": {
        "argv": ["python3", "-c", "import sys; print(sys.argv[1:])", "{word}", "{count}", "{loud}"],
        "params": {
            "word": {"type": "string", "pattern": "[a-z]+"},
            "count": {"type": "integer"},
            "loud": {"type": "boolean", "required": False, "default": False},
        },
    },
}


def make_git_repo(path: Path) -> Path:
    """A real repository with one commit on `main`."""
    env = {**os.environ, **GIT_ENV}
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    (path / "README.md").write_text(f"# {path.name}\n")
    subprocess.run(["git", "-C", str(path), "add", "README.md"], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", "initial"], check=True, env=env)
    return path


@dataclass
class DatabaseTarget:
    """Where the CLI keeps its workflows: SQLite under the data folder, or a PostgreSQL schema."""

    dialect: str
    env: dict[str, str]
    sqlite_file: Path | None = None
    schema: str | None = None

    def execute(self, statement: str) -> None:
        """Run SQL behind the CLI's back (to fake, say, a schema from a newer release)."""
        if self.sqlite_file is not None:
            with sqlite3.connect(self.sqlite_file) as conn:
                conn.execute(statement)
            return
        asyncio.run(_postgres(f'SET search_path TO "{self.schema}"; {statement}'))

    def drop(self) -> None:
        if self.schema is not None:
            asyncio.run(drop_schema(self.schema))


async def _postgres(statement: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@dataclass
class Cli:
    """Runs `python -m mahavishnu ...` with an environment of its own (nothing inherited that
    would change the settings), in the temporary folder."""

    root: Path
    env: dict[str, str]
    repos: dict[str, Path] = field(default_factory=dict)

    def __call__(
        self, *args: str, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mahavishnu", *args],
            cwd=self.root,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def ok(self, *args: str, extra_env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = self(*args, extra_env=extra_env)
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "mahavishnu", *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )


def build_cli(root: Path, database: DatabaseTarget, repos: Mapping[str, list[str]]) -> Cli:
    """Git repositories named by `repos` (name → tags), their manifest, and the test workflows."""
    paths = {name: make_git_repo(root / "repos" / name) for name in repos}
    manifest = root / "repos.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "repos": [
                    {"name": name, "path": str(paths[name]), "tags": tags, "role": "tool"}
                    for name, tags in repos.items()
                ]
            }
        )
    )
    settings = root / "settings.yaml"
    settings.write_text(yaml.safe_dump({"workflows": WORKFLOWS}))
    inherited = ("MAHAVISHNU_", "RATE_LIMIT_", "POSTGRES_URL", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update(
        {
            "MAHAVISHNU_CONFIG": str(settings),
            "MAHAVISHNU_REPOS_FILE": str(manifest),
            "MAHAVISHNU_ALLOWED_ROOTS": json.dumps([str(root)]),
            "MAHAVISHNU_DATA_DIR": str(root / "var"),
            "MAHAVISHNU_LEASE_SECONDS": "3",  # engines notice a cancel from elsewhere within a second
            "MAHAVISHNU_KILL_GRACE_SECONDS": "2",
            "COLUMNS": "250",  # rich lays tables out for a wide terminal: no wrapped cells
            **database.env,
        }
    )
    return Cli(root, env, paths)


def table_rows(output: str) -> dict[str, list[str]]:
    """The body of a rich table (cells split on │), keyed by the first cell."""
    rows = {}
    for line in output.splitlines():
        if "│" in line:
            cells = [cell.strip() for cell in line.split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def interrupt(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Ctrl-C, as a terminal sends it; returns the exit code and output."""
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    return process.returncode, stdout, stderr
