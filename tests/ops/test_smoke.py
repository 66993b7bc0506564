"""The 8 smoke checks, both runners (`python -m mahavishnu.ops.smoke_cli` and scripts/smoke_tests.sh),
against the real server and against servers that are broken in known ways."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mahavishnu.ops.smoke import CHECKS, normalize_base_url, run_smoke
from mahavishnu.ops.smoke_cli import app as smoke_app
from mahavishnu.ops.smoke_cli import smoke_command
from tests.integration.test_second_service import echo_env, start_echo
from tests.ops.support import ROOT, FakeHttpServer, Reply, broken_mcp_routes, fake_mcp_routes
from tests.support.repos import make_repos, standard_specs
from tests.support.server import RunningServer, base_env, start_server, wait_ready
from tests.support.session_buddy import session_buddy_env, spawn_session_buddy
from tests.support.tokens import claims, hs256

SCRIPT = ROOT / "scripts" / "smoke_tests.sh"
NAMES = [name for name, _ in CHECKS]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(r"^\[(\d)/(\d)\] (\w+)\s+(PASS|FAIL)\s+(.*)$")
RUNNERS = ["python", "bash"]


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float

    def lines(self) -> dict[str, tuple[str, str]]:
        """check name -> (PASS|FAIL, detail), from the one line each check prints."""
        found: dict[str, tuple[str, str]] = {}
        for line in ANSI.sub("", self.out).splitlines():
            match = LINE.match(line)
            if match:
                found[match.group(3)] = (match.group(4), match.group(5))
        return found

    def failed(self) -> set[str]:
        return {name for name, (mark, _) in self.lines().items() if mark == "FAIL"}


def command(runner: str, *args: str) -> list[str]:
    if runner == "python":
        return [sys.executable, "-m", "mahavishnu.ops.smoke_cli", *args]
    return ["bash", str(SCRIPT), *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"MAHAVISHNU_TOKEN", "NO_COLOR"}}
    env.update(extra)
    return env


def smoke(runner: str, *args: str, budget: int | None = None, **env: str) -> Run:
    """Run one smoke run. The Python runner runs in-process (CliRunner: no interpreter start-up
    per test); `test_python_runner_as_a_process` covers it as a real process."""
    extra_args = [] if budget is None or runner == "bash" else ["--budget", str(budget)]
    if budget is not None:
        env["SMOKE_BUDGET_SECONDS"] = str(budget)
    started = time.monotonic()
    if runner == "python":
        unset: dict[str, str | None] = {"MAHAVISHNU_TOKEN": None, "NO_COLOR": None}
        result = CliRunner().invoke(smoke_app, [*args, *extra_args], env={**unset, **env})
        return Run(result.exit_code, result.stdout, result.stderr, time.monotonic() - started)
    done = subprocess.run(
        command(runner, *args),
        capture_output=True,
        text=True,
        env=clean_env(**env),
        cwd=ROOT,
        timeout=30,
    )
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def test_python_runner_as_a_process(live_server: RunningServer) -> None:
    started = time.monotonic()
    done = subprocess.run(
        command("python", live_server.base), capture_output=True, text=True, env=clean_env(), timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All smoke tests PASSED" in done.stdout
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def throttled_server(ops_workdir: Path) -> Iterator[RunningServer]:
    """The real server with a burst allowance of 4 requests a second: the 4 checks before the
    rapid ones fit, and the 5 rapid requests (5 to 9 of a run) exceed it in any one-second
    window, wherever a window boundary falls (the sliding-window counter weighs the previous
    second, so with a larger allowance a boundary mid-run could let them through)."""
    folder = ops_workdir / "throttled"
    folder.mkdir(exist_ok=True)
    manifest = make_repos(folder, standard_specs())
    env = base_env(folder, manifest, {"RATE_LIMIT_BURST": "4"})
    server = start_server(folder, env)
    yield server
    server.stop()


# --- the real server ------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", RUNNERS)
def test_all_eight_pass_against_the_real_server(runner: str, live_server: RunningServer) -> None:
    run = smoke(runner, live_server.base)
    assert run.code == 0, run.out + run.err
    lines = run.lines()
    assert list(lines) == NAMES
    assert all(mark == "PASS" for mark, _ in lines.values()), run.out
    assert "Smoke summary: 8/8 checks passed" in run.out
    assert "All smoke tests PASSED" in run.out
    assert "\x1b[" not in run.out, "no colour when stdout is not a terminal"
    assert run.seconds < 10
    assert lines["list_repos"][1].startswith(("5 repos", "total 5 repos"))
    assert lines["get_all_repo_paths"][1].startswith("5 paths")


@pytest.mark.parametrize("runner", RUNNERS)
def test_accepts_the_mcp_endpoint_url_too(runner: str, live_server: RunningServer) -> None:
    run = smoke(runner, live_server.url + "/")
    assert run.code == 0, run.out


@pytest.mark.parametrize("runner", RUNNERS)
def test_verbose_shows_each_request_and_response(runner: str, live_server: RunningServer) -> None:
    run = smoke(runner, "-v", live_server.base)
    assert run.code == 0, run.out
    out = run.out
    assert f"GET {live_server.base}/health" in out
    assert f"POST {live_server.base}/mcp" in out
    assert '"method":"initialize"' in out
    assert '"method":"mahavishnu/no-such-method"' in out
    assert out.count('"method":"ping"') == 5
    assert "-> HTTP 200" in out
    assert '"code":-32601' in out
    quiet = smoke(runner, live_server.base)
    assert "-> HTTP" not in quiet.out


# --- authentication ---------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", RUNNERS)
def test_auth_on_and_no_token_fails_with_401(runner: str, auth_server: RunningServer) -> None:
    run = smoke(runner, auth_server.base)
    assert run.code == 1, run.out
    # /health is public; everything on /mcp is refused.
    assert run.failed() == set(NAMES) - {"health", "health_latency"}
    assert "401" in run.lines()["mcp_initialize"][1]
    assert "--token" in run.lines()["mcp_initialize"][1]
    assert "Smoke tests FAILED" in run.out


@pytest.mark.parametrize("runner", RUNNERS)
def test_token_option_passes_and_is_never_printed(runner: str, auth_server: RunningServer) -> None:
    token = hs256(claims())
    run = smoke(runner, auth_server.base, "-v", "--token", token)
    assert run.code == 0, run.out
    assert token not in run.out + run.err
    assert "Authorization" not in run.out
    # With the token, /health shows its details (the version) as it does on an open server.
    assert "version ?" not in run.lines()["health"][1]


@pytest.mark.parametrize("runner", RUNNERS)
def test_token_from_the_environment(runner: str, auth_server: RunningServer) -> None:
    run = smoke(runner, auth_server.base, MAHAVISHNU_TOKEN=hs256(claims()))
    assert run.code == 0, run.out


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_bad_token_fails(runner: str, auth_server: RunningServer) -> None:
    run = smoke(runner, auth_server.base, "--token", hs256(claims(), secret="x" * 40))
    assert run.code == 1
    assert "401" in run.lines()["tools_list"][1]


# --- broken servers --------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", RUNNERS)
def test_server_whose_mcp_endpoint_fails(runner: str, broken_server: FakeHttpServer) -> None:
    run = smoke(runner, broken_server.base)
    assert run.code == 1, run.out
    assert run.failed() == set(NAMES) - {"health", "health_latency"}
    assert "HTTP 500" in run.lines()["mcp_initialize"][1]
    assert "not JSON-RPC" in run.lines()["mcp_initialize"][1]
    summary = next(line for line in run.out.splitlines() if line.startswith("Smoke summary"))
    assert "2/8 checks passed" in summary
    for name in run.failed():
        assert name in summary


@pytest.mark.parametrize("runner", RUNNERS)
def test_server_answering_garbage_json(runner: str) -> None:
    with FakeHttpServer(broken_mcp_routes(Reply(200, b'{"hello": "world"}'))) as server:
        run = smoke(runner, server.base)
    assert run.code == 1
    assert "mcp_initialize" in run.failed()
    assert "not JSON-RPC" in run.lines()["mcp_initialize"][1]


@pytest.mark.parametrize("runner", RUNNERS)
def test_nothing_listening(runner: str) -> None:
    with FakeHttpServer(broken_mcp_routes()) as server:
        base = server.base  # a port that was free a moment ago and is closed now
    run = smoke(runner, base)
    assert run.code == 1
    assert run.failed() == set(NAMES)
    assert run.seconds < 10


@pytest.mark.parametrize("runner", RUNNERS)
def test_unhealthy_health_fails_the_health_check(runner: str) -> None:
    def route(method: str, path: str, body: bytes) -> Reply:
        if path == "/health":
            return Reply(503, b'{"status": "unhealthy", "checks": {}}')
        return fake_mcp_routes()(method, path, body)

    with FakeHttpServer(route) as server:
        run = smoke(runner, server.base)
    assert run.code == 1
    assert run.failed() == {"health", "health_latency"}
    assert "503" in run.lines()["health"][1]


@pytest.mark.parametrize("runner", RUNNERS)
def test_missing_tool_and_wrong_unknown_method_answer(runner: str) -> None:
    routes = fake_mcp_routes(tools=("get_all_repo_paths",), unknown_method_result=True)
    with FakeHttpServer(routes) as server:
        run = smoke(runner, server.base)
    assert run.code == 1
    assert run.failed() == {"tools_list", "unknown_method"}
    assert "list_repos" in run.lines()["tools_list"][1]


@pytest.mark.parametrize("runner", RUNNERS)
def test_slow_health_fails_the_latency_check(runner: str) -> None:
    # The first /health (check 1) is quick; the second (check 7) takes longer than 2 s.
    with FakeHttpServer(fake_mcp_routes(slow_health_after=2, health_delay=2.5)) as server:
        run = smoke(runner, server.base)
    assert run.code == 1
    assert run.failed() == {"health_latency"}
    assert "2 s" in run.lines()["health_latency"][1] or "2.000" in run.lines()["health_latency"][1]


_last_throttled_run = [-10.0]


@pytest.mark.parametrize("runner", RUNNERS)
def test_rate_limited_burst_fails_rapid_requests(runner: str, throttled_server: RunningServer) -> None:
    # Past the sliding one-second window of an earlier run against this server, if any.
    time.sleep(max(0.0, _last_throttled_run[0] + 2.1 - time.monotonic()))
    run = smoke(runner, throttled_server.base)
    _last_throttled_run[0] = time.monotonic()
    assert run.code == 1
    assert "rapid_requests" in run.failed()
    assert "429" in run.lines()["rapid_requests"][1]
    assert {"health", "mcp_initialize", "tools_list", "list_repos", "get_all_repo_paths"}.isdisjoint(
        run.failed()
    )


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_hung_server_cannot_stretch_the_run_past_its_budget(runner: str) -> None:
    with FakeHttpServer(broken_mcp_routes(Reply(200, b"{}", delay=30))) as server:
        run = smoke(runner, server.base, budget=1)
    assert run.code == 1
    assert run.seconds < 4, run.out
    assert "mcp_initialize" in run.failed()
    assert any(
        "budget" in detail or "no answer" in detail for mark, detail in run.lines().values() if mark == "FAIL"
    )


# --- output and usage ----------------------------------------------------------------------------------


def run_in_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal (so the runner sees a TTY); return code and output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdout=follower, stderr=follower, env=env, cwd=ROOT)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(30), b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("runner", RUNNERS)
def test_colour_on_a_terminal_unless_no_color(runner: str, live_server: RunningServer) -> None:
    code, out = run_in_terminal(command(runner, live_server.base), clean_env())
    assert code == 0, out
    assert "\x1b[32mPASS" in out
    code, out = run_in_terminal(command(runner, live_server.base), clean_env(NO_COLOR="1"))
    assert code == 0, out
    assert "\x1b[" not in out


@pytest.mark.parametrize("runner", RUNNERS)
def test_bad_usage_exits_2(runner: str) -> None:
    assert smoke(runner).code == 2
    assert smoke(runner, "ftp://example.invalid").code == 2


def test_help_of_the_shell_script() -> None:
    run = smoke("bash", "--help")
    assert run.code == 0
    assert "smoke_tests.sh URL" in run.out


# --- the library and mounting on the main CLI ----------------------------------------------------------


def test_library_report(live_server: RunningServer) -> None:
    seen: list[str] = []
    report = run_smoke(live_server.url, on_result=lambda r: seen.append(r.name))
    assert report.passed
    assert seen == NAMES
    assert report.failed == []
    data = report.as_dict()
    assert data["passed"] is True
    assert [c["name"] for c in data["checks"]] == NAMES


def test_normalize_base_url() -> None:
    assert normalize_base_url("http://h:1/mcp/") == "http://h:1"
    assert normalize_base_url(" https://h/ ") == "https://h"
    with pytest.raises(ValueError, match="not an http"):
        normalize_base_url("h:1")


def test_mounts_as_a_sub_command(live_server: RunningServer) -> None:
    """How the main CLI mounts it: `app.command("smoke")(smoke_command)`."""
    main = typer.Typer()
    main.command("smoke")(smoke_command)

    @main.command("other")
    def other() -> None:  # a second command, so `smoke` is a real sub-command
        """Placeholder."""

    result = CliRunner().invoke(main, ["smoke", live_server.base, "-v"])
    assert result.exit_code == 0, result.output
    assert "All smoke tests PASSED" in result.output
    result = CliRunner().invoke(main, ["smoke", "--help"])
    assert "--token" in result.output
    assert "--verbose" in result.output
    # The module's own one-command app runs the check directly.
    result = CliRunner().invoke(smoke_app, [live_server.base])
    assert result.exit_code == 0, result.output


def test_mahavishnu_smoke_on_the_main_cli(live_server: RunningServer) -> None:
    """`mahavishnu smoke URL`, once cli.py mounts the command (app.command("smoke")(smoke_command))."""
    done = subprocess.run(
        [sys.executable, "-m", "mahavishnu", "smoke", live_server.base, "-v"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All smoke tests PASSED" in done.stdout


# --- which service answers ---------------------------------------------------------------------------

GENERIC = ["health", "mcp_initialize", "tools_list", "rapid_requests", "health_latency", "unknown_method"]


@pytest.fixture(scope="module")
def echo_server(ops_workdir: Path) -> Iterator[RunningServer]:
    """The throwaway second service (tests/support/echo_service), open like `live_server`."""
    folder = ops_workdir / "echo"
    folder.mkdir(exist_ok=True)
    env = echo_env(folder)
    del env["ECHO_AUTH_SECRET"]
    server = start_echo(folder, env)
    yield server
    server.stop()


def test_mahavishnu_is_recognised_by_its_initialize_answer(live_server: RunningServer) -> None:
    run = smoke("python", live_server.base)
    assert run.code == 0, run.out
    assert f"Smoke tests against {live_server.base}: mahavishnu (from initialize), 8 checks" in run.out
    assert list(run.lines()) == NAMES


def test_another_service_gets_the_generic_checks(echo_server: RunningServer) -> None:
    run = smoke("python", echo_server.base)
    assert run.code == 0, run.out
    assert "echo (from initialize), 6 checks" in run.out
    assert list(run.lines()) == GENERIC
    mark, detail = run.lines()["tools_list"]
    assert mark == "PASS"
    assert re.match(r"[1-9]\d* tools", detail), detail
    assert "Smoke summary: 6/6 checks passed" in run.out
    report = run_smoke(echo_server.base)
    assert report.as_dict()["service"] == "echo"
    assert report.passed


def test_service_option_overrides_the_detection(echo_server: RunningServer) -> None:
    run = smoke("python", echo_server.base, "--service", "mahavishnu")
    assert run.code == 1
    assert "mahavishnu (from --service), 8 checks" in run.out
    assert run.failed() == {"tools_list", "list_repos", "get_all_repo_paths"}
    assert "list_repos is not among the" in run.lines()["tools_list"][1]


def test_health_names_the_service_when_mcp_does_not_answer() -> None:
    health = {"status": "healthy", "service": "echo", "version": "1.0.0", "checks": {}}

    def route(method: str, path: str, body: bytes) -> Reply:
        if path == "/health":
            return Reply(200, json.dumps(health).encode())
        return broken_mcp_routes()(method, path, body)

    with FakeHttpServer(route) as server:
        run = smoke("python", server.base)
    assert run.code == 1
    assert "echo (from /health), 6 checks" in run.out
    assert list(run.lines()) == GENERIC


def test_a_server_that_does_not_say_is_assumed_to_be_mahavishnu(auth_server: RunningServer) -> None:
    run = smoke("python", auth_server.base)  # no token: /health shows no details, /mcp says 401
    assert "mahavishnu (assumed: the server did not say; --service chooses), 8 checks" in run.out
    assert list(run.lines()) == NAMES


@pytest.fixture(scope="module")
def session_buddy_server(ops_workdir: Path) -> Iterator[RunningServer]:
    """Session-Buddy served for real, open on loopback (development: its key made in the folder)."""
    folder = ops_workdir / "session-buddy-smoke"  # not conftest's production one: another key
    folder.mkdir()
    server = spawn_session_buddy(folder, session_buddy_env(folder))
    wait_ready(server)
    yield server
    server.stop()


def test_session_buddy_gets_its_own_checks(session_buddy_server: RunningServer) -> None:
    run = smoke("python", session_buddy_server.base)
    assert run.code == 0, run.out
    assert "session-buddy (from initialize), 8 checks" in run.out
    assert list(run.lines()) == [
        "health",
        "mcp_initialize",
        "tools_list",
        "list_memories",
        "memory_stats",
        "rapid_requests",
        "health_latency",
        "unknown_method",
    ]
    assert run.lines()["memory_stats"][1].startswith("0 memories in the caller's tenant")
