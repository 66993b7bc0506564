"""Start the real Session-Buddy (`python -m mahavishnu serve session-buddy`) for a test: its own
data folder, no settings file, nothing inherited from the caller's SESSION_*/MAHAVISHNU_* names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mahavishnu.platform.search.embeddings import scratch_cache
from tests.support.server import RunningServer, free_port


def session_buddy_env(data: Path, **extra: str) -> dict[str, str]:
    """An environment for a Session-Buddy keeping its data in `data` (SQLite there unless `extra`
    names POSTGRES_URL), with `extra` on top (e.g. an auth secret or an encryption key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_", "MAHAVISHNU_", "EMBEDDING_"))}
    env.pop("POSTGRES_URL", None)
    env.update(
        {
            "SESSION_BUDDY_CONFIG": str(data / "absent.yaml"),
            "SESSION_BUDDY_DATA_DIR": str(data),
            "SESSION_BUDDY_MODEL_CACHE_DIR": str(scratch_cache()),  # the int8 model made once per run
        }
    )
    env.update(extra)
    return env


def spawn_session_buddy(data: Path, env: dict[str, str], port: int | None = None) -> RunningServer:
    """Start it on a free loopback port (or `port`), its output in `data/server-PORT.log` (not
    yet ready)."""
    port = port or free_port()
    log_path = data / f"server-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mahavishnu", "serve", "session-buddy", "--port", str(port)],
            env=env,
            cwd=data,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return RunningServer(process, port, log_path, env)
