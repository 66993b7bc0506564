"""The platform pipeline around a tiny service of its own, in process (Starlette's TestClient).

This checks the platform without Mahavishnu's tools: role gates answered with
HTTP 403, health roll-up to 503 when a critical component is down, and error
mapping of tool exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from mahavishnu.platform.app import Service, build_app
from mahavishnu.platform.errors import NotFoundError
from mahavishnu.platform.health import ComponentHealth, HealthCheck
from mahavishnu.platform.mcp import ToolSpec
from mahavishnu.platform.observability import Metrics
from mahavishnu.platform.settings import PlatformSettings
from tests.support.tokens import claims, hs256

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


async def admin_reset() -> dict[str, bool]:
    """Reset everything (admin only)."""
    return {"reset": True}


async def lookup(name: str) -> dict[str, str]:
    """Look something up."""
    if name == "missing":
        raise NotFoundError("no such thing")
    if name == "crash":
        raise RuntimeError("secret internal detail /etc/passwd")
    return {"name": name}


def make_client(*, database_up: bool = True) -> TestClient:
    settings = PlatformSettings(auth_secret=SECRET, rate_limit_enabled=False)

    async def database() -> ComponentHealth:
        return ComponentHealth("ok") if database_up else ComponentHealth("down", "connection refused")

    async def cache() -> ComponentHealth:
        return ComponentHealth("degraded", "slow")

    service = Service(
        name="demo",
        version="1.2.3",
        instructions="demo",
        settings=settings,
        tools=[ToolSpec(admin_reset, min_role="admin", read_only=False), ToolSpec(lookup)],
        health_checks=[HealthCheck("database", database, critical=True), HealthCheck("cache", cache)],
    )
    return TestClient(build_app(service, Metrics(prefix="demo")).app, base_url="http://127.0.0.1")


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_client() as c:
        yield c


def call(client: TestClient, tool: str, args: dict[str, object], role: str = "viewer") -> object:
    return client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}},
        headers={"Authorization": f"Bearer {hs256(claims(role=role), SECRET)}"},
    )


def test_tool_needing_a_higher_role_is_403_with_scope_challenge(client: TestClient) -> None:
    response = call(client, "admin_reset", {}, role="operator")
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]  # type: ignore[attr-defined]
    assert 'scope="admin"' in response.headers["www-authenticate"]  # type: ignore[attr-defined]
    assert response.json()["error"]["code"] == -32003  # type: ignore[attr-defined]


def test_tool_with_enough_role_runs(client: TestClient) -> None:
    response = call(client, "admin_reset", {}, role="admin")
    assert response.json()["result"]["structuredContent"] == {"reset": True}  # type: ignore[attr-defined]


def test_domain_errors_become_tool_errors_with_their_code(client: TestClient) -> None:
    result = call(client, "lookup", {"name": "missing"}).json()["result"]  # type: ignore[attr-defined]
    assert result["isError"] is True
    assert result["content"][0]["text"] == "no such thing"
    assert result["_meta"]["io.mahavishnu/error"]["code"] == -32004
    assert result["_meta"]["io.mahavishnu/error"]["type"] == "NotFoundError"


def test_unexpected_errors_hide_their_detail(client: TestClient) -> None:
    response = call(client, "lookup", {"name": "crash"})
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == -32603
    assert "/etc/passwd" not in error["message"]
    assert response.headers["x-request-id"] in error["message"]  # type: ignore[attr-defined]


def test_tool_outcomes_are_counted(client: TestClient) -> None:
    call(client, "lookup", {"name": "x"})
    call(client, "lookup", {"name": "missing"})
    call(client, "lookup", {"name": "crash"})
    text = client.get("/metrics").text
    assert 'demo_mcp_tool_calls_total{outcome="ok",tool="lookup"} 1.0' in text
    assert 'demo_mcp_tool_calls_total{outcome="not_found",tool="lookup"} 1.0' in text
    assert 'demo_mcp_tool_calls_total{outcome="error",tool="lookup"} 1.0' in text


def bearer(role: str = "viewer") -> dict[str, str]:
    return {"Authorization": f"Bearer {hs256(claims(role=role), SECRET)}"}


def test_degraded_component_gives_degraded_200(client: TestClient) -> None:
    response = client.get("/health", headers=bearer())
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["version"] == "1.2.3"
    assert body["checks"]["cache"] == {"status": "degraded", "detail": "slow", "data": {}}


def test_health_without_a_token_names_components_and_their_status_only(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": {"status": "ok"}, "cache": {"status": "degraded"}},
    }


def test_critical_component_down_gives_unhealthy_503() -> None:
    with make_client(database_up=False) as client:
        health = client.get("/health", headers=bearer())
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert health.json()["checks"]["database"]["detail"] == "connection refused"
        assert client.get("/health").status_code == 503  # the public summary keeps the status code
        assert client.get("/ready").status_code == 503
