"""The smoke checks themselves, and which ones each service gets.

Every service gets the same frame: /health, `initialize`, `tools/list`, five rapid requests,
/health latency and an unknown method. A service this module knows gets its own tool checks
in place of the generic `tools/list` one (Mahavishnu: `list_repos` is offered and answers,
and so does `get_all_repo_paths`). The checks only speak HTTP and MCP, so ops import no
service: knowing a service here means knowing the names of its tools.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

__all__ = [
    "DEFAULT_SERVICE",
    "HEAD",
    "Check",
    "CheckFailed",
    "SmokeSession",
    "plan_for",
]

PROTOCOL_VERSION = "2025-06-18"
HEALTH_LATENCY_LIMIT = 2.0
RAPID_REQUESTS = 5
REQUEST_TIMEOUT = 3.0
METHOD_NOT_FOUND = -32601
_SNIPPET = 300


class CheckFailed(Exception):
    """One check's failure, with the one-line reason shown to the operator."""


class SmokeSession:
    """One httpx client, the remaining time budget, the transcript of the current check, and
    what the server said about itself (which service it is)."""

    def __init__(self, base_url: str, token: str | None, budget: float, client: httpx.Client) -> None:
        self.base_url = base_url
        self.token = token
        self.deadline = time.monotonic() + budget
        self.client = client
        self.protocol_version: str | None = None
        self.server_name: str | None = None
        """serverInfo.name from `initialize`: the service's name on the platform."""
        self.health_service: str | None = None
        """/health's `service` field (shown to a caller with a token, or on an open server)."""
        self.transcript: list[str] = []
        self._next_id = 0

    def timeout(self, cap: float = REQUEST_TIMEOUT) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0.05:
            raise CheckFailed("time budget for the whole run is used up")
        return min(cap, remaining)

    def get(self, path: str, cap: float = REQUEST_TIMEOUT) -> httpx.Response:
        """GET with the token when there is one: /health shows its details only to a caller with one."""
        url = self.base_url + path
        self.transcript.append(f"GET {url}")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self.client.get(url, headers=headers, timeout=self.timeout(cap))
        except httpx.TimeoutException:
            raise CheckFailed(f"no answer from GET {path} within {cap:g} s") from None
        except httpx.HTTPError as exc:
            raise CheckFailed(f"GET {path} failed: {_describe(exc)}") from None
        self._record(response)
        return response

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one JSON-RPC request to /mcp; return the decoded JSON-RPC response object."""
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.protocol_version:
            headers["MCP-Protocol-Version"] = self.protocol_version
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        url = self.base_url + "/mcp"
        self.transcript.append(f"POST {url} {json.dumps(message, separators=(',', ':'))}")
        try:
            response = self.client.post(url, json=message, headers=headers, timeout=self.timeout())
        except httpx.TimeoutException:
            raise CheckFailed(f"no answer to {method} within {REQUEST_TIMEOUT:g} s") from None
        except httpx.HTTPError as exc:
            raise CheckFailed(f"{method} failed: {_describe(exc)}") from None
        self._record(response)
        return _jsonrpc_body(method, response)

    def _record(self, response: httpx.Response) -> None:
        body = response.text
        if len(body) > _SNIPPET:
            body = body[:_SNIPPET] + f"... ({len(response.text)} chars)"
        self.transcript.append(f"  -> HTTP {response.status_code} {body}")


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _snippet(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _jsonrpc_body(method: str, response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 401:
        raise CheckFailed(f"{method}: HTTP 401 Unauthorized (the server wants a bearer token: pass --token)")
    if response.status_code == 403:
        raise CheckFailed(f"{method}: HTTP 403 Forbidden (the token's role may not do this)")
    if response.status_code == 429:
        raise CheckFailed(f"{method}: HTTP 429 Too Many Requests (rate limited)")
    content_type = response.headers.get("content-type", "")
    text = response.text
    if content_type.startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        text = data[-1] if data else ""
    try:
        body = json.loads(text)
    except ValueError:
        shown = _snippet(response.text) or "(empty body)"
        raise CheckFailed(f"{method}: HTTP {response.status_code}, not JSON-RPC: {shown}") from None
    if (
        not isinstance(body, dict)
        or body.get("jsonrpc") != "2.0"
        or ("result" not in body and "error" not in body)
    ):
        raise CheckFailed(f"{method}: HTTP {response.status_code}, not JSON-RPC: {_snippet(text)}")
    return body


def _result(method: str, body: dict[str, Any]) -> dict[str, Any]:
    if "error" in body:
        error = body["error"] if isinstance(body["error"], dict) else {}
        raise CheckFailed(
            f"{method}: JSON-RPC error {error.get('code')}: {_snippet(str(error.get('message')))}"
        )
    result = body.get("result")
    if not isinstance(result, dict):
        raise CheckFailed(f"{method}: the result is not an object")
    return result


def _tool_result(session: SmokeSession, tool: str) -> dict[str, Any]:
    result = _result(f"tools/call {tool}", session.rpc("tools/call", {"name": tool, "arguments": {}}))
    if result.get("isError"):
        content = result.get("content") or [{}]
        text = content[0].get("text", "") if isinstance(content[0], dict) else ""
        raise CheckFailed(f"{tool} returned an error: {_snippet(str(text))}")
    structured = result.get("structuredContent")
    return structured if isinstance(structured, dict) else {}


def check_health(session: SmokeSession) -> str:
    response = session.get("/health")
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"HTTP {response.status_code}, not JSON: {_snippet(response.text)}") from None
    status = body.get("status") if isinstance(body, dict) else None
    if response.status_code != 200 or status not in {"healthy", "degraded"}:
        raise CheckFailed(f"HTTP {response.status_code}, status {status!r}")
    version = body.get("version", "?")
    if isinstance(body.get("service"), str):
        session.health_service = body["service"]
    return f"{status}, version {version}"


def check_initialize(session: SmokeSession) -> str:
    params = {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mahavishnu-smoke", "version": "1"},
    }
    result = _result("initialize", session.rpc("initialize", params))
    info = result.get("serverInfo")
    version = result.get("protocolVersion")
    if not isinstance(info, dict) or not info.get("name") or not isinstance(version, str):
        raise CheckFailed("initialize: the result has no serverInfo or protocolVersion")
    session.protocol_version = version
    session.server_name = str(info["name"])
    return f"{info['name']} {info.get('version', '?')}, protocol {version}"


def _tool_names(session: SmokeSession) -> set[object]:
    result = _result("tools/list", session.rpc("tools/list"))
    tools = result.get("tools")
    if not isinstance(tools, list):
        raise CheckFailed("tools/list: the result has no tools list")
    return {t.get("name") for t in tools if isinstance(t, dict)}


def _tools_including(tool: str) -> Callable[[SmokeSession], str]:
    """A check that tools/list answers and names `tool` (the service's own signature tool)."""

    def check(session: SmokeSession) -> str:
        names = _tool_names(session)
        if tool not in names:
            raise CheckFailed(f"{tool} is not among the {len(names)} tools")
        return f"{len(names)} tools"

    return check


def check_any_tools(session: SmokeSession) -> str:
    """Any service's tools/list: a list, with at least one tool (a service offers some)."""
    names = _tool_names(session)
    if not names:
        raise CheckFailed("tools/list: the server offers no tools")
    return f"{len(names)} tools"


def _listing(session: SmokeSession, tool: str, key: str) -> tuple[list[Any], dict[str, Any]]:
    """A listing tool's structured result must hold its list under `key`."""
    data = _tool_result(session, tool)
    items = data.get(key)
    if not isinstance(items, list):
        raise CheckFailed(f"{tool}: no {key} list in the structured result")
    return items, data


def check_list_repos(session: SmokeSession) -> str:
    repos, data = _listing(session, "list_repos", "repos")
    return f"{len(repos)} repos (total {data.get('total', len(repos))})"


def check_repo_paths(session: SmokeSession) -> str:
    paths, _ = _listing(session, "get_all_repo_paths", "paths")
    return f"{len(paths)} paths"


def check_list_memories(session: SmokeSession) -> str:
    memories, data = _listing(session, "list_memories", "memories")
    return f"{len(memories)} memories on the first page (total {data.get('total', len(memories))})"


def check_memory_stats(session: SmokeSession) -> str:
    data = _tool_result(session, "memory_stats")
    if not isinstance(data.get("total"), int) or not isinstance(data.get("by_kind"), dict):
        raise CheckFailed("memory_stats: no total and by_kind in the structured result")
    return f"{data['total']} memories in the caller's tenant"


def check_rapid(session: SmokeSession) -> str:
    for i in range(1, RAPID_REQUESTS + 1):
        try:
            _result("ping", session.rpc("ping"))
        except CheckFailed as exc:
            raise CheckFailed(f"request {i}/{RAPID_REQUESTS}: {exc}") from None
    return f"{RAPID_REQUESTS}/{RAPID_REQUESTS} succeeded"


def check_health_latency(session: SmokeSession) -> str:
    started = time.perf_counter()
    response = session.get("/health", cap=HEALTH_LATENCY_LIMIT)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise CheckFailed(f"HTTP {response.status_code} in {elapsed * 1000:.0f} ms")
    if elapsed >= HEALTH_LATENCY_LIMIT:
        raise CheckFailed(f"{elapsed * 1000:.0f} ms (limit {HEALTH_LATENCY_LIMIT * 1000:.0f} ms)")
    return f"{elapsed * 1000:.0f} ms"


def check_unknown_method(session: SmokeSession) -> str:
    body = session.rpc("mahavishnu/no-such-method")
    error = body.get("error")
    if not isinstance(error, dict):
        raise CheckFailed("the unknown method got a result instead of an error")
    if error.get("code") != METHOD_NOT_FOUND:
        raise CheckFailed(f"error code {error.get('code')}, expected {METHOD_NOT_FOUND}")
    return f"error {METHOD_NOT_FOUND} ({_snippet(str(error.get('message')), 40)})"


Check = tuple[str, str, Callable[[SmokeSession], str]]
"""(name, title, function): the function returns the detail shown, or raises CheckFailed."""

HEAD: tuple[Check, ...] = (
    ("health", "Health endpoint", check_health),
    ("mcp_initialize", "MCP initialize", check_initialize),
)
"""Run first, for every service: their answers say which service this is."""
_TAIL: tuple[Check, ...] = (
    ("rapid_requests", f"{RAPID_REQUESTS} rapid requests", check_rapid),
    ("health_latency", f"Health answers in under {HEALTH_LATENCY_LIMIT:g} s", check_health_latency),
    ("unknown_method", f"Unknown method gets {METHOD_NOT_FOUND}", check_unknown_method),
)
DEFAULT_SERVICE = "mahavishnu"
"""Assumed when the server does not say (its /mcp refused us and /health showed no details)."""
_PLANS: dict[str, tuple[Check, ...]] = {
    "mahavishnu": (
        *HEAD,
        ("tools_list", "tools/list contains list_repos", _tools_including("list_repos")),
        ("list_repos", "list_repos call", check_list_repos),
        ("get_all_repo_paths", "get_all_repo_paths call", check_repo_paths),
        *_TAIL,
    ),
    "session-buddy": (
        *HEAD,
        ("tools_list", "tools/list contains search_memories", _tools_including("search_memories")),
        ("list_memories", "list_memories call", check_list_memories),
        ("memory_stats", "memory_stats call", check_memory_stats),
        *_TAIL,
    ),
}
_GENERIC: tuple[Check, ...] = (*HEAD, ("tools_list", "tools/list answers", check_any_tools), *_TAIL)


def plan_for(service: str) -> tuple[Check, ...]:
    """The checks for `service`: its own when this module knows it, else the generic set."""
    return _PLANS.get(service, _GENERIC)
