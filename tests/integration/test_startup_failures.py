"""A service that cannot start says why in one line on stderr and exits non-zero at once.

Every case runs the real command (`python -m mahavishnu serve`, or a test service through the
same CLI) as a subprocess against a real obstacle: a port another socket holds, a database port
nobody listens on, a schema start-up may not touch, a start-up step that fails inside the
lifespan. How fast it ends is measured apart (a timed test would fail on a busy machine); here a
hang is what fails: the command gets 60 s.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.broken_service import PROBLEM
from tests.support.server import base_env, free_port


def serve(
    env: dict[str, str], cwd: Path, *args: str, module: str = "mahavishnu"
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            [sys.executable, "-m", module, "serve", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # the hang this file is about (how fast: bench, not here)
        pytest.fail(f"serve {' '.join(args)} still running after 60 s: {exc.stdout!r}")
    return result


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def events(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [json.loads(line).get("event", "") for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another socket listens on for the whole test."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_busy_port_is_one_line_naming_it_and_how_to_choose_another(tmp_path: Path, busy_port: int) -> None:
    result = serve(base_env(tmp_path, None), tmp_path, "--port", str(busy_port))
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("cannot start:")
    assert f"127.0.0.1:{busy_port} is already in use" in line
    assert "--port" in line
    assert "MAHAVISHNU_PORT" in line
    assert "listening" not in events(result)
    assert "service_started" not in events(result)  # nothing started before the port was known


def test_another_services_busy_port_names_its_own_variable(tmp_path: Path, busy_port: int) -> None:
    env = base_env(tmp_path, None, {"ECHO_DATA_DIR": str(tmp_path / "var")})
    result = serve(env, Path.cwd(), "echo", "--port", str(busy_port), module="tests.support.echo_service")
    assert result.returncode == 1
    line = one_line(result)
    assert f"127.0.0.1:{busy_port} is already in use" in line
    assert "ECHO_PORT" in line
    assert "MAHAVISHNU_PORT" not in line


def test_an_unreachable_database_is_one_line_with_the_password_masked(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens here
    env = base_env(tmp_path, None, {"POSTGRES_URL": f"postgresql://postgres:hunter2@127.0.0.1:{closed}/test"})
    result = serve(env, tmp_path, "--port", str(free_port()))
    assert result.returncode == 1
    line = one_line(result)
    assert f"the database at postgresql://postgres:****@127.0.0.1:{closed}/test is unreachable" in line
    assert "POSTGRES_URL" in line
    assert "hunter2" not in result.stderr + result.stdout
    assert "listening" not in events(result)


def test_a_schema_start_up_may_not_upgrade_is_one_line(tmp_path: Path) -> None:
    env = base_env(
        tmp_path, None, {"MAHAVISHNU_DATA_DIR": str(tmp_path / "var"), "MAHAVISHNU_DB_AUTO_UPGRADE": "false"}
    )
    result = serve(env, tmp_path, "--port", str(free_port()))
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("refusing to start:")
    assert "mahavishnu db upgrade" in line


def test_a_start_up_step_failing_in_the_lifespan_ends_the_process(tmp_path: Path) -> None:
    # The step fails after the server began (uvicorn's lifespan), and leaves a task behind that
    # ignores cancellation: the process still ends, with the step's reason.
    env = base_env(tmp_path, None)
    result = serve(
        env, Path.cwd(), "broken", "--port", str(free_port()), module="tests.support.broken_service"
    )
    assert result.returncode == 1
    assert one_line(result) == f"cannot start: {PROBLEM}"
    assert "service_start_failed" in events(result)
    assert "listening" not in events(result)


def test_the_insecure_bind_refusal_says_refusing_once(tmp_path: Path) -> None:
    result = serve(base_env(tmp_path, None), tmp_path, "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    line = one_line(result)
    assert line.lower().count("refusing") == 1
    assert line.startswith("refusing to start: listening on 0.0.0.0 without authentication")


def test_listening_is_logged_once_the_socket_accepts_and_names_the_bound_port(tmp_path: Path) -> None:
    # Port 0: the system picks one. The `listening` line names the port really bound, and a
    # request sent the moment the line appears is answered.
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "mahavishnu", "serve", "--port", "0"],
            env=base_env(tmp_path, None),
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        url = _wait_for_listening(log_path, process)
        assert not url.startswith("http://127.0.0.1:0/")
        assert httpx.get(url.removesuffix("/mcp") + "/health", timeout=5).status_code == 200
    finally:
        process.terminate()
        assert process.wait(20) == 0


def _wait_for_listening(log_path: Path, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "listening":
                return str(json.loads(line)["url"])
        assert process.poll() is None, log_path.read_text()
        time.sleep(0.05)
    pytest.fail(f"no `listening` line in 30 s:\n{log_path.read_text()}")
