"""Ops take the service as a parameter: `backup create --service echo` backs up Echo's own SQLite
file under Echo's name (creating the ops-owned `backup_events` table Echo's tree lacks), and
`readiness --service echo` checks Echo's settings (no Mahavishnu manifest check)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from mahavishnu.platform.db import Database
from tests.support.echo_service.settings import EchoSettings

ROOT = Path(__file__).resolve().parents[2]
ECHO = [sys.executable, "-m", "tests.support.echo_service"]


def _run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECHO_DATA_DIR": str(data_dir), "MAHAVISHNU_DATA_DIR": str(data_dir / "m")}
    return subprocess.run([*ECHO, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


async def test_backup_create_service_echo_backs_up_echos_database(tmp_path: Path) -> None:
    db = Database.from_settings(EchoSettings(data_dir=tmp_path))
    await db.upgrade()
    await db.dispose()
    done = _run(["backup", "create", "--service", "echo", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    name = json.loads(done.stdout)["name"]
    assert name.startswith("echo-")
    archive = (tmp_path / "backups" / name).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert "repos.yaml" not in tar.getnames()
    assert manifest["service"] == "echo"
    assert manifest["database"]["dialect"] == "sqlite"
    listed = _run(["backup", "list", "--service", "echo", "--json"], tmp_path)
    assert [b["name"] for b in json.loads(listed.stdout)] == [name]


async def test_readiness_service_echo_checks_echos_settings(tmp_path: Path) -> None:
    # Readiness reads a database and never makes one: Echo's exists before the check.
    db = Database.from_settings(EchoSettings(data_dir=tmp_path))
    await db.upgrade()
    await db.dispose()
    done = _run(["readiness", "--service", "echo", "--json", "--min-score", "0"], tmp_path)
    assert done.returncode == 0, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert "manifest" not in checks
    assert "ECHO_AUTH_SECRET" in checks["auth_secret"]["fix"]
    assert "--service echo" in checks["backup_fresh"]["fix"]


def test_an_unknown_service_is_refused(tmp_path: Path) -> None:
    done = _run(["backup", "list", "--service", "nope"], tmp_path)
    assert done.returncode == 2
    assert "no service named 'nope'" in done.stderr
