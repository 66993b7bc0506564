"""Akosha's tools through the official MCP client on the real server (SQLite and PostgreSQL):
every listing, count and read is narrowed to the sources the token's tags name; admins, and
tokens without tags, read every source."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from tests.akosha.conftest import Akosha, token
from tests.akosha.records import batch, tombstone, upsert
from tests.support.client import mcp_client

SEEDED = {
    "alpha": [
        upsert("m1", 1, source="alpha"),
        upsert("m2", 2, source="alpha", tenant="globex"),
        tombstone("m3", 2, source="alpha"),
    ],
    "beta": [upsert("m1", 1, source="beta", content="beta's own m1")],
    "gamma": [upsert("m9", 4, source="gamma")],
}


@pytest.fixture(scope="module")
def seeded(akosha: Akosha) -> Akosha:
    for source, records in SEEDED.items():
        answer = akosha.post(batch(*records, source=source))
        assert answer.status_code == 200, answer.text
    return akosha


def ok(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error is False, result.content
    assert result.structured_content is not None
    return result.structured_content


async def call(akosha: Akosha, credential: str, tool: str, **arguments: Any) -> CallToolResult:
    async with mcp_client(akosha.server.url, credential) as client:
        return await client.call_tool(tool, arguments)


def sources(page: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {s["source"]: (s["live"], s["tombstoned"]) for s in page["sources"]}


def keys(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["source"], r["memory_id"]) for r in page["records"]]


async def test_a_token_reads_only_the_sources_its_tags_name(seeded: Akosha) -> None:
    alpha = token("viewer", ["alpha"])
    listed = ok(await call(seeded, alpha, "list_sources"))
    assert sources(listed) == {"alpha": (2, 1)}
    assert listed["total"] == 1
    page = ok(await call(seeded, alpha, "list_records"))
    assert keys(page) == [("alpha", "m1"), ("alpha", "m2")]
    assert page["total"] == 2
    assert ok(await call(seeded, alpha, "list_records", source="beta"))["total"] == 0
    assert ok(await call(seeded, alpha, "get_record", source="alpha", memory_id="m1"))["state"] == "live"
    hidden = await call(seeded, alpha, "get_record", source="beta", memory_id="m1")
    assert hidden.is_error
    assert hidden.content[0].text == "no record 'm1' from source 'beta'"  # type: ignore[union-attr]


async def test_several_tags_several_sources_and_none_that_match_nothing(seeded: Akosha) -> None:
    two = token("viewer", ["alpha", "beta"])
    assert sources(ok(await call(seeded, two, "list_sources"))) == {"alpha": (2, 1), "beta": (1, 0)}
    assert ok(await call(seeded, two, "list_records"))["total"] == 3
    nothing = token("operator", ["zeta"])
    assert ok(await call(seeded, nothing, "list_sources")) == {"sources": [], "total": 0, "next_cursor": None}
    assert ok(await call(seeded, nothing, "list_records", include_tombstoned=True))["total"] == 0
    assert (await call(seeded, nothing, "get_record", source="alpha", memory_id="m1")).is_error


@pytest.mark.parametrize("credential", ["viewer without tags", "admin with tags"])
async def test_unscoped_tokens_and_admins_read_every_source(seeded: Akosha, credential: str) -> None:
    minted = token("viewer") if credential == "viewer without tags" else token("admin", ["alpha"])
    found = sources(ok(await call(seeded, minted, "list_sources")))
    assert {name: found[name] for name in SEEDED} == {"alpha": (2, 1), "beta": (1, 0), "gamma": (1, 0)}
    beta = ok(await call(seeded, minted, "get_record", source="beta", memory_id="m1"))
    assert beta["document"]["content"] == "beta's own m1"


async def test_filters_tombstones_and_pages(seeded: Akosha) -> None:
    admin = token("admin")
    by_tenant = ok(await call(seeded, admin, "list_records", source="alpha", tenant="globex"))
    assert keys(by_tenant) == [("alpha", "m2")]
    assert by_tenant["records"][0]["tenant"] == "globex"
    with_gone = ok(await call(seeded, admin, "list_records", source="alpha", include_tombstoned=True))
    gone = with_gone["records"][2]
    assert (gone["memory_id"], gone["state"], gone["version"], gone["document"]) == (
        "m3",
        "tombstoned",
        2,
        None,
    )
    seen: list[tuple[str, str]] = []
    totals = set()
    cursor = None
    while True:
        arguments: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = ok(await call(seeded, admin, "list_records", **arguments))
        totals.add(page["total"])
        seen += keys(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert totals == {len(seen)}
    assert seen == sorted(set(seen)), "each record once, by source then memory id"
    assert [k for k in seen if k[0] in SEEDED] == [
        ("alpha", "m1"),
        ("alpha", "m2"),
        ("beta", "m1"),
        ("gamma", "m9"),
    ]
    first = ok(await call(seeded, admin, "list_records", limit=1))
    other = await call(seeded, admin, "list_records", limit=1, source="beta", cursor=first["next_cursor"])
    assert other.is_error
    assert "other filters" in other.content[0].text  # type: ignore[union-attr]
    one = ok(await call(seeded, admin, "list_sources", limit=1))
    assert len(one["sources"]) == 1
    assert one["next_cursor"] is not None


async def test_the_ingest_tool_is_for_admins(seeded: Akosha) -> None:
    records = [upsert("t1", 1, source="by-tool"), tombstone("t2", 3, source="by-tool")]
    admin = token("admin")
    assert ok(await call(seeded, admin, "ingest_memories", source="by-tool", records=records)) == {
        "accepted": 2,
        "unchanged": 0,
    }
    assert (
        ok(await call(seeded, admin, "ingest_memories", source="by-tool", records=records))["unchanged"] == 2
    )
    assert ok(await call(seeded, admin, "get_record", source="by-tool", memory_id="t1"))["version"] == 1
    async with mcp_client(seeded.server.url, token("operator")) as operator:
        with pytest.raises(MCPError, match="needs the admin role"):
            await operator.call_tool("ingest_memories", {"source": "by-tool", "records": records})
    mixed = await call(seeded, admin, "ingest_memories", source="other", records=records)
    assert mixed.is_error
    assert "must be the batch's source" in mixed.content[0].text  # type: ignore[union-attr]


async def searched(akosha: Akosha, credential: str, **arguments: Any) -> dict[str, Any]:
    """`search_all_systems`, once the server's index has loaded (it rebuilds at start)."""
    for _ in range(100):
        result = await call(akosha, credential, "search_all_systems", **arguments)
        if not (result.is_error and "loading" in str(result.content)):
            return ok(result)
        await asyncio.sleep(0.1)
    raise AssertionError("the search index never loaded")


async def test_search_all_systems_finds_only_what_the_token_may_read(seeded: Akosha) -> None:
    unscoped = await searched(seeded, token("viewer"), query="beta's own m1", mode="keyword")
    assert (unscoped["hits"][0]["source"], unscoped["hits"][0]["memory_id"]) == ("beta", "m1")
    alpha_only = await searched(seeded, token("viewer", ["alpha"]), query="beta's own m1", mode="keyword")
    assert {h["source"] for h in alpha_only["hits"]} <= {"alpha"}
    assert alpha_only["total"] == len(alpha_only["hits"])
    gone = await searched(seeded, token("viewer"), query="m3", mode="keyword")
    assert all(h["memory_id"] != "m3" for h in gone["hits"])  # tombstoned at its source


async def test_search_all_systems_refuses_bad_arguments_in_one_line(seeded: Akosha) -> None:
    for arguments, field in [
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"query": "x", "limit": 500}, "limit"),
        ({"query": ""}, "query"),
    ]:
        result = await call(seeded, token("viewer"), "search_all_systems", **arguments)
        assert result.is_error, arguments
        text = result.content[0].text  # type: ignore[union-attr]
        assert text.startswith(f"invalid arguments for tool 'search_all_systems': {field}"), text
        assert "\n" not in text
        assert "pydantic" not in text
    async with mcp_client(seeded.server.url, token("viewer")) as client:  # the wrong type: a protocol error
        with pytest.raises(MCPError, match=r"^invalid arguments for tool 'search_all_systems': since"):
            await client.call_tool("search_all_systems", {"query": "x", "since": "yesterday"})


async def test_searches_and_the_index_are_measured(seeded: Akosha) -> None:
    timed = 'akosha_search_duration_seconds_count{mode="keyword"}'
    before = seeded.server.metric(timed) or 0.0
    await searched(seeded, token("viewer"), query="beta", mode="keyword")
    assert (seeded.server.metric(timed) or 0.0) == before + 1
    live = ok(await call(seeded, token("viewer"), "list_records"))["total"]
    assert seeded.server.metric("akosha_index_records") == live
