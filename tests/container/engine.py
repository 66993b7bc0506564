"""A real container engine for the tests: `scripts/local_engine.sh up`, the docker client bound to
it, and the waits every container test needs (an HTTP answer, a health status, an exit)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = ROOT / "scripts" / "local_engine.sh"
STARTED_BY_TESTS = ".started-by-tests"
FIGURES: dict[str, str] = {}
"""Measurements the tests take (image size, time to healthy, a rollback's duration), printed at
the end of the run: reported, never asserted (timing goals belong in bench/)."""


class EngineUnavailable(RuntimeError):
    """No engine could be reached or started (no root, no Docker): the reason, in one line."""


@dataclass
class Engine:
    """The docker client pointed at one engine (DOCKER_HOST), with the legacy builder: the engine
    made here (dockerd 20.10) has no buildx, and the CLI refuses BuildKit without it."""

    docker_host: str
    users: TextIO | None
    """Held (shared lock) while this run uses the private engine; None for an engine of the user."""

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, "DOCKER_HOST": self.docker_host, "DOCKER_BUILDKIT": "0"}
        env.update(extra or {})
        return env

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["docker", *args], env=self.env(env), capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.docker("inspect", name).stdout)
        return data[0]

    def health_status(self, container: str) -> str:
        state = self.inspect(container)["State"]
        return str(state.get("Health", {}).get("Status", "none"))

    def wait_health(self, container: str, wanted: str, timeout: float) -> float:
        """Seconds until the container's HEALTHCHECK status is `wanted`."""
        start = time.monotonic()
        while (status := self.health_status(container)) != wanted:
            if time.monotonic() - start > timeout:
                logs = self.docker("logs", "--tail", "30", container, check=False)
                raise AssertionError(
                    f"{container} is {status}, not {wanted}, after {timeout} s:\n{logs.stderr}"
                )
            time.sleep(0.5)
        return time.monotonic() - start

    def wait_exit(self, container: str, timeout: float) -> int:
        done = self.docker("wait", container, timeout=timeout)
        return int(done.stdout.strip())

    def remove(self, *names: str) -> None:
        self.docker("rm", "--force", "--volumes", *names, check=False)

    def image_size(self, image: str) -> int:
        return int(self.inspect(image)["Size"])


def _engine_up() -> str:
    """`scripts/local_engine.sh up`; its DOCKER_HOST."""
    try:
        done = subprocess.run(
            [str(ENGINE_SCRIPT), "up"], capture_output=True, text=True, timeout=900, check=False
        )
    except FileNotFoundError as error:
        raise EngineUnavailable(f"cannot run {ENGINE_SCRIPT}: {error}") from error
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EngineUnavailable(f"scripts/local_engine.sh up failed: {last}")
    return done.stdout.strip().splitlines()[-1].removeprefix("export DOCKER_HOST=")


def private_folder(docker_host: str) -> Path | None:
    """The ENGINE_DIR of an engine local_engine.sh started (its socket is ENGINE_DIR/run/)."""
    folder = Path(docker_host.removeprefix("unix://")).parent.parent
    return folder if (folder / ".lock").exists() else None


def start_engine() -> Engine:
    """An engine already reachable, or one started from nothing. Test runs that share the private
    engine each hold a shared lock on ENGINE_DIR/.users; the engine is marked when a test run
    started it, so that the last run to finish stops it and an engine started by hand stays."""
    was_running = subprocess.run([str(ENGINE_SCRIPT), "status"], capture_output=True).returncode == 0
    host = _engine_up()
    folder = private_folder(host)
    if folder is None:
        return Engine(docker_host=host, users=None)
    users = (folder / ".users").open("a")
    fcntl.flock(users, fcntl.LOCK_SH)
    if not was_running:
        (folder / STARTED_BY_TESTS).touch()
    # Another run may have stopped it between `up` and the lock: bring it up again.
    return Engine(docker_host=_engine_up(), users=users)


def stop_engine(engine: Engine) -> None:
    """Stop the private dockerd when a test run started it and no other run still uses it."""
    if engine.users is None:
        return
    folder = Path(engine.users.name).parent
    engine.users.close()
    with (folder / ".users").open("a") as users:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another test run holds it; the last one stops it
        marker = folder / STARTED_BY_TESTS
        if marker.exists():
            subprocess.run([str(ENGINE_SCRIPT), "down"], capture_output=True, timeout=120, check=False)
            marker.unlink()


def wait_http(url: str, timeout: float, expect: int = 200) -> float:
    """Seconds until GET url answers `expect`."""
    start = time.monotonic()
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == expect:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{url} did not answer {expect} within {timeout} s")
        time.sleep(0.25)


def run_args(name: str, port: int, volume: str, extra: Sequence[str] = ()) -> list[str]:
    """`docker run` arguments for the hardened production shape: non-root (the image's USER),
    read-only root filesystem, no capabilities, no privilege gain, the compose memory limit."""
    return [
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        "512m",
        "--publish",
        f"127.0.0.1:{port}:8680",
        "--volume",
        f"{volume}:/data",
        *extra,
    ]
