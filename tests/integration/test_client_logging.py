"""logging/setLevel and log notifications over real HTTP, with two real clients of the official SDK.

A client that sets a level receives the messages its own requests log at or above it; another
caller (another token) that set none, or a higher one, receives nothing of them.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import LoggingMessageNotificationParams

from tests.support.repos import make_repos, standard_specs
from tests.support.server import SECRET, RunningServer, base_env, start_server
from tests.support.tokens import claims, hs256

# The SDK marks logging deprecated for 2026-07-28; these clients speak the handshake era on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Auth on, so callers are told apart by their tokens; one README is a symlink out (refused)."""
    workdir = tmp_path_factory.mktemp("client-logging")
    manifest = make_repos(workdir, [*standard_specs(), {"name": "leaky", "tags": ["python"]}])
    readme = workdir / "repos" / "leaky" / "README.md"
    readme.unlink()
    readme.symlink_to("/etc/hostname")
    running = start_server(workdir, base_env(workdir, manifest, {"MAHAVISHNU_AUTH_SECRET": SECRET}))
    yield running
    running.stop()


class Caller:
    """One client with its own token, recording the log messages it receives."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.messages: list[LoggingMessageNotificationParams] = []

    async def call(self, tool: str, arguments: dict[str, Any]) -> None:
        """With a progress callback, as a client that reads a streamed answer sends it."""
        result = await self.client.call_tool(tool, arguments, progress_callback=_ignore)
        assert not result.is_error, result.content


async def _ignore(progress: float, total: float | None, message: str | None) -> None:
    return None


@asynccontextmanager
async def caller(server: RunningServer, subject: str) -> AsyncIterator[Caller]:
    token = hs256(claims(sub=subject, role="viewer"))
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    received: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    transport = streamable_http_client(server.url, http_client=http)
    async with http, Client(transport, mode="legacy", cache=None, logging_callback=on_log) as client:
        assert client.server_capabilities.logging is not None
        found = Caller(client)
        found.messages = received
        yield found


NICKNAME_NOTE = "'vishnu' is the nickname of 'mahavishnu'"


async def test_only_the_client_that_set_a_level_receives_its_messages(server: RunningServer) -> None:
    async with caller(server, "alice") as alice, caller(server, "bob") as bob:
        assert await alice.client.set_logging_level("info") is not None
        await alice.call("get_repo", {"name_or_nickname": "vishnu"})
        await bob.call("get_repo", {"name_or_nickname": "vishnu"})
    assert [(m.level, m.logger, m.data["message"]) for m in alice.messages] == [
        ("info", "mahavishnu", NICKNAME_NOTE)
    ]
    assert alice.messages[0].data["repo"] == "mahavishnu"
    assert bob.messages == []


async def test_messages_below_the_level_are_not_sent(server: RunningServer) -> None:
    async with caller(server, "carol") as carol, caller(server, "dave") as dave:
        await carol.client.set_logging_level("warning")
        await dave.client.set_logging_level("debug")
        await carol.call("get_repo", {"name_or_nickname": "vishnu"})
        await dave.call("get_repo", {"name_or_nickname": "vishnu"})
        assert carol.messages == []  # info < warning; dave's debug changed nothing for carol
        assert [m.data["message"] for m in dave.messages] == [NICKNAME_NOTE]
        await carol.client.set_logging_level("info")
        await carol.call("get_repo", {"name_or_nickname": "vishnu"})
        assert [m.data["message"] for m in carol.messages] == [NICKNAME_NOTE]


async def test_a_resource_read_logs_a_refused_readme_as_a_warning(server: RunningServer) -> None:
    async with caller(server, "erin") as erin, caller(server, "frank") as frank:
        await erin.client.set_logging_level("warning")
        streamed = {"progressToken": "read-1"}
        await erin.client.read_resource("repo://leaky", meta=streamed)  # type: ignore[arg-type]
        await frank.client.read_resource("repo://leaky", meta=streamed)  # type: ignore[arg-type]
    assert [(m.level, m.data["repo"]) for m in erin.messages] == [("warning", "leaky")]
    assert "README.md refused" in erin.messages[0].data["message"]
    assert frank.messages == []


async def test_over_stdio_the_one_client_gets_what_it_asked_for(
    server: RunningServer, tmp_path: Path
) -> None:
    """Stdio keeps one connection open: the messages come without any progress token."""
    env = {k: v for k, v in server.env.items() if k != "MAHAVISHNU_AUTH_SECRET"}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mahavishnu", "serve", "--stdio"], env=env, cwd=str(tmp_path)
    )
    received: list[LoggingMessageNotificationParams] = []

    async def on_log(message: LoggingMessageNotificationParams) -> None:
        received.append(message)

    async with Client(params, mode="legacy", cache=None, logging_callback=on_log) as client:
        await client.call_tool("get_repo", {"name_or_nickname": "vishnu"})
        assert received == []
        await client.set_logging_level("debug")
        await client.read_resource("repo://akosha")
        await client.call_tool("get_repo", {"name_or_nickname": "vishnu"})
    assert [(m.level, m.data["message"]) for m in received] == [
        ("debug", "README head read"),
        ("info", NICKNAME_NOTE),
    ]


async def test_a_plain_request_of_a_caller_with_a_level_is_streamed(server: RunningServer) -> None:
    async with caller(server, "gina") as gina, caller(server, "hal") as hal:
        await gina.client.set_logging_level("info")
        result = await gina.client.call_tool("get_repo", {"name_or_nickname": "vishnu"})
        assert not result.is_error
        await hal.client.call_tool("get_repo", {"name_or_nickname": "vishnu"})
    assert [m.data["message"] for m in gina.messages] == [NICKNAME_NOTE]
    assert hal.messages == []
