"""Fixtures for the operations tests: real servers, fake broken ones, and the external tools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.support import ENCRYPTION_KEY, FakeHttpServer, broken_mcp_routes
from tests.support.akosha import akosha_env, spawn_akosha
from tests.support.repos import make_repos, standard_specs
from tests.support.server import SECRET, RunningServer, base_env, start_server, wait_ready
from tests.support.session_buddy import session_buddy_env, spawn_session_buddy


@pytest.fixture(scope="session")
def ops_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ops")


@pytest.fixture(scope="session")
def ops_manifest(ops_workdir: Path) -> Path:
    return make_repos(ops_workdir, standard_specs())


@pytest.fixture(scope="session")
def live_server(ops_workdir: Path, ops_manifest: Path) -> Iterator[RunningServer]:
    """The real server, no auth (loopback development defaults), shared by the ops tests."""
    server = start_server(ops_workdir, base_env(ops_workdir, ops_manifest))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_server(ops_workdir: Path, ops_manifest: Path) -> Iterator[RunningServer]:
    """The real server with bearer auth on (HS256 secret)."""
    server = start_server(
        ops_workdir, base_env(ops_workdir, ops_manifest, {"MAHAVISHNU_AUTH_SECRET": SECRET})
    )
    yield server
    server.stop()


@pytest.fixture
def broken_server() -> Iterator[FakeHttpServer]:
    """A real HTTP server that answers /health and /ready but fails every /mcp request with 500."""
    with FakeHttpServer(broken_mcp_routes()) as server:
        yield server


@pytest.fixture(scope="session")
def session_buddy_server(ops_workdir: Path) -> Iterator[RunningServer]:
    """The real Session-Buddy in production mode (auth on with SECRET, an encryption key),
    SQLite in its own folder: what the deployment files configure, on loopback."""
    data = ops_workdir / "session-buddy"
    data.mkdir()
    env = session_buddy_env(
        data,
        SESSION_BUDDY_ENV="production",
        SESSION_BUDDY_AUTH_SECRET=SECRET,
        SESSION_ENCRYPTION_KEY=ENCRYPTION_KEY,
    )
    server = spawn_session_buddy(data, env)
    wait_ready(server, timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def akosha_server(ops_workdir: Path) -> Iterator[RunningServer]:
    """The real Akosha in production mode (auth on with SECRET, an ingest token, an encryption
    key), SQLite in its own folder: what the deployment files configure, on loopback."""
    data = ops_workdir / "akosha"
    data.mkdir()
    env = akosha_env(
        data,
        AKOSHA_ENV="production",
        AKOSHA_AUTH_SECRET=SECRET,
        AKOSHA_API_TOKEN="t" * 32,
        AKOSHA_ENCRYPTION_KEY=ENCRYPTION_KEY,
    )
    server = spawn_akosha(data, env)
    wait_ready(server, timeout=60)
    yield server
    server.stop()
