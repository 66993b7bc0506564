"""A real Session-Buddy for the ecosystem tests (tokens required, a key of its own), the token
Mahavishnu writes to it with, and what it holds, read back through its own tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mahavishnu.platform.auth import Role, issue_token
from mahavishnu.platform.crypto import generate_key
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.support.client import mcp_client
from tests.support.server import SECRET, RunningServer, wait_ready
from tests.support.session_buddy import session_buddy_env, spawn_session_buddy


def start_buddy(folder: Path, port: int | None = None, **extra: str) -> RunningServer:
    """Session-Buddy keeping its data in `folder`, ready (on `port` if given); `extra` on top."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "SESSION_BUDDY_AUTH_SECRET": SECRET,
        "SESSION_ENCRYPTION_KEY": generate_key(),
        "RATE_LIMIT_PER_MINUTE": "100000",  # every test writes as one subject, mahavishnu
        "RATE_LIMIT_PER_HOUR": "1000000",
        "RATE_LIMIT_BURST": "100000",
    }
    env = session_buddy_env(folder, **{**settings, **extra})
    server = spawn_session_buddy(folder, env, port=port)
    wait_ready(server, timeout=60)
    return server


def buddy_token(tenant: str, subject: str = "mahavishnu", role: Role = "operator") -> str:
    """A token Session-Buddy accepts (audience session-buddy) for `tenant`'s data."""
    settings = SessionBuddySettings(auth_secret=SECRET)
    return issue_token(settings, subject=subject, role=role, ttl_seconds=3600, tenant=tenant)


async def buddy_call(server: RunningServer, token: str, tool: str, **arguments: Any) -> dict[str, Any]:
    async with mcp_client(server.url, token) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error is False, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


async def sessions_of(server: RunningServer, token: str, project: str) -> list[dict[str, Any]]:
    """The project's sessions, newest first."""
    page = await buddy_call(server, token, "list_sessions", project=project, limit=200)
    return list(page["sessions"])


async def memories_of(server: RunningServer, token: str, project: str | None = None) -> list[dict[str, Any]]:
    """The tenant's memories (of one project if given), newest first."""
    arguments: dict[str, Any] = {"limit": 200, **({"project": project} if project else {})}
    page = await buddy_call(server, token, "list_memories", **arguments)
    assert page["total"] == len(page["memories"]), "more than a page: the test needs fewer"
    return list(page["memories"])
