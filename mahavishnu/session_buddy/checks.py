"""Argument checks shared by Session-Buddy's stores: each names the field it refuses."""

from __future__ import annotations

import json
from typing import Any

from mahavishnu.platform import InvalidArgumentError

__all__ = ["label", "state", "text"]


def label(name: str, value: object, most: int) -> str:
    """A tag, project, repository or id as stored: trimmed, 1 to `most` characters, no controls."""
    found = value.strip() if isinstance(value, str) else ""
    if not found or len(found) > most or any(ord(c) < 32 for c in found):
        raise InvalidArgumentError(f"{name}: each value is 1 to {most} printable characters")
    return found


def text(name: str, value: object, most: int) -> str:
    """Free text (a memory, a summary): trimmed, not empty, at most `most` characters."""
    found = value.strip() if isinstance(value, str) else ""
    if not found:
        raise InvalidArgumentError(f"{name}: must not be empty")
    if len(found) > most:
        raise InvalidArgumentError(f"{name}: at most {most} characters")
    return found


def state(name: str, value: dict[str, Any] | None, most_bytes: int) -> dict[str, Any] | None:
    """A JSON object a caller keeps with a checkpoint, at most `most_bytes` once encoded."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{name}: must be a JSON object")
    if len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) > most_bytes:
        raise InvalidArgumentError(f"{name}: at most {most_bytes} bytes of JSON")
    return value
