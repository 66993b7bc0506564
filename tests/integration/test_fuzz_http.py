"""Arbitrary JSON (and not-quite-JSON) at /mcp: the server answers 4xx or 200, never 5xx, never dies."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.server import RunningServer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
methods = st.sampled_from(
    [
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "prompts/list",
        "notifications/initialized",
        "server/discover",
        "completion/complete",
        "logging/setLevel",
    ]
) | st.text(max_size=30)
messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0"]) | json_values, "method": methods | json_values},
    optional={"id": st.integers() | st.text(max_size=8) | st.none() | json_values, "params": json_values},
)
tool_calls = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "id": st.integers(0, 1000),
        "method": st.just("tools/call"),
        "params": st.fixed_dictionaries(
            {
                "name": st.sampled_from(
                    ["list_repos", "get_repo", "get_all_repo_paths", "get_repos_by_role", "x"]
                ),
                "arguments": st.dictionaries(
                    st.sampled_from(["tag", "role", "query", "limit", "cursor", "name_or_nickname", "zzz"]),
                    json_values,
                    max_size=4,
                ),
            }
        ),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=messages | tool_calls | json_values)
def test_arbitrary_json_never_yields_5xx(open_server: RunningServer, body: object) -> None:
    response = httpx.post(
        open_server.url, content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, response.text
    if response.status_code == 200 and response.content:
        assert "jsonrpc" in response.json()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_yield_5xx(open_server: RunningServer, raw: bytes) -> None:
    response = httpx.post(open_server.url, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code < 500


def test_server_survived_the_fuzzing(open_server: RunningServer) -> None:
    assert open_server.process.poll() is None
    assert httpx.get(f"{open_server.base}/health").json()["status"] == "healthy"
