"""Bearer JWT authentication and tag-scoped RBAC against a production-mode server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.client import call_tool, mcp_client, rpc
from tests.support.server import SECRET, RunningServer, base_env, start_server
from tests.support.tokens import claims, hs256, hs256_with_key_bytes, rsa_keypair, unsigned


@pytest.fixture(scope="module")
def keys(workdir: Path) -> tuple[bytes, Path]:
    return rsa_keypair(workdir)


@pytest.fixture(scope="module")
def auth_server(workdir: Path, manifest: Path, keys: tuple[bytes, Path]) -> Iterator[RunningServer]:
    env = base_env(
        workdir,
        manifest,
        {
            "MAHAVISHNU_ENV": "production",
            "MAHAVISHNU_AUTH_SECRET": SECRET,
            "MAHAVISHNU_AUTH_PUBLIC_KEY_FILE": str(keys[1]),
            "MAHAVISHNU_AUTH_LEEWAY_SECONDS": "5",
        },
    )
    server = start_server(workdir, env)
    yield server
    server.stop()


def failures(server: RunningServer, reason: str) -> float:
    text = httpx.get(f"{server.base}/metrics").text
    match = re.search(rf'^mahavishnu_auth_failures_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_missing_token_gets_401_with_challenge(auth_server: RunningServer) -> None:
    before = failures(auth_server, "missing")
    response = rpc(auth_server.url, "tools/list")
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'resource_metadata="http://127.0.0.1:' in challenge
    assert "/.well-known/oauth-protected-resource" in challenge
    assert response.json()["error"]["code"] == -32001
    assert failures(auth_server, "missing") == before + 1


def now() -> int:
    return int(time.time())


BAD_TOKENS: dict[str, Any] = {
    "expired": lambda _k: hs256(claims(exp=now() - 60, iat=now() - 120)),
    "not_yet_valid": lambda _k: hs256(claims(nbf=now() + 300)),
    "bad_signature": lambda _k: hs256(claims(), secret="another-secret-that-is-also-long-enough-000"),
    "bad_algorithm": lambda _k: unsigned(claims()),
    "missing_claim": lambda _k: hs256(claims(exp=None)),
    "bad_issuer": lambda _k: hs256(claims(iss="someone-else")),
    "bad_claim": lambda _k: hs256(claims(role="superuser")),
    "malformed": lambda _k: "not.a.jwt",
}


@pytest.mark.parametrize("reason", sorted(BAD_TOKENS))
def test_bad_tokens_are_refused_and_counted(
    auth_server: RunningServer, keys: tuple[bytes, Path], reason: str
) -> None:
    token = BAD_TOKENS[reason](keys)
    before = failures(auth_server, reason)
    response = rpc(auth_server.url, "tools/list", token=token)
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert failures(auth_server, reason) == before + 1


WRONGLY_TYPED_CLAIMS: dict[str, dict[str, Any]] = {
    "role-list": {"role": ["admin"]},
    "role-object": {"role": {"admin": True}},
    "role-number": {"role": 2},
    "tags-string": {"tags": "python"},
    "tags-object": {"tags": {"python": 1}},
    "tags-numbers": {"tags": [1, 2]},
    "sub-number": {"sub": 42},
    "sub-list": {"sub": ["alice"]},
    "sub-empty": {"sub": ""},
    "exp-string": {"exp": str(int(time.time()) + 600)},
    "exp-bool": {"exp": True},
    "exp-list": {"exp": [1]},
    "nbf-string": {"nbf": "0"},
    "iat-object": {"iat": {"t": 0}},
    "iss-list": {"iss": ["mahavishnu"]},
    "jti-number": {"jti": 7},
}


@pytest.mark.parametrize("case", sorted(WRONGLY_TYPED_CLAIMS))
def test_validly_signed_tokens_with_wrongly_typed_claims_are_401(
    auth_server: RunningServer, case: str
) -> None:
    # Signed by hand: PyJWT itself would refuse to encode some of these.
    token = hs256_with_key_bytes({**claims(), **WRONGLY_TYPED_CLAIMS[case]}, SECRET.encode())
    response = rpc(auth_server.url, "tools/list", token=token)
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["error"]["code"] == -32001
    assert "Traceback" not in auth_server.log_path.read_text()


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
def test_deep_json_is_a_clean_400_with_or_without_a_token(
    auth_server: RunningServer, with_token: bool
) -> None:
    headers = {"Content-Type": "application/json"}
    if with_token:
        headers["Authorization"] = f"Bearer {hs256(claims())}"
    body = (
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"x":'
        + b"[" * 6000
        + b"]" * 6000
        + b"}}}"
    )
    response = httpx.post(auth_server.url, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700
    assert "Traceback" not in auth_server.log_path.read_text()


def test_hs_rs_confusion_is_refused(auth_server: RunningServer, keys: tuple[bytes, Path]) -> None:
    forged = hs256_with_key_bytes(claims(role="admin"), keys[1].read_bytes())
    before = failures(auth_server, "bad_signature")
    assert rpc(auth_server.url, "tools/list", token=forged).status_code == 401
    assert failures(auth_server, "bad_signature") == before + 1


def test_rs256_token_is_accepted(auth_server: RunningServer, keys: tuple[bytes, Path]) -> None:
    token = jwt.encode(claims(sub="rsa-user"), keys[0], algorithm="RS256")
    response = call_tool(auth_server.url, "list_repos", token=token)
    assert response.status_code == 200
    assert response.json()["result"]["structuredContent"]["total"] == 5


def test_token_in_query_string_is_refused(auth_server: RunningServer) -> None:
    token = hs256(claims())
    before = failures(auth_server, "query_string")
    response = httpx.post(
        f"{auth_server.url}?access_token={token}",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert failures(auth_server, "query_string") == before + 1


def test_non_bearer_scheme_is_refused(auth_server: RunningServer) -> None:
    response = rpc(auth_server.url, "tools/list", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401


def test_clock_skew_within_leeway_is_tolerated(auth_server: RunningServer) -> None:
    token = hs256(claims(exp=now() - 2, iat=now() - 60))
    assert rpc(auth_server.url, "tools/list", token=token).status_code == 200


async def test_viewer_scoped_to_a_tag_sees_only_those_repos_everywhere(auth_server: RunningServer) -> None:
    token = hs256(claims(sub="py-viewer", tags=["python"]))
    async with mcp_client(auth_server.url, token=token) as client:
        page = (await client.call_tool("list_repos", {})).structured_content
        assert page is not None
        assert [r["name"] for r in page["repos"]] == ["akosha", "crackerjack", "fastblocks", "mahavishnu"]
        hidden = await client.call_tool("get_repo", {"name_or_nickname": "webui"})
        assert hidden.is_error
        paths = (await client.call_tool("get_all_repo_paths", {})).structured_content
        assert paths is not None
        assert "webui" not in [p["name"] for p in paths["paths"]]
        roles = (await client.call_tool("list_roles", {})).structured_content
        assert roles is not None
        assert {"role": "app", "count": 1} in roles["roles"]
        apps = (await client.call_tool("get_repos_by_role", {"role": "app"})).structured_content
        assert apps is not None
        assert [r["name"] for r in apps["repos"]] == ["fastblocks"]
        resources = [str(r.uri) for r in (await client.list_resources()).resources]
        assert "repo://webui" not in resources
        assert "repo://akosha" in resources
        with pytest.raises(MCPError, match="webui"):
            await client.read_resource("repo://webui")


def test_unscoped_token_sees_everything(auth_server: RunningServer) -> None:
    token = hs256(claims(sub="ops", role="operator"))
    body = call_tool(auth_server.url, "list_repos", token=token).json()
    assert body["result"]["structuredContent"]["total"] == 5


def test_tokens_never_reach_the_log(auth_server: RunningServer) -> None:
    token = hs256(claims(sub="log-check"))
    call_tool(auth_server.url, "list_repos", token=token)
    bad = hs256(claims(exp=now() - 100, iat=now() - 200))
    rpc(auth_server.url, "tools/list", token=bad)
    time.sleep(0.3)
    text = auth_server.log_path.read_text()
    assert token not in text
    assert bad not in text
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    calls = [
        line for line in lines if line.get("tool") == "list_repos" and line.get("principal") == "log-check"
    ]
    assert calls, "the tool call was not logged"
    assert calls[0]["tool_outcome"] == "ok"
    assert calls[0]["tool_ms"] >= 0
    assert calls[0]["request_id"]
    assert calls[0]["trace_id"]
