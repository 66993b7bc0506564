"""`completion/complete`: argument suggestions for resource templates and prompts.

A service declares a `Completer` per (reference, argument): an async function from what the
user typed so far and the arguments already chosen to the values the *caller* may see (it
reads `current_principal()`; a value outside the caller's scope must never be offered). The
platform filters those by the typed prefix (case-insensitive), sorts them, and answers at
most 100 (MCP's cap) with the total and whether there are more. An argument nobody declared
gets an empty list, never an error: clients ask for every argument they show.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp_types import CompleteRequestParams, CompleteResult, Completion, ResourceTemplateReference

from mahavishnu.platform.errors import PlatformError

__all__ = ["MAX_VALUES", "Completer", "CompletionSpec", "complete_values", "install_completions"]

MAX_VALUES = 100
"""MCP: a completion answers at most 100 values."""

Completer = Callable[[str, Mapping[str, str]], Awaitable[Iterable[str]]]
"""(what the user typed, the other arguments already chosen) → candidates the caller may see."""


@dataclass(frozen=True, slots=True)
class CompletionSpec:
    """Suggestions for one argument of one resource template (`repo://{name}`) or prompt."""

    kind: Literal["resource", "prompt"]
    ref: str
    """The resource template's URI template, or the prompt's name."""
    argument: str
    complete: Completer


def complete_values(candidates: Iterable[str], typed: str) -> Completion:
    """The candidates starting with `typed` (any case), each once, sorted, at most MAX_VALUES."""
    prefix = typed.casefold()
    matches = sorted({c for c in candidates if c.casefold().startswith(prefix)}, key=_order)
    return Completion(values=matches[:MAX_VALUES], total=len(matches), has_more=len(matches) > MAX_VALUES)


def install_completions(specs: Sequence[CompletionSpec]) -> Callable[[MCPServer], None]:
    """A `configure_mcp` hook that answers completion/complete from `specs` (which also
    advertises the `completions` capability)."""
    table: dict[tuple[str, str, str], Completer] = {(s.kind, s.ref, s.argument): s.complete for s in specs}

    async def complete(_: ServerRequestContext[Any, Any], params: CompleteRequestParams) -> CompleteResult:
        ref, argument = params.ref, params.argument
        key = ("resource", ref.uri) if isinstance(ref, ResourceTemplateReference) else ("prompt", ref.name)
        completer = table.get((*key, argument.name))
        chosen = (params.context.arguments if params.context is not None else None) or {}
        try:
            candidates = await completer(argument.value, chosen) if completer is not None else ()
        except PlatformError:  # e.g. the chosen workflow is unknown to the caller: nothing to offer
            candidates = ()
        return CompleteResult(completion=complete_values(candidates, argument.value))

    def install(server: MCPServer) -> None:
        # MCPServer.completion() is untyped; its low-level server takes the same handler typed.
        server._lowlevel_server.add_request_handler("completion/complete", CompleteRequestParams, complete)

    return install


def _order(value: str) -> tuple[str, str]:
    return value.casefold(), value
