"""A second service on the platform, end to end: the throwaway Echo (tests/support/echo_service)
migrates its own tables beside Mahavishnu's, serves over HTTP and stdio through the same
`mahavishnu serve`, names its metrics, logs and traces after itself, and refuses Mahavishnu's
tokens."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.db import Database
from tests.conftest import PG_URL, drop_schema, require_service
from tests.integration.test_tracing import Collector
from tests.support.client import call_tool
from tests.support.echo_service.settings import EchoSettings
from tests.support.server import SECRET, RunningServer, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
ECHO = [sys.executable, "-m", "tests.support.echo_service"]
"""The `mahavishnu` command with Echo registered in its SERVICES table."""
MAHAVISHNU_TABLES = {"alembic_version", "workflows", "repo_runs"}
ECHO_TABLES = {"alembic_version_echo", "echo_messages"}


# --- migrations: one database, two trees ------------------------------------------------------------


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    await drop_schema(name)


async def _tables(schema: str) -> set[str]:
    connection = await asyncpg.connect(PG_URL)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        return {row["tablename"] for row in rows}
    finally:
        await connection.close()


async def test_both_trees_migrate_side_by_side_in_one_postgresql_schema(schema: str) -> None:
    echo = Database.from_settings(EchoSettings(database_url=PG_URL, database_schema=schema))
    mahavishnu = Database.from_settings(MahavishnuSettings(database_url=PG_URL, database_schema=schema))
    try:
        assert (await echo.ensure_schema(upgrade=True)).current == "echo_0001"
        mahavishnu_state = await mahavishnu.ensure_schema(upgrade=True)
        assert mahavishnu_state.is_current
        assert (await echo.schema_state()).is_current, "Mahavishnu's upgrade left Echo's revision alone"
        assert await _tables(schema) >= MAHAVISHNU_TABLES | ECHO_TABLES

        await echo.downgrade("base")
        tables = await _tables(schema)
        assert "echo_messages" not in tables
        assert tables >= MAHAVISHNU_TABLES
        assert await mahavishnu.schema_state() == mahavishnu_state
        assert (await echo.ensure_schema(upgrade=True)).is_current  # and back up again
    finally:
        await echo.dispose()
        await mahavishnu.dispose()


def _sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}


async def test_each_service_has_its_own_sqlite_file(tmp_path: Path) -> None:
    echo_settings = EchoSettings(data_dir=tmp_path)
    mahavishnu_settings = MahavishnuSettings(data_dir=tmp_path)
    for settings in (echo_settings, mahavishnu_settings):
        db = Database.from_settings(settings, create=True)
        try:
            assert (await db.ensure_schema(upgrade=True)).is_current
        finally:
            await db.dispose()
    echo_tables = _sqlite_tables(tmp_path / "echo.db")
    mahavishnu_tables = _sqlite_tables(tmp_path / "mahavishnu.db")
    assert echo_tables >= ECHO_TABLES
    assert not MAHAVISHNU_TABLES & echo_tables
    assert mahavishnu_tables >= MAHAVISHNU_TABLES
    assert not ECHO_TABLES & mahavishnu_tables


async def test_two_trees_can_even_share_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    databases = [Database(url, migrations=cls.migrations) for cls in (EchoSettings, MahavishnuSettings)]
    try:
        for db in databases:
            await db.ensure_schema(upgrade=True)
        assert all([(await db.schema_state()).is_current for db in databases])
    finally:
        for db in databases:
            await db.dispose()
    assert _sqlite_tables(tmp_path / "shared.db") >= MAHAVISHNU_TABLES | ECHO_TABLES


# --- serving -------------------------------------------------------------------------------------------


def echo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """One deployment's environment: one secret for both services, Echo's own names, shared limits."""
    shared = {"POSTGRES_URL", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "POOL_MIN_SIZE", "POOL_MAX_SIZE"}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAHAVISHNU_", "ECHO_", "RATE_LIMIT_")) and k not in shared
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "MAHAVISHNU_CONFIG": str(tmp_path / "absent.yaml"),
            "MAHAVISHNU_AUTH_SECRET": SECRET,
            "ECHO_CONFIG": str(tmp_path / "absent.yaml"),
            "ECHO_AUTH_SECRET": SECRET,
            "ECHO_DATA_DIR": str(tmp_path / "var"),
            "ECHO_SHUTDOWN_GRACE_SECONDS": "5",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_BURST": "100000",
            **extra,
        }
    )
    return env


def echo_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ECHO, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def mint(env: dict[str, str], *args: str) -> str:
    result = echo_command(env, "token", "create", "--sub", "ci", "--role", "operator", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def start_echo(tmp_path: Path, env: dict[str, str]) -> RunningServer:
    port = free_port()
    log_path = tmp_path / f"echo-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*ECHO, "serve", "echo", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(process, port, log_path, env)
    wait_ready(server)
    return server


def test_echo_serves_under_its_own_names_and_refuses_other_services_tokens(
    tmp_path: Path, collector: Collector
) -> None:
    env = echo_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url)
    for_echo, for_mahavishnu = mint(env, "--service", "echo"), mint(env)
    server = start_echo(tmp_path, env)
    try:
        answer = call_tool(server.url, "echo", {"text": "hi"}, token=for_echo)
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["structuredContent"] == {"echo": "echo: hi", "stored": 1}
        refused = call_tool(server.url, "echo", {"text": "hi"}, token=for_mahavishnu)
        assert refused.status_code == 401  # same secret, but minted for Mahavishnu
        metrics = httpx.get(f"{server.base}/metrics", timeout=5).text
    finally:
        assert server.stop() == 0

    assert 'echo_mcp_tool_calls_total{outcome="ok",tool="echo"} 1.0' in metrics
    assert 'echo_auth_failures_total{reason="bad_audience"} 1.0' in metrics
    assert "echo_messages_total 1.0" in metrics  # the service's own metric, named from its settings
    assert "echo_http_requests_total" in metrics
    assert not [line for line in metrics.splitlines() if line.startswith("mahavishnu_")]

    lines = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    assert lines
    assert all(line["service_name"] == "echo" for line in lines)
    assert any(line.get("tool") == "echo" for line in lines)

    assert ("echo", "tools/call echo") in collector.services
    assert {service for service, _ in collector.services} == {"echo"}
    assert (tmp_path / "var" / "echo.db").is_file()
    assert not (tmp_path / "var" / "mahavishnu.db").exists()


def test_token_create_names_only_registered_services(tmp_path: Path) -> None:
    result = echo_command(echo_env(tmp_path), "token", "create", "--sub", "x", "--service", "hermes")
    assert result.returncode == 2
    assert "no service named 'hermes'" in result.stderr
    assert result.stdout == ""


def test_echo_refuses_to_start_insecurely_naming_its_own_variables(tmp_path: Path) -> None:
    env = echo_env(tmp_path, ECHO_ENV="production")
    del env["ECHO_AUTH_SECRET"]  # MAHAVISHNU_AUTH_SECRET stays set: it is not Echo's
    result = echo_command(env, "serve", "echo", "--port", str(free_port()))
    assert result.returncode == 2
    assert "ECHO_AUTH_SECRET" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_echo_over_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tests.support.echo_service", "serve", "echo", "--stdio"],
        env=echo_env(tmp_path),
        cwd=str(tmp_path),
    )
    async with Client(params, mode="legacy", cache=None) as client:
        result = await client.call_tool("echo", {"text": "over stdio"})
        assert result.structured_content == {"echo": "echo: over stdio", "stored": 1}
