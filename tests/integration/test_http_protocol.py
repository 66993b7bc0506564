"""What a plain HTTP client (curl) sees at /mcp: lenient where it is safe, clear errors otherwise."""

from __future__ import annotations

import json

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.client import call_tool, mcp_client, rpc
from tests.support.server import RunningServer


def post(server: RunningServer, message: object, accept: str | None = None) -> httpx.Response:
    """One raw message, exactly as given (the `rpc` helper would build a well-formed one)."""
    headers = {"Content-Type": "application/json", **({"Accept": accept} if accept else {})}
    return httpx.post(server.url, content=json.dumps(message), headers=headers, timeout=10)


def deep_params(depth: int) -> bytes:
    """A real tools/call whose arguments nest `depth` levels deep."""
    head = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_repos","arguments":{"q":'
    return head + b"[" * depth + b"]" * depth + b"}}}"


def assert_no_traceback(server: RunningServer) -> None:
    log = server.log_path.read_text()
    assert "Traceback" not in log
    assert "RecursionError" not in log


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


@pytest.mark.parametrize("params", [{"arguments": {}}, {"name": 5}, [1, 2]])
def test_malformed_params_are_invalid_params(open_server: RunningServer, params: object) -> None:
    response = post(open_server, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params})
    assert response.json()["error"]["code"] == -32602


def test_tool_argument_out_of_range_is_reported_to_the_model(open_server: RunningServer) -> None:
    # MCP 2025-11-25: argument validation failures are tool errors the model can read and correct.
    result = call_tool(open_server.url, "list_repos", {"limit": 100000}).json()["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"] == (
        "invalid arguments for tool 'list_repos': limit: must be between 1 and 200"
    )
    assert result["_meta"]["io.mahavishnu/error"]["code"] == -32602


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("list_repos", {"limit": "many"}, "limit: expected an integer"),
        ("list_repos", {"limit": 2.5}, "limit: expected an integer"),
        ("list_repos", {"tag": 5}, "tag: expected a string"),
        (
            "list_repos",
            {"tag": ["python"], "limit": {}},
            "tag: expected a string; limit: expected an integer",
        ),
        ("get_repo", {}, "name_or_nickname: required"),
    ],
)
def test_wrong_argument_types_are_invalid_params(
    open_server: RunningServer, tool: str, arguments: dict[str, object], expected: str
) -> None:
    response = call_tool(open_server.url, tool, arguments, request_id=11)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == 11
    assert body["error"] == {"code": -32602, "message": f"invalid arguments for tool {tool!r}: {expected}"}


def test_unknown_tool_keeps_the_sdks_tool_error(open_server: RunningServer) -> None:
    # The SDK's answer, and the shape tests/conformance/expected-failures.yml records.
    result = call_tool(open_server.url, "no_such_tool").json()["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"] == "Unknown tool: no_such_tool"


async def test_the_official_client_reads_both_kinds_of_argument_refusal(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        with pytest.raises(MCPError, match="limit: expected an integer"):
            await client.call_tool("list_repos", {"limit": "many"})
        out_of_range = await client.call_tool("list_repos", {"limit": 0})
        assert out_of_range.is_error
        assert "limit: must be between 1 and 200" in out_of_range.content[0].text  # type: ignore[union-attr]


def test_well_typed_arguments_still_work(open_server: RunningServer) -> None:
    result = call_tool(open_server.url, "list_repos", {"tag": "web", "limit": "1"}).json()["result"]
    assert [r["name"] for r in result["structuredContent"]["repos"]] == ["fastblocks"]


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


@pytest.mark.parametrize(
    "request_id", [{"a": 1}, [1], True, 1.5, None], ids=["object", "array", "bool", "float", "null"]
)
def test_an_id_that_is_not_a_string_or_integer_is_invalid_request(
    open_server: RunningServer, request_id: object
) -> None:
    # The SDK took these for notifications: 202 and no answer at all.
    response = post(open_server, {"jsonrpc": "2.0", "id": request_id, "method": "ping"})
    assert response.status_code == 400
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": 'Invalid Request: "id" must be a string or an integer'},
    }


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, -32600),
        ({"id": 1, "method": "ping"}, -32600),
        ({"jsonrpc": "2.0", "id": 1}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "text"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": 7}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": "text"}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "result": "text"}, -32600),
    ],
)
def test_malformed_envelopes_get_a_clean_error(
    open_server: RunningServer, message: dict[str, object], code: int
) -> None:
    response = post(open_server, message)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert "validation error" not in error["message"].lower()  # no pydantic report


def test_ids_and_params_that_are_fine(open_server: RunningServer) -> None:
    for request_id in ("abc", 0, -5, 2**53):
        assert post(open_server, {"jsonrpc": "2.0", "id": request_id, "method": "ping"}).json() == {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {},
        }
    assert post(open_server, {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": None}).status_code == 200
    notification = post(open_server, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert notification.status_code == 202


@pytest.mark.parametrize(
    "token",
    ["x" * 129, {"a": 1}, [1], True, 1.5, 2**63],
    ids=["long", "object", "array", "bool", "float", "huge"],
)
def test_a_bad_progress_token_is_refused(open_server: RunningServer, token: object) -> None:
    params = {"name": "list_repos", "arguments": {}, "_meta": {"progressToken": token}}
    response = post(
        open_server,
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": params},
        accept="application/json, text/event-stream",
    )
    assert response.status_code == 400
    assert response.json()["id"] == 4
    assert response.json()["error"]["code"] == -32602
    assert "progressToken" in response.json()["error"]["message"]


@pytest.mark.parametrize("token", ["t" * 128, 7], ids=["128-chars", "integer"])
def test_a_good_progress_token_is_echoed_in_the_stream(open_server: RunningServer, token: object) -> None:
    params = {"name": "list_repos", "arguments": {}, "_meta": {"progressToken": token}}
    response = post(
        open_server,
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params},
        accept="application/json, text/event-stream",
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert '"total":5' in response.text


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_json_is_a_clean_parse_error(open_server: RunningServer, depth: int) -> None:
    for body in (b"[" * depth + b"]" * depth, deep_params(depth)):
        response = httpx.post(open_server.url, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"] == {
            "code": -32700,
            "message": "Parse error: JSON nested deeper than 64 levels",
        }
    assert_no_traceback(open_server)


def test_nesting_up_to_the_limit_is_served(open_server: RunningServer) -> None:
    # params (1) + _meta (2) + 61 arrays = 63 levels inside the message object (64 with it).
    pad = "[" * 61 + "]" * 61
    body = f'{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"_meta":{{"pad":{pad}}}}}}}'
    assert httpx.post(open_server.url, content=body, headers={"Content-Type": "application/json"}).json() == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {},
    }
    deeper = body.replace("[", "[[", 1).replace("]", "]]", 1)
    response = httpx.post(open_server.url, content=deeper, headers={"Content-Type": "application/json"})
    assert response.json()["error"]["code"] == -32700


def test_brackets_inside_strings_do_not_count(open_server: RunningServer) -> None:
    text = '[{"\\"' * 500  # brackets, quotes and backslashes, all inside one string
    response = call_tool(open_server.url, "list_repos", {"query": text})
    assert response.status_code == 200
    assert response.json()["result"]["structuredContent"]["total"] == 0


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


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:{port}.evil.com",
        "http://localhost:{port}.evil.com",
        "http://127.0.0.1:{port}@evil.com",
        "http://127.0.0.1:{port}/path",
        "https://127.0.0.1:{port}",
        "http://127.0.0.1.evil.com:{port}",
        "null",
    ],
)
def test_origins_are_compared_whole_not_by_prefix(open_server: RunningServer, origin: str) -> None:
    response = rpc(open_server.url, "ping", headers={"Origin": origin.format(port=open_server.port)})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "origin", ["http://127.0.0.1:{port}", "http://localhost:3000", "http://[::1]:{port}"]
)
def test_loopback_origins_pass(open_server: RunningServer, origin: str) -> None:
    response = rpc(open_server.url, "ping", headers={"Origin": origin.format(port=open_server.port)})
    assert response.status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1:{port}.evil.com", "localhost:80x", "127.0.0.1:99999"])
def test_hosts_are_compared_whole_not_by_prefix(open_server: RunningServer, host: str) -> None:
    response = rpc(open_server.url, "ping", headers={"Host": host.format(port=open_server.port)})
    assert response.status_code == 421


def test_request_id_is_echoed_and_generated(open_server: RunningServer) -> None:
    given = rpc(open_server.url, "ping", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = rpc(open_server.url, "ping")
    assert len(generated.headers["x-request-id"]) == 36
