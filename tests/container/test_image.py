"""The image built from deploy/Dockerfile, run for real in the hardened production shape: non-root,
read-only root filesystem, no capabilities; /health, /ready, /metrics and the 8 smoke checks
(scripts/smoke_tests.sh) answer; its own HEALTHCHECK turns it healthy; SIGTERM drains a request in
flight and exits 0; without MAHAVISHNU_AUTH_SECRET it refuses to start with a one-line reason."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.container.engine import FIGURES, ROOT, Engine, run_args, wait_http
from tests.container.repos import IMAGE_UID, MOUNT, NAMES, mounted_fleet
from tests.support.server import SECRET, free_port
from tests.support.tokens import claims, hs256

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]


@dataclass
class Served:
    name: str
    base: str
    started: float


def upgrade_database(engine: Engine, image: str, volume: str) -> None:
    """The image does not migrate on start (MAHAVISHNU_DB_AUTO_UPGRADE=false): the guide's step."""
    done = engine.docker("run", "--rm", "--volume", f"{volume}:/data", image, "mahavishnu", "db", "upgrade")
    assert "head" in done.stdout, done.stdout


def start_served(engine: Engine, image: str, name: str, repos: Path | None = None) -> Served:
    volume = f"{name}-data"
    upgrade_database(engine, image, volume)
    port = free_port()
    extra = ["--env", "MAHAVISHNU_AUTH_SECRET"]
    if repos is not None:
        extra += ["--volume", f"{repos}:{MOUNT}:ro", "--env", f"MAHAVISHNU_REPOS_FILE={MOUNT}/repos.yaml"]
    started = time.monotonic()
    engine.docker(*run_args(name, port, volume, extra), image, env={"MAHAVISHNU_AUTH_SECRET": SECRET})
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ready", timeout=60)
    return Served(name, base, started)


@pytest.fixture(scope="module")
def served(engine: Engine, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One hardened container of the image, with three git repositories mounted read-only."""
    repos = mounted_fleet(tmp_path_factory.mktemp("container-repos"))
    name = f"ctest-image-{os.getpid()}"
    engine.remove(name)
    yield start_served(engine, image, name, repos)
    engine.remove(name)
    engine.docker("volume", "rm", f"{name}-data", check=False)


def test_runs_as_non_root_on_a_read_only_root_filesystem(engine: Engine, served: Served) -> None:
    assert engine.docker("exec", served.name, "id", "-u").stdout.strip() == str(IMAGE_UID)
    host_config = engine.inspect(served.name)["HostConfig"]
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["CapDrop"] == ["ALL"]
    denied = engine.docker("exec", served.name, "touch", "/app/written", check=False)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr
    # /data (the volume) is where it writes: the database lives there.
    listing = engine.docker("exec", served.name, "ls", "/data").stdout.split()
    assert "mahavishnu.db" in listing


def test_health_ready_and_metrics_answer(served: Served) -> None:
    health = httpx.get(f"{served.base}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "healthy"
    assert httpx.get(f"{served.base}/ready", timeout=5).status_code == 200
    metrics = httpx.get(f"{served.base}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert "# TYPE mahavishnu_http_requests_total counter" in metrics.text
    assert 'mahavishnu_http_requests_total{method="GET",route="/health",status="200"}' in metrics.text


def test_the_eight_smoke_checks_pass_against_the_container(served: Served) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "smoke_tests.sh"), served.base],
        env={**os.environ, "MAHAVISHNU_TOKEN": hs256(claims()), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8/8 checks passed" in done.stdout
    # list_repos read the manifest mounted into the container.
    assert f"total {len(NAMES)} repos" in done.stdout


def test_the_image_healthcheck_turns_the_container_healthy(engine: Engine, served: Served) -> None:
    """The image's own HEALTHCHECK (interval 30 s): its first probe must pass."""
    engine.wait_health(served.name, "healthy", timeout=120)
    FIGURES["time to healthy (image HEALTHCHECK, interval 30 s)"] = (
        f"{time.monotonic() - served.started:.1f} s after docker run"
    )
    log = engine.inspect(served.name)["State"]["Health"]["Log"]
    assert log[-1]["ExitCode"] == 0


def test_sigterm_finishes_the_request_in_flight_then_exits_zero(
    engine: Engine, image: str, unique: str
) -> None:
    name = f"ctest-drain-{unique}"
    try:
        server = start_served(engine, image, name)
        port = int(server.base.rsplit(":", 1)[1])
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "tools/call",
                "params": {"name": "list_repos", "arguments": {}},
            }
        ).encode()
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\n"
            f"Authorization: Bearer {hs256(claims())}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head + body[:10])  # in flight: the body is half sent
            time.sleep(0.5)
            engine.docker("kill", "--signal", "TERM", name)
            time.sleep(1)
            assert engine.inspect(name)["State"]["Running"], "the container exited with a request in flight"
            sock.sendall(body[10:])
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response[:300]
        assert engine.wait_exit(name, timeout=30) == 0
        logs = engine.docker("logs", name)
        assert "shutdown_requested" in logs.stdout + logs.stderr
    finally:
        engine.remove(name)
        engine.docker("volume", "rm", f"{name}-data", check=False)


def test_without_the_auth_secret_it_exits_with_a_one_line_reason(engine: Engine, image: str) -> None:
    done = engine.docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", image, check=False, timeout=60)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "MAHAVISHNU_AUTH_SECRET" in lines[0]
