from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.client import call_tool
from tests.support.server import SECRET, RunningServer, base_env, start_server
from tests.support.tokens import claims, hs256

PUBLIC_SUMMARY = {
    "status": "healthy",
    "checks": {
        "manifest": {"status": "ok"},
        "database": {"status": "ok"},
        "engine": {"status": "ok"},
        "rate_limit": {"status": "ok"},
    },
}


@pytest.fixture(scope="module")
def auth_server(workdir: Path, manifest: Path) -> Iterator[RunningServer]:
    server = start_server(workdir, base_env(workdir, manifest, {"MAHAVISHNU_AUTH_SECRET": SECRET}))
    yield server
    server.stop()


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
    assert set(result["structuredContent"]["checks"]) == {"manifest", "database", "engine", "rate_limit"}
    assert result["structuredContent"]["checks"]["engine"]["data"] == {"engine": "local"}


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


@pytest.mark.parametrize("authorization", [None, "Bearer not.a.jwt", "Basic dXNlcjpwYXNz"])
def test_health_without_a_valid_token_shows_component_status_only(
    auth_server: RunningServer, workdir: Path, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.get(f"{auth_server.base}/health", headers=headers)
    assert response.status_code == 200
    assert response.json() == PUBLIC_SUMMARY
    assert str(workdir) not in response.text  # no manifest path, allowed roots or offending paths


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_health_with_a_valid_token_shows_the_details(
    auth_server: RunningServer, manifest: Path, role: str
) -> None:
    token = hs256(claims(sub="prober", role=role))
    body = httpx.get(f"{auth_server.base}/health", headers={"Authorization": f"Bearer {token}"}).json()
    assert body["version"]
    assert body["checks"]["manifest"]["data"]["path"] == str(manifest)


def test_ready_and_the_health_tool_with_auth_on(auth_server: RunningServer, manifest: Path) -> None:
    assert httpx.get(f"{auth_server.base}/ready").json() == {"status": "ready"}
    result = call_tool(auth_server.url, "get_health", token=hs256(claims())).json()["result"]
    assert result["structuredContent"]["checks"]["manifest"]["data"]["path"] == str(manifest)
    assert call_tool(auth_server.url, "get_health").status_code == 401


def test_health_details_can_be_made_public(workdir: Path, manifest: Path) -> None:
    env = base_env(
        workdir, manifest, {"MAHAVISHNU_AUTH_SECRET": SECRET, "MAHAVISHNU_HEALTH_DETAILS_PUBLIC": "true"}
    )
    server = start_server(workdir, env)
    try:
        body = httpx.get(f"{server.base}/health").json()
        assert body["checks"]["manifest"]["data"]["path"] == str(manifest)
    finally:
        server.stop()
