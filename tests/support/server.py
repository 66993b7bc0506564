"""Start the real server (`python -m mahavishnu serve`) on a free loopback port, and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def metric(self, sample: str) -> float | None:
        """The value of one sample line of its /metrics (None when absent: a labelled counter
        not yet touched, or a metric not exported)."""
        for line in httpx.get(f"{self.base}/metrics", timeout=10).text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return None

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


def base_env(
    workdir: Path, repos_file: Path | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "RATE_LIMIT_"))}
    env.pop("REDIS_URL", None)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.update(
        {
            "MAHAVISHNU_CONFIG": str(workdir / "absent.yaml"),
            "MAHAVISHNU_ALLOWED_ROOTS": f'["{workdir}"]',
            "MAHAVISHNU_MANIFEST_POLL_SECONDS": "0.2",
            "MAHAVISHNU_SHUTDOWN_GRACE_SECONDS": "5",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_PER_HOUR": "1000000",
            "RATE_LIMIT_BURST": "100000",
        }
    )
    if repos_file is not None:
        env["MAHAVISHNU_REPOS_FILE"] = str(repos_file)
    env.update(extra or {})
    return env


def start_server(
    workdir: Path, env: Mapping[str, str], *, port: int | None = None, expect_ready: bool = True
) -> RunningServer:
    port = port or free_port()
    log_path = workdir / f"server-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mahavishnu", "serve", "--port", str(port)],
        env=dict(env),
        cwd=workdir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = RunningServer(process, port, log_path, dict(env))
    if expect_ready:
        wait_ready(server)
    return server


def wait_ready(server: RunningServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}:\n{server.log_path.read_text()}"
            )
        try:
            if httpx.get(f"{server.base}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready in {timeout} s:\n{server.log_path.read_text()}")
