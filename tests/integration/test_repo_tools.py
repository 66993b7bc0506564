"""Every repository tool through the official MCP client, over real Streamable HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult

from mahavishnu.platform.errors import InvalidArgumentError
from tests.support.client import mcp_client
from tests.support.repos import make_repos, standard_specs
from tests.support.server import RunningServer, base_env, start_server


def structured(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error is False, result.content
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_client_connects_and_lists_tools(open_server: RunningServer, mode: str) -> None:
    async with mcp_client(open_server.url, mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {
            "list_repos",
            "get_repo",
            "get_all_repo_paths",
            "list_roles",
            "get_repos_by_role",
            "get_health",
        } <= tools
        page = structured(await client.call_tool("list_repos", {}))
        assert page["total"] == 5


async def test_list_repos_filters(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        by_tag = structured(await client.call_tool("list_repos", {"tag": "web"}))
        assert [r["name"] for r in by_tag["repos"]] == ["fastblocks", "webui"]
        by_role = structured(await client.call_tool("list_repos", {"role": "app", "tag": "python"}))
        assert [r["name"] for r in by_role["repos"]] == ["fastblocks"]
        by_query = structured(await client.call_tool("list_repos", {"query": "SEMANTIC"}))
        assert [r["name"] for r in by_query["repos"]] == ["akosha"]
        nothing = structured(await client.call_tool("list_repos", {"tag": "cobol"}))
        assert nothing == {"repos": [], "next_cursor": None, "total": 0}


async def test_a_tag_no_manifest_can_hold_is_refused_not_answered_empty(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        for tool in ("list_repos", "get_all_repo_paths"):
            refused = await client.call_tool(tool, {"tag": "BAD!"})
            assert refused.is_error, (tool, refused.content)
            text = refused.content[0].text  # type: ignore[union-attr]
            assert "tag 'BAD!' is malformed, so no repository can have it" in text
            assert refused.meta is not None
            assert refused.meta["io.mahavishnu/error"]["code"] == InvalidArgumentError.code


async def test_pagination_walks_every_repo_once_in_order(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            args: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = structured(await client.call_tool("list_repos", args))
            assert len(page["repos"]) <= 2
            assert page["total"] == 5
            seen += [r["name"] for r in page["repos"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["akosha", "crackerjack", "fastblocks", "mahavishnu", "webui"]


async def test_cursor_from_other_filters_or_forged_is_refused(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        page = structured(await client.call_tool("list_repos", {"limit": 1}))
        mixed = await client.call_tool(
            "list_repos", {"limit": 1, "tag": "python", "cursor": page["next_cursor"]}
        )
        assert mixed.is_error
        forged = await client.call_tool("list_repos", {"cursor": "not-a-cursor"})
        assert forged.is_error
        assert "cursor" in forged.content[0].text  # type: ignore[union-attr]


async def test_get_repo_by_name_and_nickname(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        by_name = structured(await client.call_tool("get_repo", {"name_or_nickname": "mahavishnu"}))
        by_nick = structured(await client.call_tool("get_repo", {"name_or_nickname": "vishnu"}))
        assert by_name == by_nick
        assert by_name["role"] == "orchestrator"
        assert by_name["tags"] == ["python", "mcp"] or sorted(by_name["tags"]) == ["mcp", "python"]
        missing = await client.call_tool("get_repo", {"name_or_nickname": "nope"})
        assert missing.is_error
        assert "nope" in missing.content[0].text  # type: ignore[union-attr]


async def test_a_repositorys_build_host_is_shown_by_get_repo_and_list_repos(tmp_path: Path) -> None:
    """Which worker runs a repository (`host`, engine temporal) is part of what the tools show."""
    specs = standard_specs()
    specs[0] = {**specs[0], "host": "build-1"}
    server = start_server(tmp_path, base_env(tmp_path, make_repos(tmp_path, specs)))
    try:
        async with mcp_client(server.url) as client:
            hosted = structured(await client.call_tool("get_repo", {"name_or_nickname": "akosha"}))
            listed = structured(await client.call_tool("list_repos", {}))["repos"]
    finally:
        server.stop()
    assert hosted["host"] == "build-1"
    assert {r["name"]: r["host"] for r in listed} == {
        "akosha": "build-1",
        **{s["name"]: None for s in specs[1:]},
    }


async def test_paths_roles_and_by_role(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        paths = structured(await client.call_tool("get_all_repo_paths", {}))["paths"]
        assert len(paths) == 5
        assert all(p["path"].startswith("/") for p in paths)
        web = structured(await client.call_tool("get_all_repo_paths", {"tag": "web"}))["paths"]
        assert [p["name"] for p in web] == ["fastblocks", "webui"]
        roles = structured(await client.call_tool("list_roles", {}))["roles"]
        assert {"role": "app", "count": 2} in roles
        apps = structured(await client.call_tool("get_repos_by_role", {"role": "app"}))
        assert [r["name"] for r in apps["repos"]] == ["fastblocks", "webui"]


async def test_repositories_are_resources(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        resources = (await client.list_resources()).resources
        assert sorted(str(r.uri) for r in resources) == [
            "repo://akosha",
            "repo://crackerjack",
            "repo://fastblocks",
            "repo://mahavishnu",
            "repo://webui",
        ]
        content = (await client.read_resource("repo://akosha")).contents[0]
        entry = json.loads(content.text)  # type: ignore[union-attr]
        assert entry["name"] == "akosha"
        assert entry["readme_head"].startswith("# akosha")


# --- every list-shaped answer is paginated and bounded ------------------------------------------

LISTINGS: list[tuple[str, dict[str, Any], str, str]] = [
    # tool, its other arguments, the list in the answer, the entry's name field
    ("list_repos", {"tag": "generated"}, "repos", "name"),
    ("get_all_repo_paths", {}, "paths", "name"),
    ("get_repos_by_role", {"role": "tool"}, "repos", "name"),
    ("list_roles", {}, "roles", "role"),
]


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """250 generated repositories beside the standard five: more than one page of every listing."""
    workdir = tmp_path_factory.mktemp("big")
    server = start_server(workdir, base_env(workdir, make_repos(workdir, standard_specs(250))))
    yield server
    server.stop()


async def _walk(
    client: Client, tool: str, args: dict[str, Any], key: str, limit: int
) -> tuple[list[Any], int]:
    """Every entry of a listing, page by page; asserts each page's bound and the constant total."""
    entries: list[Any] = []
    cursor, totals = None, set()
    for _ in range(1000):
        page = structured(await client.call_tool(tool, {**args, "limit": limit, "cursor": cursor}))
        assert len(page[key]) <= limit
        totals.add(page["total"])
        entries += page[key]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(totals) == 1
    return entries, totals.pop()


@pytest.mark.parametrize(("tool", "args", "key", "field"), LISTINGS)
async def test_every_listing_walks_all_entries_once_in_order(
    big_server: RunningServer, tool: str, args: dict[str, Any], key: str, field: str
) -> None:
    async with mcp_client(big_server.url) as client:
        whole = structured(await client.call_tool(tool, {**args, "limit": 200}))
        entries, total = await _walk(client, tool, args, key, limit=7 if key != "roles" else 1)
    names = [entry[field] for entry in entries]
    assert len(names) == total == len(set(names))
    assert names == sorted(names, key=lambda n: (n.lower(), n))
    assert len(whole[key]) == min(total, 200)
    if key != "roles":
        assert total >= 125


async def test_paths_are_bounded_by_default(big_server: RunningServer) -> None:
    async with mcp_client(big_server.url) as client:
        first = structured(await client.call_tool("get_all_repo_paths", {}))
        assert len(first["paths"]) == 200
        assert first["total"] == 255
        assert first["next_cursor"] is not None
        rest = structured(await client.call_tool("get_all_repo_paths", {"cursor": first["next_cursor"]}))
        assert len(rest["paths"]) == 55
        assert rest["next_cursor"] is None


async def test_a_cursor_works_only_for_the_listing_that_issued_it(big_server: RunningServer) -> None:
    async with mcp_client(big_server.url) as client:
        paths = structured(await client.call_tool("get_all_repo_paths", {"limit": 1}))
        elsewhere = await client.call_tool(
            "get_repos_by_role", {"role": "tool", "cursor": paths["next_cursor"]}
        )
        assert elsewhere.is_error
        assert "cursor belongs to a listing with other filters" in elsewhere.content[0].text  # type: ignore[union-attr]
        other_tag = await client.call_tool(
            "get_all_repo_paths", {"tag": "rust", "cursor": paths["next_cursor"]}
        )
        assert other_tag.is_error
