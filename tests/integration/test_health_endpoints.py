from __future__ import annotations

import httpx

from tests.support.client import call_tool
from tests.support.server import RunningServer


def test_health_reports_version_uptime_and_components(open_server: RunningServer) -> None:
    response = httpx.get(f"{open_server.base}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"]
    assert body["uptime_seconds"] > 0
    assert body["checks"]["manifest"]["status"] == "ok"
    assert body["checks"]["manifest"]["data"]["repos"] == 5
    assert body["checks"]["rate_limit"]["data"]["backend"] == "memory"


def test_ready(open_server: RunningServer) -> None:
    response = httpx.get(f"{open_server.base}/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_get_health_tool_matches_endpoint(open_server: RunningServer) -> None:
    result = call_tool(open_server.url, "get_health").json()["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["status"] == "healthy"
    assert set(result["structuredContent"]["checks"]) == {"manifest", "database", "rate_limit"}


def test_metrics_exposes_the_documented_names(open_server: RunningServer) -> None:
    call_tool(open_server.url, "list_repos")
    text = httpx.get(f"{open_server.base}/metrics").text
    for name in (
        "mahavishnu_http_requests_total",
        "mahavishnu_http_request_duration_seconds_bucket",
        'mahavishnu_mcp_tool_calls_total{outcome="ok",tool="list_repos"}',
        'mahavishnu_mcp_tool_duration_seconds_count{tool="list_repos"}',
        "mahavishnu_rate_limited_total",
        "mahavishnu_auth_failures_total",
        "mahavishnu_manifest_repos 5.0",
        "process_resident_memory_bytes",
    ):
        assert name in text, name


def test_protected_resource_metadata(open_server: RunningServer) -> None:
    body = httpx.get(f"{open_server.base}/.well-known/oauth-protected-resource").json()
    assert body["resource"].endswith("/mcp")
    assert body["bearer_methods_supported"] == ["header"]
