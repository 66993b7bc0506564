"""Shared fixtures: real servers on loopback, real repositories on disk, real Redis/PostgreSQL."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from mahavishnu.platform.db import Database

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a clear reason on a laptop without the service; fail in CI, where it must be there."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: the service must be running)")
    pytest.skip(f"{message}; start it to run this test")


def require_capability(what: str) -> None:
    """Skip on a laptop that lacks a privilege a test needs (creating a device node); fail in CI,
    which runs as root here and must exercise the case."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: this case must run)")
    pytest.skip(what)


@pytest.fixture(autouse=True)
def private_home_folders(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings and data default to the XDG folders (~/.config/mahavishnu, ~/.local/share/mahavishnu):
    every test gets folders of its own, so none reads the user's settings or shares a database.
    Subprocesses inherit them (environments are built from os.environ)."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    return home


@pytest.fixture
def redis_url() -> Iterator[str]:
    require_service("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/0"


async def drop_schema(schema: str) -> None:
    connection = await asyncpg.connect(PG_URL)
    await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'workflows.db'}")
        schema = None
    else:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        schema = f"t_{uuid.uuid4().hex[:12]}"
        db = Database(PG_URL, schema=schema)
    await db.ensure_schema(upgrade=True)
    yield db
    await db.dispose()
    if schema is not None:
        await drop_schema(schema)
