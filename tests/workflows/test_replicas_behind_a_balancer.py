"""Two Mahavishnu replicas on one PostgreSQL schema and one Redis, behind a round-robin TCP
balancer on loopback, as a load balancer in front of a deployment puts them: one rate-limit
budget, one workflow per idempotency key, and any replica answers for any workflow. On both
engines (the Temporal one on the session's dev server).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, drop_schema, require_service
from tests.support.client import call_tool, rpc
from tests.support.gitrepos import git_fleet
from tests.support.server import SECRET, RunningServer, base_env, start_server
from tests.support.tcp import pipe
from tests.support.tokens import claims, hs256

PER_MINUTE = 30


class Balancer:
    """Round-robin TCP: each new connection goes to the next backend."""

    def __init__(self, ports: list[int]) -> None:
        self._next = itertools.cycle(ports)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", next(self._next)))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


def _call(url: str, tool: str, arguments: dict[str, Any], token: str) -> dict[str, Any]:
    # A fresh connection per call: the balancer spreads calls, not one kept-alive stream.
    response = call_tool(url, tool, arguments, token=token)
    body = response.json()
    assert body["result"]["isError"] is False, body
    return dict(body["result"]["structuredContent"])


@pytest.fixture(params=["local", "temporal"])
def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[RunningServer]]]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)
    schema = f"lb_{uuid.uuid4().hex[:12]}"
    extra = {
        "POSTGRES_URL": PG_URL,
        "MAHAVISHNU_DATABASE_SCHEMA": schema,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "MAHAVISHNU_AUTH_SECRET": SECRET,
        "RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
        "RATE_LIMIT_PER_HOUR": "100000",
        "RATE_LIMIT_BURST": "100000",
        "MAHAVISHNU_ENGINE": request.param,
    }
    if request.param == "temporal":
        server = request.getfixturevalue("temporal_dev_server")
        extra |= {
            "MAHAVISHNU_TEMPORAL_ADDRESS": server.address,
            "MAHAVISHNU_TEMPORAL_TASK_QUEUE_PREFIX": f"lb{uuid.uuid4().hex[:8]}",
        }
    manifest = git_fleet(tmp_path, {"alpha": ["python"], "beta": ["python"], "gamma": ["rust"]})
    env = base_env(tmp_path, manifest, extra)
    started: list[RunningServer] = []
    try:
        started.append(start_server(tmp_path, {**env, "MAHAVISHNU_DATA_DIR": str(tmp_path / "var1")}))
        started.append(start_server(tmp_path, {**env, "MAHAVISHNU_DATA_DIR": str(tmp_path / "var2")}))
        balancer = Balancer([s.port for s in started])
        try:
            yield f"http://127.0.0.1:{balancer.port}/mcp", started
        finally:
            balancer.close()
    finally:
        for server in started:
            server.stop()
        asyncio.run(drop_schema(schema))


def test_replicas_behind_a_balancer_share_budget_keys_and_answers(
    replicas: tuple[str, list[RunningServer]],
) -> None:
    url, servers = replicas

    # One budget across both replicas: exact to one request.
    probe = hs256(claims(sub=f"probe-{uuid.uuid4().hex[:6]}"))
    if time.time() % 60 > 45:  # clear of the sliding window's minute edge
        time.sleep(61 - time.time() % 60)
    codes = [rpc(url, "ping", token=probe).status_code for _ in range(PER_MINUTE + 6)]
    assert set(codes) <= {200, 429}
    assert abs(codes.count(200) - PER_MINUTE) <= 1, codes

    # Ten concurrent triggers with one idempotency key, spread over both replicas: one workflow.
    operator = hs256(claims(sub=f"ops-{uuid.uuid4().hex[:6]}", role="operator"))
    args = {"workflow": "git-status", "idempotency_key": f"nightly-{uuid.uuid4().hex[:8]}"}
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: _call(url, "trigger_workflow", args, operator), range(10)))
    ids = {answer["workflow_id"] for answer in answers}
    assert len(ids) == 1, ids
    [workflow_id] = ids

    deadline = time.monotonic() + 60
    while True:
        status = _call(url, "get_workflow_status", {"workflow_id": workflow_id}, operator)
        if status["finished_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert status["status"] == "succeeded", status
    assert len(status["runs"]) == 3
    assert all(run["attempt"] == 1 and run["status"] == "succeeded" for run in status["runs"])
    assert _call(url, "list_workflows", {}, operator)["total"] == 1

    # Any replica answers for any workflow, the same answer.
    for server in servers:
        direct = call_tool(server.url, "get_workflow_status", {"workflow_id": workflow_id}, token=operator)
        assert direct.json()["result"]["structuredContent"]["status"] == "succeeded"
    for server in servers:
        health = httpx.get(f"{server.base}/health", timeout=10).json()
        assert health["checks"]["engine"]["status"] == "ok", health
