"""Talking to a running server: the official MCP client, and raw JSON-RPC over httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


@asynccontextmanager
async def mcp_client(url: str, token: str | None = None, mode: str = "legacy") -> AsyncIterator[Client]:
    """The official SDK client over Streamable HTTP, without its response cache (tests edit the manifest)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    http = create_mcp_http_client(headers=headers)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
        yield client


def rpc(
    url: str,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    request_id: int | str | None = 1,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One raw JSON-RPC POST with only Content-Type set, as a plain curl would send it."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.post(url, json=message, headers=sent, timeout=10)


def call_tool(url: str, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
    return rpc(url, "tools/call", {"name": name, "arguments": arguments or {}}, **kwargs)
