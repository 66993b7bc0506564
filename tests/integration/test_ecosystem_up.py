"""`mahavishnu up` starts every service for real, each on its port, Session-Buddy pushing to the
Akosha beside it; Ctrl-C (SIGINT) stops them all and exits 0; a service that cannot start stops
the others and the command fails, naming it."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.client import mcp_client
from tests.support.server import base_env, free_port


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _env(tmp_path: Path, mahavishnu: int, buddy: int, akosha: int) -> dict[str, str]:
    env = base_env(
        tmp_path, None, {"MAHAVISHNU_PORT": str(mahavishnu), "MAHAVISHNU_DATA_DIR": str(tmp_path / "m")}
    )
    for prefix, port, folder in (("SESSION_BUDDY", buddy, "sb"), ("AKOSHA", akosha, "ak")):
        env.update(
            {
                f"{prefix}_CONFIG": str(tmp_path / "absent.yaml"),
                f"{prefix}_PORT": str(port),
                f"{prefix}_DATA_DIR": str(tmp_path / folder),
            }
        )
    return env


def _up(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mahavishnu", "up"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_up_serves_every_service_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    ports = {"mahavishnu": free_port(), "session-buddy": free_port(), "akosha": free_port()}
    process = _up(tmp_path, _env(tmp_path, *ports.values()))
    try:
        deadline = time.monotonic() + 180  # three servers starting on a busy 2-core machine
        while not all(_ready(p) for p in ports.values()):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the ecosystem did not become ready"
            time.sleep(0.2)
        for name, port in ports.items():  # healthy once warm (Session-Buddy loads its model after /ready)
            while (health := httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json())[
                "status"
            ] != "healthy":
                assert time.monotonic() < deadline, health
                time.sleep(0.2)
            assert health["service"] == name
        asyncio.run(_a_memory_reaches_akosha(ports["session-buddy"], ports["akosha"]))
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert f"mahavishnu on http://127.0.0.1:{ports['mahavishnu']}/mcp" in stderr
    assert f"session-buddy on http://127.0.0.1:{ports['session-buddy']}/mcp" in stderr
    assert f"akosha on http://127.0.0.1:{ports['akosha']}/mcp" in stderr
    assert not any(_ready(p) for p in ports.values())


async def _a_memory_reaches_akosha(buddy: int, akosha: int) -> None:
    """`up` wires Session-Buddy to push to the Akosha it started (development: no tokens)."""
    async with mcp_client(f"http://127.0.0.1:{buddy}/mcp") as client:
        stored = await client.call_tool("store_memory", {"content": "up wires the ecosystem together"})
        assert stored.is_error is False, stored.content
    async with asyncio.timeout(60), mcp_client(f"http://127.0.0.1:{akosha}/mcp") as client:
        while True:
            listed = (await client.call_tool("list_records", {})).structured_content or {}
            if listed.get("records"):
                return
            await asyncio.sleep(0.3)


def test_a_service_that_cannot_start_stops_the_others(tmp_path: Path) -> None:
    mahavishnu = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        process = _up(tmp_path, _env(tmp_path, mahavishnu, held.getsockname()[1], free_port()))
        _, stderr = process.communicate(timeout=90)
    assert process.returncode == 1
    assert "session-buddy exited with code 1; stopping the others" in stderr
    assert not _ready(mahavishnu)
