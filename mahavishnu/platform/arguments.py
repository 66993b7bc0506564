"""Argument errors in one voice: `limit: must be between 1 and 200`, never pydantic's report.

Every tool of every service, and every MCP request the SDK validates, is judged by pydantic;
its errors carry internals (union branch tags such as `params.a.str`, "Input should be...",
and, in their string form, links to pydantic's documentation). This module turns the
structured errors into one short line per argument: its path, then what it must be. The
rejected value itself is never repeated (it may be long, or a secret pasted by mistake).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic_core import ErrorDetails

__all__ = ["Bounds", "describe_errors", "is_shape_error", "schema_bounds"]

Bounds = Mapping[str, tuple[Any, Any]]
"""Top-level argument → (minimum, maximum), for arguments with both (from the input schema)."""

_NOUNS = {
    "int": "an integer",
    "float": "a number",
    "decimal": "a number",
    "string": "a string",
    "str": "a string",
    "bool": "a boolean",
    "list": "an array",
    "tuple": "an array",
    "set": "an array",
    "dict": "an object",
    "model": "an object",
    "model_attributes": "an object",
    "none": "null",
}
_UNION_TAG = re.compile(r"^(?:str|int|float|bool|bytes|none|[a-z]+\[.*\]|function-[a-z]+\[.*\])$")
"""How pydantic names the branch of a union in an error's location (`params.a.str`)."""
_LIMITS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "greater_than": ("gt", "must be greater than {}"),
    "less_than": ("lt", "must be less than {}"),
    "string_too_short": ("min_length", "must be at least {} characters long"),
    "string_too_long": ("max_length", "must be at most {} characters long"),
    "too_short": ("min_length", "must have at least {} items"),
    "too_long": ("max_length", "must have at most {} items"),
    "string_pattern_mismatch": ("pattern", "must match the pattern {!r}"),
    "literal_error": ("expected", "must be {}"),
    "enum": ("expected", "must be {}"),
    "multiple_of": ("multiple_of", "must be a multiple of {}"),
}
_RANGE_KINDS = frozenset({"greater_than_equal", "less_than_equal"})


def schema_bounds(schema: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The inclusive range of each top-level argument that has both ends, so one bound broken
    is reported as the whole range (`must be between 1 and 200`)."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    return {
        name: (prop["minimum"], prop["maximum"])
        for name, prop in properties.items()
        if isinstance(prop, Mapping) and "minimum" in prop and "maximum" in prop
    }


def is_shape_error(error: ErrorDetails) -> bool:
    """Missing, or the wrong JSON type: the caller broke the schema, not a value constraint."""
    kind = error["type"]
    return kind == "missing" or kind == "int_from_float" or kind.endswith(("_type", "_parsing"))


def describe_errors(
    errors: Sequence[ErrorDetails], bounds: Bounds | None = None, *, within: str | None = None
) -> str:
    """One line for all of them: `limit: must be between 1 and 200; tag: expected a string`.

    Errors of the branches of one union collapse into one (`params.a: expected a string, an
    integer or a boolean`); an argument appears once even when it broke several rules. `within`
    is a first path part to leave out (the SDK locates a request's params under `params`)."""
    lines: dict[str, list[str]] = {}
    for error in errors:
        loc = error["loc"]
        path, in_union = _path(loc[1:] if within is not None and loc[:1] == (within,) else loc)
        text = _what(error, path, bounds or {})
        said = lines.setdefault(path, [])
        if text in said:
            continue
        if in_union and said and text.startswith("expected ") and said[-1].startswith("expected "):
            said[-1] = f"{said[-1]}, {text.removeprefix('expected ')}"
        else:
            said.append(text)
    return "; ".join(f"{path}: {' and '.join(_or(t) for t in texts)}" for path, texts in lines.items())


def _path(loc: Iterable[int | str]) -> tuple[str, bool]:
    """`params.a` and whether the last part named a union branch (dropped from the path)."""
    parts = list(loc)
    in_union = bool(parts) and isinstance(parts[-1], str) and _UNION_TAG.match(parts[-1]) is not None
    if in_union:
        parts = parts[:-1]
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)
    return path.lstrip(".") or "arguments", in_union


def _what(error: ErrorDetails, path: str, bounds: Bounds) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return "not a known argument"
    if is_shape_error(error):
        stem = kind.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float")
        return f"expected {_NOUNS.get(stem, 'a value of another type')}"
    if kind in _RANGE_KINDS and path in bounds:
        low, high = bounds[path]
        return f"must be between {_plain(low)} and {_plain(high)}"
    limit = _LIMITS.get(kind)
    context = error.get("ctx") or {}
    if limit is not None and limit[0] in context:
        return limit[1].format(_plain(context[limit[0]]))
    message = error["msg"].removeprefix("Input ").removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _plain(value: Any) -> Any:
    """`3600`, not `3600.0`: a whole float bound reads as the integer a person would type."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _or(text: str) -> str:
    """`expected a string, an integer, a boolean` → `... an integer or a boolean`."""
    head, comma, last = text.rpartition(", ")
    return f"{head} or {last}" if comma and text.startswith("expected ") else text
