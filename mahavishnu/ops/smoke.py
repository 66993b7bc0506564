"""The deployment guide's smoke checks, run against a live server over plain HTTP.

The server says which service it is (`initialize`'s serverInfo name, else /health's
`service`), and gets that service's checks (`smoke_checks`). Mahavishnu's 8:

    1. health              GET /health answers 200 with status healthy or degraded
    2. mcp_initialize      JSON-RPC `initialize` returns serverInfo and a protocol version
    3. tools_list          `tools/list` contains `list_repos`
    4. list_repos          `tools/call list_repos` succeeds
    5. get_all_repo_paths  `tools/call get_all_repo_paths` succeeds
    6. rapid_requests      5 requests in a row all succeed (no 429, no 5xx)
    7. health_latency      /health answers in under 2 s
    8. unknown_method      an unknown method gets JSON-RPC error -32601

Any other service gets 1, 2, a `tools/list` that offers at least one tool, and 6 to 8.

The whole run is bounded: every request has a timeout taken from one overall
budget (9 s by default), so a hung server fails the run instead of stalling it.
`scripts/smoke_tests.sh` runs Mahavishnu's checks with bash and curl only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from mahavishnu.ops.smoke_checks import (
    DEFAULT_SERVICE,
    HEAD,
    Check,
    CheckFailed,
    SmokeSession,
    plan_for,
)

__all__ = [
    "CHECKS",
    "CheckResult",
    "Detected",
    "SmokeReport",
    "check_names",
    "normalize_base_url",
    "render_plan",
    "render_report",
    "render_result",
    "render_summary",
    "run_smoke",
]

DEFAULT_BUDGET = 9.0

CHECKS: tuple[tuple[str, str], ...] = tuple((name, title) for name, title, _ in plan_for("mahavishnu"))
"""Mahavishnu's checks, (name, title), in order."""


@dataclass(frozen=True)
class Detected:
    service: str
    source: str
    """How it was told: "initialize", "/health", "--service", or "assumed"."""
    checks: int


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
    detected: Detected

    @property
    def passed(self) -> bool:
        return len(self.results) == self.detected.checks and all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.base_url,
            "service": self.detected.service,
            "service_from": self.detected.source,
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


def run_smoke(
    url: str,
    token: str | None = None,
    *,
    budget: float = DEFAULT_BUDGET,
    service: str | None = None,
    on_plan: Callable[[Detected], None] | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
    client: httpx.Client | None = None,
) -> SmokeReport:
    """Run the answering service's checks in order (a failed check does not stop the others)
    within `budget` seconds. `service` skips the detection; `on_plan` hears the verdict before
    the first `on_result`."""
    base = normalize_base_url(url)
    started = time.monotonic()
    own_client = client is None
    http = client or httpx.Client(follow_redirects=False)
    session = SmokeSession(base, token, budget, http)
    results: list[CheckResult] = []

    def done(result: CheckResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    try:
        head = [_run_check(session, check) for check in HEAD]  # shown once the plan is known
        detected = _detect(session, service)
        if on_plan is not None:
            on_plan(detected)
        for result in head:
            done(result)
        for check in plan_for(detected.service)[len(HEAD) :]:
            done(_run_check(session, check))
    finally:
        if own_client:
            http.close()
    return SmokeReport(base, results, time.monotonic() - started, detected)


def _detect(session: SmokeSession, forced: str | None) -> Detected:
    """Which service answered: as told, else as it said (initialize first), else the default."""
    for name, source in (
        (forced, "--service"),
        (session.server_name, "initialize"),
        (session.health_service, "/health"),
    ):
        if name:
            return Detected(name, source, len(plan_for(name)))
    return Detected(DEFAULT_SERVICE, "assumed", len(plan_for(DEFAULT_SERVICE)))


def _run_check(session: SmokeSession, check: Check) -> CheckResult:
    name, title, function = check
    session.transcript = []
    check_started = time.perf_counter()
    try:
        detail, passed = function(session), True
    except CheckFailed as exc:
        detail, passed = str(exc), False
    elapsed_ms = (time.perf_counter() - check_started) * 1000
    return CheckResult(name, title, passed, detail, elapsed_ms, session.transcript)


# --- output ------------------------------------------------------------------

_GREEN, _RED, _BOLD, _DIM, _RESET = "\033[32m", "\033[31m", "\033[1m", "\033[2m", "\033[0m"


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


def render_plan(base_url: str, detected: Detected) -> str:
    """`Smoke tests against URL: mahavishnu (from initialize), 8 checks`."""
    told = (
        "assumed: the server did not say; --service chooses"
        if detected.source == "assumed"
        else f"from {detected.source}"
    )
    service = f"{detected.service} ({told})"
    return f"Smoke tests against {base_url}: {service}, {detected.checks} checks"


def render_result(result: CheckResult, index: int, total: int, *, verbose: bool, color: bool) -> list[str]:
    """The line(s) for one check: `[3/8] tools_list  PASS  22 tools (4 ms)`."""
    mark = _paint("PASS", _GREEN, color) if result.passed else _paint("FAIL", _RED + _BOLD, color)
    lines = [f"[{index}/{total}] {result.name:<20} {mark}  {result.detail} ({result.elapsed_ms:.0f} ms)"]
    if verbose:
        lines += [_paint(f"      {line}", _DIM, color) for line in result.transcript]
    return lines


def render_summary(report: SmokeReport, *, color: bool) -> list[str]:
    passed = sum(r.passed for r in report.results)
    total = report.detected.checks
    line = f"Smoke summary: {passed}/{total} checks passed in {report.elapsed_seconds:.2f} s"
    if report.passed:
        return [line, _paint("All smoke tests PASSED", _GREEN + _BOLD, color)]
    return [
        f"{line}; failed: {', '.join(report.failed)}",
        _paint("Smoke tests FAILED", _RED + _BOLD, color),
    ]


def render_report(report: SmokeReport, *, verbose: bool = False, color: bool = False) -> list[str]:
    lines = [render_plan(report.base_url, report.detected)]
    for index, result in enumerate(report.results, start=1):
        lines += render_result(result, index, report.detected.checks, verbose=verbose, color=color)
    return [*lines, *render_summary(report, color=color)]


def check_names() -> Sequence[str]:
    return [name for name, _ in CHECKS]
