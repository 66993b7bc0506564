"""A server killed with -9 mid-workflow: its runs' processes must die with it, so the restarted
server's retry of a run never overlaps the first attempt in the same repository (security
review, issue 8: two `git pull`s at once fight over the repository's lock).

Each run appends a `start` line, then a child of the run's shell (a grandchild of the engine,
as a `git pull` has) sleeps and appends an `end` line. Lines are appended (O_APPEND), so a
marker's line order is the order of events: no clock is compared.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.support.client import call_tool
from tests.support.gitrepos import git_fleet
from tests.support.server import base_env, start_server
from tests.workflows.test_over_mcp import structured, wait_final

RUNS = 8
FIRST_SLEEP_SECONDS = 30
"""Longer than a restart can take on a loaded machine: if the first execution reaches its end,
nothing stopped it (the bug), not a slow restart."""
RETRY_SLEEP_SECONDS = 2


def _script(token: str) -> str:
    """One execution: `start <id>`, then (in a child of the shell) a sleep and `end <id>`; the
    first execution in a repository sleeps long, a retry (the marker has lines) briefly.
    `$$` is the run's shell, which leads the process group, also inside the subshell."""
    stamp = "$(date +%s.%N)"
    return (
        f": {token}; if [ -s marker ]; then s={RETRY_SLEEP_SECONDS}; else s={FIRST_SLEEP_SECONDS}; fi; "
        f"echo start $$ {stamp} >> marker; "
        f"(sleep $s; echo end $$ {stamp} >> marker) & wait"
    )


def _events(marker: Path) -> list[tuple[str, str]]:
    """(kind, execution id) per line, in the order they were appended."""
    if not marker.exists():
        return []
    return [(line.split()[0], line.split()[1]) for line in marker.read_text().splitlines() if line.strip()]


def _overlaps(events: list[tuple[str, str]]) -> bool:
    """Whether two executions overlapped: then some execution wrote a line after another one
    had started, so its lines are not one contiguous block."""
    blocks: list[str] = []
    for _, execution in events:
        if not blocks or blocks[-1] != execution:
            blocks.append(execution)
    return len(blocks) != len(set(blocks))


def _children(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry))
    return children


def _argv0(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def _kill_leftovers(token: str) -> None:
    """Whatever still runs our script (the bug under test) is killed, so it cannot outlive the test."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if token.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    os.killpg(int(entry), signal.SIGKILL)


@pytest.mark.parametrize("helpers_killed_too", [False, True], ids=["server", "server-and-helpers"])
def test_a_killed_servers_runs_never_overlap_their_retry(tmp_path: Path, helpers_killed_too: bool) -> None:
    """`server`: only the server is killed. `server-and-helpers`: every other process the server
    started (all its children but the runs) is killed first, so only the restarted server's
    healing is left to stop the runs before it requeues them."""
    token = f"crash-overlap-{uuid.uuid4().hex}"
    names = {f"r{i}": ["crash"] for i in range(RUNS)}
    manifest = git_fleet(tmp_path, names)
    workflow = {"argv": ["sh", "-c", _script(token)], "timeout_seconds": 60}
    env = base_env(
        tmp_path,
        manifest,
        {
            "MAHAVISHNU_DATA_DIR": str(tmp_path / "var"),
            "MAHAVISHNU_WORKFLOWS": json.dumps({"marker": workflow}),
            "MAHAVISHNU_MAX_CONCURRENT_RUNS": str(RUNS),
            "MAHAVISHNU_ENGINE_POLL_SECONDS": "0.1",
            "MAHAVISHNU_LEASE_SECONDS": "3",
        },
    )
    markers = {name: tmp_path / "repos" / name / "marker" for name in names}
    try:
        server = start_server(tmp_path, env)
        try:
            args = {"workflow": "marker", "tag": "crash"}
            workflow_id = structured(call_tool(server.url, "trigger_workflow", args))["workflow_id"]
            deadline = time.monotonic() + 20
            while not all(_events(m) for m in markers.values()):
                assert time.monotonic() < deadline, "the runs never started"
                time.sleep(0.05)
            if helpers_killed_too:
                for child in _children(server.process.pid):
                    if _argv0(child) != "sh":
                        os.kill(child, signal.SIGKILL)
        finally:
            server.stop(signal.SIGKILL)
        first = {name: {e for _, e in _events(m)} for name, m in markers.items()}

        restarted = start_server(tmp_path, env)
        try:
            final = wait_final(restarted, workflow_id)
        finally:
            restarted.stop()
    finally:
        _kill_leftovers(token)

    assert final["status"] == "succeeded", final
    assert {r["attempt"] for r in final["runs"]} == {2}, final["runs"]
    for name, marker in markers.items():
        events = _events(marker)
        assert len(first[name]) == 1, (name, events)
        assert ("end", next(iter(first[name]))) not in events, (
            f"{name}: the attempt of the killed server ran on to its end: {events}"
        )
        assert not _overlaps(events), f"{name}: two executions overlapped: {events}"
        assert events[-1][0] == "end", (name, events)
