"""Tools and resources through one observed pipeline; outcomes and codes read off the error classes;
HTTP route labels derived from the app's own routes. In process, over a tiny service of its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
import structlog
from mcp.shared.exceptions import MCPError
from mcp_types import InputRequiredResult
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs

from mahavishnu.platform import errors
from mahavishnu.platform.app import Service, build_app, build_stdio
from mahavishnu.platform.errors import (
    AuthenticationError,
    ConflictError,
    InvalidArgumentError,
    MahavishnuError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    UnavailableError,
)
from mahavishnu.platform.http import OTHER_ROUTE, McpGate, RouteLabels
from mahavishnu.platform.mcp import ResourceSpec, ToolSpec
from mahavishnu.platform.observability import Metrics
from mahavishnu.platform.ratelimit import Decision, RateLimiter
from mahavishnu.platform.settings import PlatformSettings
from tests.support.tokens import claims, hs256

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


class GoneError(NotFoundError):
    """A service's own kind of not-found: it must count as one without the platform knowing it."""


class ThrottledError(RateLimitedError):
    pass


async def fetch(name: str) -> dict[str, str]:
    """Fetch a thing."""
    if name == "gone":
        raise GoneError("that thing is gone")
    if name == "throttled":
        raise ThrottledError("slow down")
    return {"name": name}


async def read_thing(name: str) -> str:
    """A thing, as JSON."""
    if name == "missing":
        raise NotFoundError(f"no thing named {name!r}")
    if name == "crash":
        raise RuntimeError("secret internal detail /etc/passwd")
    return json.dumps({"thing": name})


async def read_vault(key: str) -> str:
    """Admin only."""
    return key


async def hook(_: Request) -> Response:
    return PlainTextResponse("ok")


def demo_service() -> Service:
    return Service(
        name="demo",
        version="1.0.0",
        instructions="demo",
        settings=PlatformSettings(auth_secret=SECRET, rate_limit_enabled=False),
        tools=[ToolSpec(fetch)],
        resources=[
            ResourceSpec("thing://{name}", read_thing, name="thing", mime_type="application/json"),
            ResourceSpec("vault://{key}", read_vault, name="vault", min_role="admin"),
        ],
        routes=[Route("/hooks/{kind}", hook, methods=["POST"]), Route("/status", hook)],
    )


@pytest.fixture
def client() -> Iterator[TestClient]:
    platform = build_app(demo_service(), Metrics(prefix="demo"))
    with TestClient(platform.app, base_url="http://127.0.0.1") as c:
        yield c


def post(client: TestClient, method: str, params: dict[str, Any], role: str = "viewer") -> Any:
    return client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 7, "method": method, "params": params},
        headers={"Authorization": f"Bearer {hs256(claims(role=role), SECRET)}"},
    )


def read(client: TestClient, uri: str, role: str = "viewer") -> Any:
    return post(client, "resources/read", {"uri": uri}, role)


def metrics(client: TestClient) -> str:
    return str(client.get("/metrics").text)


# --- the error classes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "outcome", "code", "jsonrpc_code", "http_status"),
    [
        (PlatformError, "failed", -32000, -32000, 500),
        (InvalidArgumentError, "invalid", -32602, -32602, 400),
        (NotFoundError, "not_found", -32004, -32002, 404),
        (ConflictError, "conflict", -32009, -32009, 409),
        (PermissionDeniedError, "denied", -32003, -32003, 403),
        (RateLimitedError, "rate_limited", -32029, -32029, 429),
        (UnavailableError, "unavailable", -32050, -32050, 503),
        (AuthenticationError, "denied", -32001, -32001, 401),
        (GoneError, "not_found", -32004, -32002, 404),  # a subclass inherits all of it
    ],
)
def test_each_error_class_carries_its_labels_and_codes(
    cls: type[PlatformError], outcome: str, code: int, jsonrpc_code: int, http_status: int
) -> None:
    assert (cls.outcome, cls.code, cls.jsonrpc_code, cls.http_status) == (
        outcome,
        code,
        jsonrpc_code,
        http_status,
    )


def test_the_old_name_is_the_same_class() -> None:
    assert MahavishnuError is PlatformError
    assert all(issubclass(getattr(errors, name), PlatformError) for name in errors.__all__)


# --- tools -------------------------------------------------------------------------------------


def test_a_not_found_subclass_raised_by_a_tool_counts_as_not_found(client: TestClient) -> None:
    result = post(client, "tools/call", {"name": "fetch", "arguments": {"name": "gone"}}).json()["result"]
    assert result["isError"] is True
    assert result["_meta"]["io.mahavishnu/error"] == {"code": -32004, "type": "GoneError", "retryable": False}
    assert 'demo_mcp_tool_calls_total{outcome="not_found",tool="fetch"} 1.0' in metrics(client)


def test_an_access_error_subclass_stays_a_protocol_error(client: TestClient) -> None:
    body = post(client, "tools/call", {"name": "fetch", "arguments": {"name": "throttled"}}).json()
    assert body["error"] == {"code": -32029, "message": "slow down"}
    assert 'demo_mcp_tool_calls_total{outcome="rate_limited",tool="fetch"} 1.0' in metrics(client)


# --- resources ---------------------------------------------------------------------------------


def test_a_resource_read_is_counted_and_timed_by_its_template_name(client: TestClient) -> None:
    body = read(client, "thing://lamp").json()
    assert json.loads(body["result"]["contents"][0]["text"]) == {"thing": "lamp"}
    assert body["result"]["contents"][0]["mimeType"] == "application/json"
    text = metrics(client)
    assert 'demo_mcp_tool_calls_total{outcome="ok",tool="resource:thing"} 1.0' in text
    assert 'demo_mcp_tool_duration_seconds_count{tool="resource:thing"} 1.0' in text
    assert "thing://" not in text  # never labelled by URI: one series per template


def test_a_missing_resource_answers_minus_32002_and_counts_not_found(client: TestClient) -> None:
    body = read(client, "thing://missing").json()
    assert body["id"] == 7
    assert body["error"]["code"] == -32002
    assert body["error"]["message"] == "no thing named 'missing'"
    assert 'demo_mcp_tool_calls_total{outcome="not_found",tool="resource:thing"} 1.0' in metrics(client)


def test_a_crashing_reader_answers_minus_32603_with_the_request_id_and_logs_a_traceback(
    client: TestClient,
) -> None:
    with capture_logs(processors=[structlog.processors.format_exc_info]) as logs:
        response = read(client, "thing://crash")
    error = response.json()["error"]
    request_id = response.headers["x-request-id"]
    assert error["code"] == -32603
    assert error["message"] == f"internal error (request id {request_id})"
    crash = next(entry for entry in logs if entry["event"] == "resource_crashed")
    assert crash["resource"] == "thing"
    assert crash["request_id"] == request_id
    assert "Traceback" in crash["exception"]
    assert "secret internal detail" in crash["exception"]  # in the log, never on the wire
    assert 'demo_mcp_tool_calls_total{outcome="error",tool="resource:thing"} 1.0' in metrics(client)


def test_a_resource_above_the_callers_role_is_denied(client: TestClient) -> None:
    assert read(client, "vault://k", role="viewer").json()["error"]["code"] == -32003
    assert read(client, "vault://k", role="admin").json()["result"]["contents"][0]["text"] == "k"
    text = metrics(client)
    assert 'demo_mcp_tool_calls_total{outcome="denied",tool="resource:vault"} 1.0' in text
    assert 'demo_mcp_tool_calls_total{outcome="ok",tool="resource:vault"} 1.0' in text


def test_the_resource_template_is_listed_with_its_declared_name(client: TestClient) -> None:
    templates = post(client, "resources/templates/list", {}).json()["result"]["resourceTemplates"]
    assert {(t["name"], t["uriTemplate"]) for t in templates} == {
        ("thing", "thing://{name}"),
        ("vault", "vault://{key}"),
    }
    assert next(t for t in templates if t["name"] == "thing")["description"] == "A thing, as JSON."


async def test_over_stdio_a_read_logs_its_own_line() -> None:
    server = build_stdio(demo_service(), Metrics(prefix="stdio"))
    with capture_logs() as logs:
        contents = await server.read_resource("thing://lamp")
        with pytest.raises(MCPError) as missing:
            await server.read_resource("thing://missing")
    assert not isinstance(contents, InputRequiredResult)
    assert [json.loads(str(c.content)) for c in contents] == [{"thing": "lamp"}]
    assert missing.value.code == -32002
    reads = [entry for entry in logs if entry["event"] == "resource_read"]
    assert [(r["resource"], r["outcome"], r["principal"]) for r in reads] == [
        ("thing", "ok", "local"),
        ("thing", "not_found", "local"),
    ]


# --- route labels ------------------------------------------------------------------------------


def http_requests(client: TestClient, route: str) -> list[str]:
    return [line for line in metrics(client).splitlines() if f'route="{route}"' in line and "_total{" in line]


def test_a_route_a_service_adds_gets_its_own_label(client: TestClient) -> None:
    assert client.post("/hooks/github").status_code == 200
    assert client.post("/hooks/gitlab").status_code == 200
    assert client.get("/status").status_code == 200
    assert http_requests(client, "/hooks/{kind}") == [
        'demo_http_requests_total{method="POST",route="/hooks/{kind}",status="200"} 2.0'
    ]
    assert len(http_requests(client, "/status")) == 1


def test_unknown_paths_share_one_label(client: TestClient) -> None:
    for path in ("/wp-admin", "/.env", "/hooks", "/mcp/extra"):
        assert client.get(path).status_code == 404
    assert http_requests(client, OTHER_ROUTE) == [
        'demo_http_requests_total{method="GET",route="other",status="404"} 4.0'
    ]


def test_every_platform_route_has_its_own_label(client: TestClient) -> None:
    client.get("/.well-known/oauth-protected-resource/mcp")
    client.get("/health")
    assert http_requests(client, "/.well-known/oauth-protected-resource/mcp")
    assert http_requests(client, "/health")


def test_route_labels_follow_the_routers_order() -> None:
    labels = RouteLabels(
        [
            Route("/items/{id}", hook),
            Route("/items/new", hook),  # never served: the template above takes it
            Route("/health", hook),
            Mount("/static", app=Router()),
        ]
    )
    assert labels("/items/42") == "/items/{id}"
    assert labels("/items/new") == "/items/{id}"
    assert labels("/health") == "/health"
    assert labels("/static/css/site.css") == "/static"
    assert labels("/health/") == OTHER_ROUTE
    assert labels("/nothing") == OTHER_ROUTE


# --- the gate's answers, read off the error classes --------------------------------------------


class StubLimiter:
    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    async def check(self, key: str) -> Decision:
        return self.decision


async def never_reached(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the gate should have answered")


def gate_answer(decision: Decision) -> Any:
    gate = McpGate(
        never_reached,
        streaming_app=never_reached,
        max_body_bytes=1024,
        max_json_depth=8,
        guard=None,
        verifier=None,
        limiter=cast(RateLimiter, StubLimiter(decision)),
        tool_roles={},
        metrics=Metrics(prefix="gate"),
        resource_metadata_url="http://127.0.0.1/.well-known/oauth-protected-resource",
    )
    return TestClient(gate).post("/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})


def test_over_budget_is_429_with_the_rate_limited_code() -> None:
    response = gate_answer(Decision(allowed=False, limit=60, remaining=0, reset_seconds=12))
    assert response.status_code == 429
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32029, "message": "rate limit exceeded; retry in 12 s"},
    }
    assert (response.headers["retry-after"], response.headers["ratelimit-limit"]) == ("12", "60")


def test_a_failed_rate_limit_backend_is_503_with_the_unavailable_code() -> None:
    response = gate_answer(Decision(allowed=False, backend_error=True))
    assert response.status_code == 503
    assert response.json()["error"] == {
        "code": -32050,
        "message": "rate limiting is unavailable; try again shortly",
    }
    assert response.headers["retry-after"] == "5"
