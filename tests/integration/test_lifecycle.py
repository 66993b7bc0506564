"""Start-up refusals, graceful stop on SIGTERM, and the stdio transport."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.support.repos import make_repos, standard_specs
from tests.support.server import SECRET, base_env, free_port, start_server


def run_serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mahavishnu", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_production_refuses_without_secret(tmp_path: Path) -> None:
    result = run_serve(base_env(tmp_path, None, {"MAHAVISHNU_ENV": "production"}), "--port", str(free_port()))
    assert result.returncode == 2
    assert "MAHAVISHNU_AUTH_SECRET" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_production_refuses_a_weak_secret_without_echoing_it(tmp_path: Path) -> None:
    weak = "short-secret-123"
    env = base_env(tmp_path, None, {"MAHAVISHNU_ENV": "production", "MAHAVISHNU_AUTH_SECRET": weak})
    result = run_serve(env, "--port", str(free_port()))
    assert result.returncode == 2
    assert "32 bytes" in result.stderr
    assert weak not in result.stderr + result.stdout


@pytest.mark.parametrize("environment", ["development", "test", "staging"])
def test_refuses_public_bind_without_auth_in_every_environment(tmp_path: Path, environment: str) -> None:
    env = base_env(tmp_path, None, {"MAHAVISHNU_ENV": environment})
    started = time.monotonic()
    result = run_serve(env, "--host", "0.0.0.0", "--port", str(free_port()))
    assert time.monotonic() - started < 20
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "refusing to start: listening on 0.0.0.0 without authentication" in result.stderr
    assert "MAHAVISHNU_ALLOW_UNAUTHENTICATED_NETWORK=true" in result.stderr


def test_public_bind_without_auth_starts_only_when_allowed_and_says_so(tmp_path: Path) -> None:
    manifest = make_repos(tmp_path, standard_specs())
    env = base_env(
        tmp_path,
        manifest,
        {"MAHAVISHNU_HOST": "0.0.0.0", "MAHAVISHNU_ALLOW_UNAUTHENTICATED_NETWORK": "true"},
    )
    server = start_server(tmp_path, env)
    try:
        warnings = [
            json.loads(line)
            for line in server.log_lines()
            if line.startswith("{") and '"insecure_configuration"' in line
        ]
        assert len(warnings) == 1
        assert warnings[0]["level"] == "warning"
        assert "WITHOUT authentication" in warnings[0]["problem"]
        assert "0.0.0.0" in warnings[0]["problem"]
    finally:
        assert server.stop() == 0


async def test_stdio_ignores_the_listening_address(tmp_path: Path) -> None:
    # stdio opens no socket: a host setting meant for HTTP must not stop a desktop client.
    manifest = make_repos(tmp_path, standard_specs())
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mahavishnu", "serve", "--stdio"],
        env=base_env(tmp_path, manifest, {"MAHAVISHNU_HOST": "0.0.0.0"}),
        cwd=str(tmp_path),
    )
    async with Client(params, mode="legacy", cache=None) as client:
        result = await client.call_tool("list_roles", {})
        assert result.is_error is False


def test_sigterm_finishes_in_flight_request_then_exits_zero(tmp_path: Path) -> None:
    manifest = make_repos(tmp_path, standard_specs())
    server = start_server(tmp_path, base_env(tmp_path, manifest, {"MAHAVISHNU_AUTH_SECRET": SECRET}))
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "list_repos", "arguments": {}}}
    ).encode()
    from tests.support.tokens import claims, hs256

    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {hs256(claims())}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + body[:10])  # the request is now in flight, its body half sent
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.process.poll() is None, "server exited with a request in flight"
        sock.sendall(body[10:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200")
    assert b'"total":5' in response
    assert server.process.wait(15) == 0
    assert "shutdown_requested" in server.log_path.read_text()


async def test_stdio_transport_with_the_official_client(tmp_path: Path) -> None:
    manifest = make_repos(tmp_path, standard_specs())
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mahavishnu", "serve", "--stdio"],
        env=base_env(tmp_path, manifest),
        cwd=str(tmp_path),
    )
    async with Client(params, mode="legacy", cache=None) as client:
        result = await client.call_tool("list_repos", {"tag": "web"})
        assert result.structured_content is not None
        assert [r["name"] for r in result.structured_content["repos"]] == ["fastblocks", "webui"]
        health = await client.call_tool("get_health", {})
        assert health.structured_content is not None
        assert health.structured_content["status"] == "healthy"


@pytest.mark.parametrize("flag", ["--json", None])
def test_config_show_masks_secrets(tmp_path: Path, flag: str | None) -> None:
    env = base_env(
        tmp_path, None, {"MAHAVISHNU_AUTH_SECRET": SECRET, "REDIS_URL": "redis://user:hunter2@h:6379/0"}
    )
    args = [sys.executable, "-m", "mahavishnu", "config", "show", *([flag] if flag else [])]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30, check=True)
    assert SECRET not in result.stdout
    assert "hunter2" not in result.stdout
    assert "**********" in result.stdout
    assert "redis://user:****@h:6379/0" in result.stdout
    if flag == "--json":
        data = json.loads(result.stdout)
        assert data["rate_limit_per_minute"] == 100000
        assert data["port"] == 8680


def test_token_create_issues_a_verifiable_token(tmp_path: Path) -> None:
    import jwt

    env = base_env(tmp_path, None, {"MAHAVISHNU_AUTH_SECRET": SECRET})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mahavishnu",
            "token",
            "create",
            "--sub",
            "ci-bot",
            "--role",
            "operator",
            "--tags",
            "python,web",
            "--ttl",
            "2h",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    claims = jwt.decode(
        result.stdout.strip(), SECRET, algorithms=["HS256"], issuer="mahavishnu", audience="mahavishnu"
    )
    assert claims["sub"] == "ci-bot"
    assert claims["role"] == "operator"
    assert claims["tags"] == ["python", "web"]
    assert claims["exp"] - claims["iat"] == 7200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "root"], "role"),
        (["--ttl", "soon"], "ttl"),
    ],
)
def test_token_create_rejects_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    env = base_env(tmp_path, None, {"MAHAVISHNU_AUTH_SECRET": SECRET})
    result = subprocess.run(
        [sys.executable, "-m", "mahavishnu", "token", "create", "--sub", "x", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_token_create_without_secret_fails_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mahavishnu", "token", "create", "--sub", "x"],
        env=base_env(tmp_path, None),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "MAHAVISHNU_AUTH_SECRET" in result.stderr


def test_a_newer_schema_is_refused_with_one_line(tmp_path: Path) -> None:
    import sqlite3

    env = base_env(tmp_path, None, {"MAHAVISHNU_DATA_DIR": str(tmp_path / "var")})
    subprocess.run(
        [sys.executable, "-m", "mahavishnu", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    with sqlite3.connect(tmp_path / "var" / "mahavishnu.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    result = run_serve(env, "--port", str(free_port()))
    assert result.returncode == 2
    assert "newer" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_older_schema_is_refused_when_auto_upgrade_is_off(tmp_path: Path) -> None:
    env = base_env(
        tmp_path, None, {"MAHAVISHNU_DATA_DIR": str(tmp_path / "var"), "MAHAVISHNU_DB_AUTO_UPGRADE": "false"}
    )
    result = run_serve(env, "--port", str(free_port()))
    assert result.returncode == 2
    assert "mahavishnu db upgrade" in result.stderr
