"""The deployment guide's 8 smoke checks, run against a live server over plain HTTP.

    1. health              GET /health answers 200 with status healthy or degraded
    2. mcp_initialize      JSON-RPC `initialize` returns serverInfo and a protocol version
    3. tools_list          `tools/list` contains `list_repos`
    4. list_repos          `tools/call list_repos` succeeds
    5. get_all_repo_paths  `tools/call get_all_repo_paths` succeeds
    6. rapid_requests      5 requests in a row all succeed (no 429, no 5xx)
    7. health_latency      /health answers in under 2 s
    8. unknown_method      an unknown method gets JSON-RPC error -32601

The whole run is bounded: every request has a timeout taken from one overall
budget (9 s by default), so a hung server fails the run instead of stalling it.
`scripts/smoke_tests.sh` runs the same checks with bash and curl only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "CHECKS",
    "CheckResult",
    "SmokeReport",
    "check_names",
    "normalize_base_url",
    "render_report",
    "run_smoke",
]

PROTOCOL_VERSION = "2025-06-18"
HEALTH_LATENCY_LIMIT = 2.0
RAPID_REQUESTS = 5
DEFAULT_BUDGET = 9.0
REQUEST_TIMEOUT = 3.0
METHOD_NOT_FOUND = -32601
_SNIPPET = 300

CHECKS: tuple[tuple[str, str], ...] = (
    ("health", "Health endpoint"),
    ("mcp_initialize", "MCP initialize"),
    ("tools_list", "tools/list contains list_repos"),
    ("list_repos", "list_repos call"),
    ("get_all_repo_paths", "get_all_repo_paths call"),
    ("rapid_requests", f"{RAPID_REQUESTS} rapid requests"),
    ("health_latency", f"Health answers in under {HEALTH_LATENCY_LIMIT:g} s"),
    ("unknown_method", f"Unknown method gets {METHOD_NOT_FOUND}"),
)


class CheckFailed(Exception):
    """One check's failure, with the one-line reason shown to the operator."""


@dataclass
class CheckResult:
    name: str
    title: str
    passed: bool
    detail: str
    elapsed_ms: float
    transcript: list[str] = field(default_factory=list)
    """Requests and (truncated) responses, shown with -v; never contains the token."""


@dataclass
class SmokeReport:
    base_url: str
    results: list[CheckResult]
    elapsed_seconds: float

    @property
    def passed(self) -> bool:
        return len(self.results) == len(CHECKS) and all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.base_url,
            "passed": self.passed,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "checks": [
                {"name": r.name, "passed": r.passed, "detail": r.detail, "elapsed_ms": round(r.elapsed_ms, 1)}
                for r in self.results
            ],
        }


def normalize_base_url(url: str) -> str:
    """Accept `http://host:8680`, `http://host:8680/` or `http://host:8680/mcp`; return the base."""
    url = url.strip()
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    url = url.rstrip("/")
    if url.endswith("/mcp"):
        url = url[: -len("/mcp")]
    return url


class _Session:
    """One httpx client, the remaining time budget, and the transcript of the current check."""

    def __init__(self, base_url: str, token: str | None, budget: float, client: httpx.Client) -> None:
        self.base_url = base_url
        self.token = token
        self.deadline = time.monotonic() + budget
        self.client = client
        self.protocol_version: str | None = None
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


def _tool_result(session: _Session, tool: str) -> dict[str, Any]:
    result = _result(f"tools/call {tool}", session.rpc("tools/call", {"name": tool, "arguments": {}}))
    if result.get("isError"):
        content = result.get("content") or [{}]
        text = content[0].get("text", "") if isinstance(content[0], dict) else ""
        raise CheckFailed(f"{tool} returned an error: {_snippet(str(text))}")
    structured = result.get("structuredContent")
    return structured if isinstance(structured, dict) else {}


# --- the checks -------------------------------------------------------------


def check_health(session: _Session) -> str:
    response = session.get("/health")
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"HTTP {response.status_code}, not JSON: {_snippet(response.text)}") from None
    status = body.get("status") if isinstance(body, dict) else None
    if response.status_code != 200 or status not in {"healthy", "degraded"}:
        raise CheckFailed(f"HTTP {response.status_code}, status {status!r}")
    version = body.get("version", "?")
    return f"{status}, version {version}"


def check_initialize(session: _Session) -> str:
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
    return f"{info['name']} {info.get('version', '?')}, protocol {version}"


def check_tools_list(session: _Session) -> str:
    result = _result("tools/list", session.rpc("tools/list"))
    tools = result.get("tools")
    if not isinstance(tools, list):
        raise CheckFailed("tools/list: the result has no tools list")
    names = {t.get("name") for t in tools if isinstance(t, dict)}
    if "list_repos" not in names:
        raise CheckFailed(f"list_repos is not among the {len(names)} tools")
    return f"{len(names)} tools"


def check_list_repos(session: _Session) -> str:
    data = _tool_result(session, "list_repos")
    repos = data.get("repos")
    if not isinstance(repos, list):
        raise CheckFailed("list_repos: no repos list in the structured result")
    return f"{len(repos)} repos (total {data.get('total', len(repos))})"


def check_repo_paths(session: _Session) -> str:
    data = _tool_result(session, "get_all_repo_paths")
    paths = data.get("paths")
    if not isinstance(paths, list):
        raise CheckFailed("get_all_repo_paths: no paths list in the structured result")
    return f"{len(paths)} paths"


def check_rapid(session: _Session) -> str:
    for i in range(1, RAPID_REQUESTS + 1):
        try:
            _result("ping", session.rpc("ping"))
        except CheckFailed as exc:
            raise CheckFailed(f"request {i}/{RAPID_REQUESTS}: {exc}") from None
    return f"{RAPID_REQUESTS}/{RAPID_REQUESTS} succeeded"


def check_health_latency(session: _Session) -> str:
    started = time.perf_counter()
    response = session.get("/health", cap=HEALTH_LATENCY_LIMIT)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise CheckFailed(f"HTTP {response.status_code} in {elapsed * 1000:.0f} ms")
    if elapsed >= HEALTH_LATENCY_LIMIT:
        raise CheckFailed(f"{elapsed * 1000:.0f} ms (limit {HEALTH_LATENCY_LIMIT * 1000:.0f} ms)")
    return f"{elapsed * 1000:.0f} ms"


def check_unknown_method(session: _Session) -> str:
    body = session.rpc("mahavishnu/no-such-method")
    error = body.get("error")
    if not isinstance(error, dict):
        raise CheckFailed("the unknown method got a result instead of an error")
    if error.get("code") != METHOD_NOT_FOUND:
        raise CheckFailed(f"error code {error.get('code')}, expected {METHOD_NOT_FOUND}")
    return f"error {METHOD_NOT_FOUND} ({_snippet(str(error.get('message')), 40)})"


_FUNCTIONS: dict[str, Callable[[_Session], str]] = {
    "health": check_health,
    "mcp_initialize": check_initialize,
    "tools_list": check_tools_list,
    "list_repos": check_list_repos,
    "get_all_repo_paths": check_repo_paths,
    "rapid_requests": check_rapid,
    "health_latency": check_health_latency,
    "unknown_method": check_unknown_method,
}


def run_smoke(
    url: str,
    token: str | None = None,
    *,
    budget: float = DEFAULT_BUDGET,
    on_result: Callable[[CheckResult], None] | None = None,
    client: httpx.Client | None = None,
) -> SmokeReport:
    """Run all 8 checks in order (a failed check does not stop the others) within `budget` seconds."""
    base = normalize_base_url(url)
    started = time.monotonic()
    own_client = client is None
    http = client or httpx.Client(follow_redirects=False)
    session = _Session(base, token, budget, http)
    results: list[CheckResult] = []
    try:
        for name, title in CHECKS:
            session.transcript = []
            check_started = time.perf_counter()
            try:
                detail, passed = _FUNCTIONS[name](session), True
            except CheckFailed as exc:
                detail, passed = str(exc), False
            result = CheckResult(
                name,
                title,
                passed,
                detail,
                (time.perf_counter() - check_started) * 1000,
                session.transcript,
            )
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        if own_client:
            http.close()
    return SmokeReport(base, results, time.monotonic() - started)


# --- output ------------------------------------------------------------------

_GREEN, _RED, _BOLD, _DIM, _RESET = "\033[32m", "\033[31m", "\033[1m", "\033[2m", "\033[0m"


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


def render_result(result: CheckResult, index: int, *, verbose: bool, color: bool) -> list[str]:
    """The line(s) for one check: `[3/8] tools_list  PASS  22 tools (4 ms)`."""
    mark = _paint("PASS", _GREEN, color) if result.passed else _paint("FAIL", _RED + _BOLD, color)
    lines = [
        f"[{index}/{len(CHECKS)}] {result.name:<20} {mark}  {result.detail} ({result.elapsed_ms:.0f} ms)"
    ]
    if verbose:
        lines += [_paint(f"      {line}", _DIM, color) for line in result.transcript]
    return lines


def render_summary(report: SmokeReport, *, color: bool) -> list[str]:
    passed = sum(r.passed for r in report.results)
    total = len(CHECKS)
    line = f"Smoke summary: {passed}/{total} checks passed in {report.elapsed_seconds:.2f} s"
    if report.passed:
        return [line, _paint("All smoke tests PASSED", _GREEN + _BOLD, color)]
    return [
        f"{line}; failed: {', '.join(report.failed)}",
        _paint("Smoke tests FAILED", _RED + _BOLD, color),
    ]


def render_report(report: SmokeReport, *, verbose: bool = False, color: bool = False) -> list[str]:
    lines = [f"Smoke tests against {report.base_url}"]
    for index, result in enumerate(report.results, start=1):
        lines += render_result(result, index, verbose=verbose, color=color)
    return [*lines, *render_summary(report, color=color)]


def check_names() -> Sequence[str]:
    return [name for name, _ in CHECKS]
