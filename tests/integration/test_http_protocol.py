"""What a plain HTTP client (curl) sees at /mcp: lenient where it is safe, clear errors otherwise."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.client import call_tool, rpc
from tests.support.server import RunningServer


def test_initialize_with_empty_params_and_no_accept_header(open_server: RunningServer) -> None:
    response = rpc(open_server.url, "initialize", {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    result = response.json()["result"]
    assert result["serverInfo"]["name"] == "mahavishnu"
    assert result["protocolVersion"]
    assert "tools" in result["capabilities"]


def test_initialize_without_params_member(open_server: RunningServer) -> None:
    response = rpc(open_server.url, "initialize", None)
    assert response.status_code == 200
    assert response.json()["result"]["serverInfo"]["name"] == "mahavishnu"


def test_tools_list_without_session(open_server: RunningServer) -> None:
    response = rpc(open_server.url, "tools/list")
    assert response.status_code == 200
    tools = {t["name"]: t for t in response.json()["result"]["tools"]}
    expected = {
        "list_repos",
        "get_repo",
        "get_all_repo_paths",
        "list_roles",
        "get_repos_by_role",
        "get_health",
    }
    assert expected <= set(tools)
    for name in expected:
        assert tools[name]["description"], name
        assert tools[name]["inputSchema"]["type"] == "object"
        assert tools[name]["outputSchema"]["type"] == "object"
    limit = tools["list_repos"]["inputSchema"]["properties"]["limit"]
    assert limit["maximum"] == 200
    assert limit["minimum"] == 1


def test_unknown_method_is_method_not_found(open_server: RunningServer) -> None:
    body = rpc(open_server.url, "no/such/method", request_id=7).json()
    assert body["id"] == 7
    assert body["error"]["code"] == -32601


def test_bad_json_is_parse_error(open_server: RunningServer) -> None:
    response = httpx.post(
        open_server.url, content=b'{"jsonrpc": "2.0", "id": 1,', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700


def test_invalid_utf8_is_parse_error(open_server: RunningServer) -> None:
    response = httpx.post(
        open_server.url, content=b'{"a": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700


@pytest.mark.parametrize("params", [{"arguments": {}}, {"name": 5}, "not an object"])
def test_malformed_params_are_invalid_params(open_server: RunningServer, params: object) -> None:
    response = httpx.post(
        open_server.url,
        json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params},
        headers={"Content-Type": "application/json"},
    )
    assert response.json()["error"]["code"] == -32602


def test_tool_argument_out_of_range_is_reported_to_the_model(open_server: RunningServer) -> None:
    # MCP 2025-11-25: argument validation failures are tool errors the model can read and correct.
    result = call_tool(open_server.url, "list_repos", {"limit": 100000}).json()["result"]
    assert result["isError"] is True
    assert "limit" in result["content"][0]["text"]


def test_batch_gets_a_clear_error(open_server: RunningServer) -> None:
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]
    response = httpx.post(open_server.url, json=batch, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32600
    assert "Batch" in error["message"]


@pytest.mark.parametrize("payload", ["42", '"text"', "null", '{"jsonrpc": "2.0", "id": 1, "method": 12}'])
def test_non_request_json_is_invalid_request(open_server: RunningServer, payload: str) -> None:
    response = httpx.post(open_server.url, content=payload, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_only_post_is_served(open_server: RunningServer, method: str) -> None:
    response = httpx.request(method, open_server.url, headers={"Accept": "text/event-stream"}, timeout=5)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_oversized_body_is_413_by_declared_length(open_server: RunningServer) -> None:
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x" * (1024 * 1024)}})
    response = httpx.post(open_server.url, content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_oversized_chunked_body_is_413(open_server: RunningServer) -> None:
    def chunks():  # no Content-Length: the limit must hold while streaming
        yield b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}}'

    response = httpx.post(open_server.url, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_body_just_under_the_limit_is_served(open_server: RunningServer) -> None:
    pad = "x" * (1024 * 1024 - 200)
    response = rpc(open_server.url, "ping", {"_meta": {"pad": pad}})
    assert response.status_code == 200
    assert response.json()["result"] == {}


def test_dns_rebinding_protection_refuses_foreign_host(open_server: RunningServer) -> None:
    response = rpc(open_server.url, "ping", headers={"Host": "evil.example.com"})
    assert response.status_code in {403, 421}


def test_foreign_origin_is_refused(open_server: RunningServer) -> None:
    response = rpc(open_server.url, "ping", headers={"Origin": "http://evil.example.com"})
    assert response.status_code == 403


def test_request_id_is_echoed_and_generated(open_server: RunningServer) -> None:
    given = rpc(open_server.url, "ping", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = rpc(open_server.url, "ping")
    assert len(generated.headers["x-request-id"]) == 36
