"""Editing repos.yaml under a running server: good edits apply, broken ones are refused and reported."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.client import call_tool
from tests.support.repos import make_repos, standard_specs
from tests.support.server import RunningServer, base_env, start_server


@pytest.fixture
def reload_server(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    manifest = make_repos(tmp_path, standard_specs())
    server = start_server(tmp_path, base_env(tmp_path, manifest))
    yield server, manifest
    server.stop()


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def total(server: RunningServer) -> int:
    return int(call_tool(server.url, "list_repos").json()["result"]["structuredContent"]["total"])


def test_good_edit_is_picked_up(reload_server: tuple[RunningServer, Path]) -> None:
    server, manifest = reload_server
    data = yaml.safe_load(manifest.read_text())
    data["repos"] = data["repos"][:2]
    manifest.write_text(yaml.safe_dump(data))
    eventually(lambda: total(server) == 2)
    assert "mahavishnu_manifest_repos 2.0" in httpx.get(f"{server.base}/metrics").text


def test_broken_edit_keeps_last_good_manifest(reload_server: tuple[RunningServer, Path]) -> None:
    server, manifest = reload_server
    manifest.write_text("repos:\n  - name: broken\n    path: relative/path\n    tags: [Not Valid]\n")

    def degraded() -> bool:
        return bool(httpx.get(f"{server.base}/health").json()["status"] == "degraded")

    eventually(degraded)
    health = httpx.get(f"{server.base}/health")
    assert health.status_code == 200
    check = health.json()["checks"]["manifest"]
    assert check["status"] == "degraded"
    assert any("relative" in p or "absolute" in p for p in check["data"]["problems"])
    assert total(server) == 5  # still the last good manifest
    assert "manifest_rejected" in server.log_path.read_text()

    # Mending the file clears the problem.
    make_repos(manifest.parent, standard_specs()[:3])
    eventually(lambda: total(server) == 3)
    assert httpx.get(f"{server.base}/health").json()["status"] == "healthy"


def test_missing_manifest_serves_empty_and_says_how_to_make_one(tmp_path: Path) -> None:
    server = start_server(tmp_path, base_env(tmp_path, tmp_path / "repos.yaml"))
    try:
        assert total(server) == 0
        assert "mahavishnu repos init" in server.log_path.read_text()
        assert httpx.get(f"{server.base}/health").json()["status"] == "healthy"
    finally:
        server.stop()
