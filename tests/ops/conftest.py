"""Fixtures for the operations tests: real servers, fake broken ones, and the external tools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.support import FakeHttpServer, broken_mcp_routes
from tests.support.repos import make_repos, standard_specs
from tests.support.server import SECRET, RunningServer, base_env, start_server


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
