"""Arbitrary JSON (and not-quite-JSON) at /mcp: the server answers 4xx or 200, never 5xx, never dies,
and never logs a traceback, whether the caller sends no token, a good one or a bad one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.server import SECRET, RunningServer, base_env, start_server
from tests.support.tokens import claims, hs256, hs256_with_key_bytes

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
tool_names = st.sampled_from(["list_repos", "get_repo", "get_all_repo_paths", "get_repos_by_role", "x"])
tool_calls = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "id": st.integers(0, 1000),
        "method": st.just("tools/call"),
        "params": st.fixed_dictionaries(
            {
                "name": tool_names,
                "arguments": st.dictionaries(
                    st.sampled_from(["tag", "role", "query", "limit", "cursor", "name_or_nickname", "zzz"]),
                    json_values,
                    max_size=4,
                ),
            }
        ),
    }
)

# --- odd envelopes: every member of the wrong type, size or shape --------------------------
big_integers = st.integers(min_value=-(2**80), max_value=2**80)
odd_ids = json_values | big_integers | st.floats() | st.text(max_size=300)
progress_tokens = json_values | big_integers | st.text(min_size=100, max_size=300)
metas = json_values | st.dictionaries(
    st.sampled_from(["progressToken", "x", ""]), progress_tokens, max_size=2
)
odd_params = json_values | st.fixed_dictionaries(
    {},
    optional={
        "name": tool_names | json_values,
        "arguments": st.dictionaries(st.sampled_from(["tag", "limit", "query"]), json_values) | json_values,
        "_meta": metas,
        "protocolVersion": json_values,
    },
)
envelopes = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0") | json_values},
    optional={
        "id": odd_ids,
        "method": methods | json_values,
        "params": odd_params,
        "result": json_values,
        "error": json_values,
    },
)
NEST_MARK = "\u0000nest\u0000"


@st.composite
def nested_bodies(draw: st.DrawFn) -> bytes:
    """An envelope with one member replaced by arrays/objects nested up to 3,000 deep, maybe cut short."""
    message = draw(
        st.fixed_dictionaries(
            {"jsonrpc": st.just("2.0"), "id": st.integers(0, 9), "method": methods},
            optional={"params": st.just({"name": "list_repos", "arguments": {"query": NEST_MARK}})},
        )
    )
    where = draw(st.sampled_from(["id", "method", "params", "_meta", "token"]))
    if where in {"id", "method", "params"}:
        message[where] = NEST_MARK
    elif where == "_meta":
        message["params"] = {"_meta": {"x": NEST_MARK}}
    else:
        message["params"] = {"_meta": {"progressToken": NEST_MARK}}
    depth = draw(st.integers(1, 3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"b":[', "]}]")]))
    nest = opener * depth + "1" + closer * draw(st.integers(0, depth))
    return json.dumps(message).replace(json.dumps(NEST_MARK), nest).encode()


def bad_role_token() -> str:
    return hs256_with_key_bytes({**claims(), "role": ["admin"]}, SECRET.encode())


TOKENS = {
    "none": lambda: None,
    "valid": lambda: hs256(claims(sub="fuzzer")),
    "forged": lambda: hs256(claims(sub="fuzzer"), secret="not-the-server-secret-but-long-enough-0000"),
    "role-list": bad_role_token,
    "garbage": lambda: "a.b.c",
}


@pytest.fixture(scope="module")
def auth_server(workdir: Path, manifest: Path) -> Iterator[RunningServer]:
    server = start_server(workdir, base_env(workdir, manifest, {"MAHAVISHNU_AUTH_SECRET": SECRET}))
    yield server
    server.stop()


def post(server: RunningServer, body: bytes, token: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(server.url, content=body, headers=headers, timeout=10)


def assert_sound(server: RunningServer, response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert "Traceback" not in server.log_path.read_text()


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


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=envelopes.map(lambda m: json.dumps(m).encode()) | nested_bodies(),
    token=st.sampled_from(sorted(TOKENS)),
)
def test_odd_envelopes_with_and_without_tokens_never_yield_5xx_or_tracebacks(
    open_server: RunningServer, auth_server: RunningServer, body: bytes, token: str
) -> None:
    assert_sound(open_server, post(open_server, body))
    assert_sound(auth_server, post(auth_server, body, TOKENS[token]()))


def test_servers_survived_the_fuzzing(open_server: RunningServer, auth_server: RunningServer) -> None:
    for server in (open_server, auth_server):
        assert server.process.poll() is None
        assert "Traceback" not in server.log_path.read_text()
    assert httpx.get(f"{open_server.base}/health").json()["status"] == "healthy"
    assert httpx.get(f"{auth_server.base}/health").json()["status"] == "healthy"
