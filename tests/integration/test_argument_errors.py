"""Argument errors in one voice, for every tool the server lists, over real HTTP with the official client.

Out of range: an `isError` result whose text is `<argument>: must be between A and B` and whose
`_meta` carries the invalid-argument code; wrong type or missing: JSON-RPC -32602 naming the
argument. Never pydantic's report, its type names, or a link to its documentation.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from mahavishnu.platform.errors import InvalidArgumentError
from tests.support.client import mcp_client, rpc
from tests.support.server import RunningServer

META_KEY = "io.mahavishnu/error"
PYDANTIC_MARKS = ("pydantic", "https://", "Input should", "validation error", "int_parsing", "[type=")


def _assert_plain(text: str) -> None:
    assert not any(mark in text for mark in PYDANTIC_MARKS), text
    assert "\n" not in text, text


FILLERS = {"string": "x", "integer": 1, "boolean": False, "array": [], "object": {}}


def _required(schema: dict[str, Any]) -> dict[str, Any]:
    """Well-typed values for a tool's required arguments, so only the argument under test is wrong."""
    properties = schema.get("properties", {})
    return {name: FILLERS[properties[name].get("type", "string")] for name in schema.get("required", [])}


async def _tools(server: RunningServer) -> list[Any]:
    async with mcp_client(server.url) as client:
        return list((await client.list_tools()).tools)


async def test_every_bounded_integer_argument_says_its_range(open_server: RunningServer) -> None:
    bounded = [
        (tool.name, _required(tool.input_schema), name, prop["minimum"], prop["maximum"])
        for tool in await _tools(open_server)
        for name, prop in tool.input_schema.get("properties", {}).items()
        if prop.get("type") == "integer" and "minimum" in prop and "maximum" in prop
    ]
    assert {("list_repos", "limit"), ("get_all_repo_paths", "limit")} <= {(t, a) for t, _, a, _, _ in bounded}
    async with mcp_client(open_server.url) as client:
        for tool, required, argument, low, high in bounded:
            for value in (low - 1, high + 1):
                result = await client.call_tool(tool, {**required, argument: value})
                assert result.is_error, (tool, argument, value)
                text = result.content[0].text  # type: ignore[union-attr]
                assert (
                    text
                    == f"invalid arguments for tool {tool!r}: {argument}: must be between {low} and {high}"
                )
                assert result.meta is not None
                assert result.meta[META_KEY]["code"] == InvalidArgumentError.code
                _assert_plain(text)


async def test_every_tool_names_a_wrongly_typed_argument(open_server: RunningServer) -> None:
    tools = [t for t in await _tools(open_server) if t.input_schema.get("properties")]
    assert len(tools) >= 10
    async with mcp_client(open_server.url) as client:
        for tool in tools:
            argument = next(iter(tool.input_schema["properties"]))
            with pytest.raises(MCPError) as refused:
                await client.call_tool(tool.name, {argument: [{"nested": True}]})
            assert refused.value.error.code == -32602
            message = refused.value.error.message
            assert message.startswith(f"invalid arguments for tool {tool.name!r}: {argument}: expected "), (
                message
            )
            _assert_plain(message)


async def test_a_missing_argument_is_named(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        with pytest.raises(
            MCPError, match=r"^invalid arguments for tool 'get_repo': name_or_nickname: required$"
        ):
            await client.call_tool("get_repo", {})


async def test_a_union_is_one_expectation_not_pydantic_branch_names(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("trigger_workflow", {"workflow": "git-status", "params": {"a": [1]}})
    assert refused.value.error.message == (
        "invalid arguments for tool 'trigger_workflow': params.a: expected a string, an integer or a boolean"
    )


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        ("resources/read", {"uri": 5}, "invalid params for resources/read: uri: expected a string"),
        (
            "tools/call",
            {"name": "list_repos", "arguments": [1]},
            "invalid params for tools/call: arguments: expected an object",
        ),
        (
            "completion/complete",
            {"argument": {"name": "name", "value": ""}},
            "invalid params for completion/complete: ref: required",
        ),
    ],
)
def test_malformed_params_of_any_method_name_the_field(
    open_server: RunningServer, method: str, params: dict[str, Any], expected: str
) -> None:
    error = rpc(open_server.url, method, params).json()["error"]
    assert error["code"] == -32602
    assert error["message"] == expected
    _assert_plain(error["message"])


async def test_descriptions_carry_no_docstring_indentation(open_server: RunningServer) -> None:
    async with mcp_client(open_server.url) as client:
        described = [(t.name, t.description or "") for t in (await client.list_tools()).tools]
        templates = (await client.list_resource_templates()).resource_templates
        described += [(t.name, t.description or "") for t in templates]
    assert any("\n" in text for _, text in described)  # multi-line docstrings are there...
    for name, text in described:
        assert text, name
        assert not any(line.startswith((" ", "\t")) for line in text.splitlines()), (name, text)
