"""Workflows through the real server: crash recovery, roles over HTTP, progress, the database going away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import LoggingMessageNotificationParams

from tests.conftest import PG_URL, drop_schema, require_service
from tests.integration.test_tracing import Collector
from tests.support.client import call_tool
from tests.support.gitrepos import git_fleet
from tests.support.server import SECRET, RunningServer, base_env, free_port, start_server
from tests.support.tcp import pipe
from tests.support.tokens import claims, hs256
from tests.workflows.conftest import FAKE_AGENT

FLEET = {"alpha": ["python"], "beta": ["python"], "gamma": ["rust"], "delta": ["python"]}


def workflow_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    manifest = git_fleet(root, FLEET)
    return base_env(
        root,
        manifest,
        {
            "MAHAVISHNU_DATA_DIR": str(root / "var"),
            "MAHAVISHNU_AGENT_COMMAND": json.dumps([sys.executable, FAKE_AGENT, "-p"]),
            "MAHAVISHNU_ENGINE_POLL_SECONDS": "0.1",
            "MAHAVISHNU_LEASE_SECONDS": "3",
            **(extra or {}),
        },
    )


def structured(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert "result" in body, body
    assert body["result"]["isError"] is False, body
    return dict(body["result"]["structuredContent"])


def wait_final(server: RunningServer, workflow_id: str, timeout: float = 60, **kw: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = structured(call_tool(server.url, "get_workflow_status", {"workflow_id": workflow_id}, **kw))
        if view["finished_at"] is not None:
            return view
        time.sleep(0.2)
    raise AssertionError(f"workflow {workflow_id} not final in {timeout} s")


@pytest.fixture(params=["sqlite", "postgres"])
def db_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield {"POSTGRES_URL": PG_URL, "MAHAVISHNU_DATABASE_SCHEMA": schema}
    asyncio.run(drop_schema(schema))


def test_kill_9_loses_no_run(tmp_path: Path, db_env: dict[str, str]) -> None:
    env = workflow_env(tmp_path, {**db_env, "MAHAVISHNU_MAX_CONCURRENT_RUNS": "2"})
    server = start_server(tmp_path, env)
    try:
        args = {"workflow": "agent", "tag": "python", "params": {"prompt": "sleep:2"}}
        workflow_id = structured(call_tool(server.url, "trigger_workflow", args))["workflow_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            view = structured(call_tool(server.url, "get_workflow_status", {"workflow_id": workflow_id}))
            if view["counts"].get("running") == 2:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("runs never started")
        running_before = {r["repo"] for r in view["runs"] if r["status"] == "running"}
    finally:
        server.stop(signal.SIGKILL)

    restarted = start_server(tmp_path, env)
    try:
        final = wait_final(restarted, workflow_id)
    finally:
        restarted.stop()
    statuses = {r["repo"]: r["status"] for r in final["runs"]}
    assert statuses == {"alpha": "succeeded", "beta": "succeeded", "delta": "succeeded"}
    assert final["status"] == "succeeded"
    for run in final["runs"]:
        if run["repo"] in running_before:
            assert run["attempt"] == 2, run  # the attempt lost with the dead server, then a new one
    assert "runs_healed" in restarted.log_path.read_text()


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path, workflow_env(tmp_path, {"MAHAVISHNU_AUTH_SECRET": SECRET}))
    yield server
    server.stop()


def test_roles_over_http(auth_server: RunningServer) -> None:
    viewer = hs256(claims(sub="vic", role="viewer"))
    py_operator = hs256(claims(sub="ops", role="operator", tags=["python"]))
    admin = hs256(claims(sub="root", role="admin"))
    args = {"workflow": "git-status", "repos": ["alpha"]}

    refused = call_tool(auth_server.url, "trigger_workflow", args, token=viewer)
    assert refused.status_code == 403
    assert 'scope="operator"' in refused.headers["www-authenticate"]

    out_of_scope = call_tool(
        auth_server.url, "trigger_workflow", {**args, "repos": ["gamma"]}, token=py_operator
    )
    assert out_of_scope.json()["result"]["isError"] is True
    assert "gamma" in out_of_scope.json()["result"]["content"][0]["text"]

    started = structured(call_tool(auth_server.url, "trigger_workflow", args, token=py_operator))
    assert started["requested_by"] == "ops"
    final = wait_final(auth_server, started["workflow_id"], token=viewer)  # viewers may watch
    assert final["status"] == "succeeded"

    assert call_tool(auth_server.url, "list_dead_letters", token=py_operator).status_code == 403
    assert call_tool(auth_server.url, "heal_workflows", token=py_operator).status_code == 403
    assert structured(call_tool(auth_server.url, "list_dead_letters", token=admin)) == {
        "dead_letters": [],
        "next_cursor": None,
        "total": 0,
    }


def test_status_pages_runs_and_takes_an_id_prefix_over_http(auth_server: RunningServer) -> None:
    token = hs256(claims(sub="ops", role="operator", tags=["python"]))
    started = structured(
        call_tool(auth_server.url, "trigger_workflow", {"workflow": "git-status"}, token=token)
    )
    short = started["workflow_id"][:8]
    wait_final(auth_server, short, token=token)

    first = structured(
        call_tool(auth_server.url, "get_workflow_status", {"workflow_id": short, "limit": 2}, token=token)
    )
    assert first["workflow_id"] == started["workflow_id"]
    assert (first["counts"], first["total"]) == ({"succeeded": 3}, 3)
    assert [r["repo"] for r in first["runs"]] == ["alpha", "beta"]
    arguments = {"workflow_id": short, "limit": 2, "cursor": first["next_cursor"]}
    rest = structured(call_tool(auth_server.url, "get_workflow_status", arguments, token=token))
    assert ([r["repo"] for r in rest["runs"]], rest["next_cursor"]) == (["delta"], None)
    counts_only = {"workflow_id": short, "limit": 0, "status": "succeeded"}
    assert (
        structured(call_tool(auth_server.url, "get_workflow_status", counts_only, token=token))["runs"] == []
    )

    listed = structured(call_tool(auth_server.url, "list_workflows", {"limit": 1}, token=token))
    assert (listed["total"], listed["next_cursor"]) == (1, None)
    unknown = call_tool(
        auth_server.url, "get_workflow_status", {"workflow_id": "ffffffff"}, token=token
    ).json()
    assert unknown["result"]["isError"] is True
    assert "no workflow" in unknown["result"]["content"][0]["text"]


def test_a_retried_trigger_with_its_key_gives_the_same_workflow_over_http(auth_server: RunningServer) -> None:
    token = hs256(claims(sub="ops", role="operator"))
    args = {"workflow": "git-status", "repos": ["alpha"], "idempotency_key": "nightly-2026-12-03"}
    first = structured(call_tool(auth_server.url, "trigger_workflow", args, token=token))
    again = structured(call_tool(auth_server.url, "trigger_workflow", args, token=token))
    assert again["workflow_id"] == first["workflow_id"]

    conflict = call_tool(auth_server.url, "trigger_workflow", {**args, "repos": ["beta"]}, token=token).json()
    assert conflict["result"]["isError"] is True
    assert conflict["result"]["_meta"]["io.mahavishnu/error"]["code"] == -32009
    assert first["workflow_id"] in conflict["result"]["content"][0]["text"]

    bad = call_tool(
        auth_server.url, "trigger_workflow", {**args, "idempotency_key": "a b"}, token=token
    ).json()
    assert bad["result"]["isError"] is True
    assert bad["result"]["_meta"]["io.mahavishnu/error"]["code"] == -32602
    assert bad["result"]["content"][0]["text"].startswith(
        "invalid arguments for tool 'trigger_workflow': idempotency_key: must match the pattern"
    )
    listed = structured(call_tool(auth_server.url, "list_workflows", {}, token=token))
    assert listed["total"] == 1


async def test_wait_streams_progress_over_stdio(tmp_path: Path) -> None:
    env = workflow_env(tmp_path)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mahavishnu", "serve", "--stdio"], env=env, cwd=str(tmp_path)
    )
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    logged: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logged.append(params)

    async with Client(params, mode="legacy", cache=None, logging_callback=on_log) as client:
        await client.set_logging_level("info")
        result = await client.call_tool(
            "trigger_workflow",
            {"workflow": "agent", "tag": "python", "params": {"prompt": "sleep:0.5"}, "wait": True},
            progress_callback=on_progress,
        )
    assert result.structured_content is not None
    assert result.structured_content["status"] == "succeeded"
    assert updates, "no progress notification arrived"
    assert updates[-1] == (3, 3, "workflow succeeded")
    assert [p for p, _, _ in updates] == sorted(p for p, _, _ in updates)
    # The same events reach the client's log, since it set a level.
    workflow_id = result.structured_content["workflow_id"]
    assert logged, "no log message arrived"
    assert {m.data["workflow_id"] for m in logged} == {workflow_id}
    assert logged[-1].data["message"] == "workflow succeeded"
    assert logged[-1].data["counts"] == {"succeeded": 3}


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that the test can cut, like a network failure."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.start()

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    def cut(self) -> None:
        assert self.listener is not None
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone would not
        self.listener.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self.connections.clear()


def test_database_going_away_is_reported_and_survived(tmp_path: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    proxy = TcpProxy(5432)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    env = workflow_env(
        tmp_path,
        {
            "POSTGRES_URL": f"postgresql://postgres@127.0.0.1:{proxy.port}/test",
            "MAHAVISHNU_DATABASE_SCHEMA": schema,
        },
    )
    server = start_server(tmp_path, env)
    try:
        first = structured(
            call_tool(server.url, "trigger_workflow", {"workflow": "git-status", "repos": ["alpha"]})
        )
        assert wait_final(server, first["workflow_id"])["status"] == "succeeded"

        proxy.cut()
        down = call_tool(server.url, "trigger_workflow", {"workflow": "git-status", "repos": ["alpha"]})
        assert down.status_code == 200
        result = down.json()["result"]
        assert result["isError"] is True
        assert "database is unavailable" in result["content"][0]["text"]
        assert result["_meta"]["io.mahavishnu/error"]["retryable"] is True
        health = httpx.get(f"{server.base}/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["database"]["status"] == "degraded"
        assert structured(call_tool(server.url, "list_repos"))["total"] == 4  # the rest still serves

        proxy.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            again = call_tool(
                server.url, "trigger_workflow", {"workflow": "git-status", "repos": ["alpha"]}
            ).json()
            if not again["result"]["isError"]:
                break
            time.sleep(0.3)
        assert (
            wait_final(server, again["result"]["structuredContent"]["workflow_id"])["status"] == "succeeded"
        )
        # The first workflow's data survived the outage.
        assert wait_final(server, first["workflow_id"])["status"] == "succeeded"
    finally:
        server.stop()
        asyncio.run(drop_schema(schema))


async def test_wait_streams_progress_over_http(tmp_path: Path) -> None:
    from tests.support.client import mcp_client

    server = start_server(tmp_path, workflow_env(tmp_path))
    updates: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(progress)

    try:
        async with mcp_client(server.url) as client:
            result = await client.call_tool(
                "trigger_workflow",
                {"workflow": "agent", "tag": "python", "params": {"prompt": "sleep:0.5"}, "wait": True},
                progress_callback=on_progress,
            )
            plain = await client.call_tool("list_repos", {})
    finally:
        server.stop()
    assert result.structured_content is not None
    assert result.structured_content["status"] == "succeeded"
    assert updates
    assert updates[-1] == 3
    assert plain.structured_content is not None
    assert plain.structured_content["total"] == 4


def test_a_workflow_and_its_runs_are_traced_under_the_triggering_call(
    tmp_path: Path, db_env: dict[str, str]
) -> None:
    collector = Collector()
    env = workflow_env(tmp_path, {**db_env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    try:
        server = start_server(tmp_path, env)
        try:
            triggered = structured(
                call_tool(server.url, "trigger_workflow", {"workflow": "git-status", "tag": "python"})
            )
            final = wait_final(server, triggered["workflow_id"])
        finally:
            assert server.stop() == 0  # a graceful stop flushes the exporter
    finally:
        collector.server.shutdown()
    assert final["status"] == "succeeded"
    [call] = [s for s in collector.records if s.name == "tools/call trigger_workflow"]
    [workflow] = [s for s in collector.records if s.name == "workflow git-status"]
    runs = [s for s in collector.records if s.name == "repo_run git-status"]
    assert len(runs) == 3  # alpha, beta, delta
    for span in (workflow, *runs):
        assert (span.trace_id, span.parent_span_id) == (call.trace_id, call.span_id)
    attributes = {a.key: a.value.string_value for a in workflow.attributes}
    assert attributes["mahavishnu.workflow_id"] == triggered["workflow_id"]
    assert attributes["mahavishnu.workflow_status"] == "succeeded"
    # The workflow's span covers its runs: it starts at the trigger and ends at the close.
    assert workflow.start_time_unix_nano <= min(r.start_time_unix_nano for r in runs)
    assert workflow.end_time_unix_nano >= max(r.end_time_unix_nano for r in runs)
    run_repos = sorted(a.value.string_value for r in runs for a in r.attributes if a.key == "mahavishnu.repo")
    assert run_repos == ["alpha", "beta", "delta"]
