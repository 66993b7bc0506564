"""Start the real Akosha (`python -m mahavishnu.akosha`) for a test: its own data folder, no
settings file, nothing inherited from the caller's AKOSHA_*/MAHAVISHNU_*/SESSION_* names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.server import RunningServer, free_port

GENEROUS_LIMITS = {
    "RATE_LIMIT_PER_MINUTE": "100000",
    "RATE_LIMIT_PER_HOUR": "1000000",
    "RATE_LIMIT_BURST": "100000",
}


def akosha_env(data: Path, **extra: str) -> dict[str, str]:
    """An environment for an Akosha keeping its data in `data` (SQLite there unless `extra`
    names POSTGRES_URL), with rate limits no test reaches unless `extra` sets them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AKOSHA_", "SESSION_", "MAHAVISHNU_", "RATE_LIMIT_"))
    }
    for name in ("POSTGRES_URL", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        env.pop(name, None)
    env.update({"AKOSHA_CONFIG": str(data / "absent.yaml"), "AKOSHA_DATA_DIR": str(data), **GENEROUS_LIMITS})
    env.update(extra)
    return env


def spawn_akosha(data: Path, env: dict[str, str], port: int | None = None) -> RunningServer:
    """Start it on a free loopback port (or `port`), its output in `data/akosha-PORT.log`
    (not yet ready: `wait_ready`)."""
    port = port or free_port()
    log_path = data / f"akosha-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mahavishnu.akosha", "--port", str(port)],
            env=env,
            cwd=data,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return RunningServer(process, port, log_path, env)
