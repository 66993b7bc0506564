"""Mahavishnu's `repo://{name}` through the platform pipeline, on a real server: each read is counted
under the template's name with its outcome, and a repository outside the caller's scope is
indistinguishable from one that does not exist (-32002, counted not_found)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.client import rpc
from tests.support.server import SECRET, RunningServer, base_env, start_server
from tests.support.tokens import claims, hs256


@pytest.fixture(scope="module")
def server(workdir: Path, manifest: Path) -> Iterator[RunningServer]:
    running = start_server(workdir, base_env(workdir, manifest, {"MAHAVISHNU_AUTH_SECRET": SECRET}))
    yield running
    running.stop()


def reads(server: RunningServer, outcome: str) -> float:
    text = httpx.get(f"{server.base}/metrics").text
    pattern = rf'^mahavishnu_mcp_tool_calls_total{{outcome="{outcome}",tool="resource:repository"}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def read(server: RunningServer, name: str, tags: list[str]) -> httpx.Response:
    token = hs256(claims(sub="reader", tags=tags))
    return rpc(server.url, "resources/read", {"uri": f"repo://{name}"}, request_id="r-1", token=token)


def test_a_read_is_counted_under_the_template_name(server: RunningServer) -> None:
    before = reads(server, "ok")
    body = read(server, "akosha", ["python"]).json()
    assert body["result"]["contents"][0]["uri"] == "repo://akosha"
    assert reads(server, "ok") == before + 1
    assert "repo://" not in httpx.get(f"{server.base}/metrics").text


@pytest.mark.parametrize("name", ["webui", "no-such-repo"])
def test_out_of_scope_and_missing_are_the_same_not_found(server: RunningServer, name: str) -> None:
    before = reads(server, "not_found")
    body = read(server, name, ["python"]).json()
    assert body == {
        "jsonrpc": "2.0",
        "id": "r-1",
        "error": {"code": -32002, "message": f"no repository named {name!r}"},
    }
    assert reads(server, "not_found") == before + 1
