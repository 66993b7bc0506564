"""Records as Session-Buddy's pusher sends them (`session_buddy/outbox.py`), as JSON-ready dicts."""

from __future__ import annotations

from typing import Any

from mahavishnu.akosha.wire import Batch, Tombstone, Upsert


def upsert(
    memory_id: str,
    version: int,
    *,
    source: str = "box",
    tenant: str = "acme",
    content: str | None = None,
    **document: Any,
) -> dict[str, Any]:
    return {
        "source": source,
        "tenant": tenant,
        "memory_id": memory_id,
        "version": version,
        "op": "upsert",
        "content": content if content is not None else f"{memory_id} at version {version}",
        "kind": "note",
        "tags": ["python"],
        "project": "akosha",
        "session_id": None,
        "importance": 0.5,
        "created_at": "2026-01-02T03:04:05+00:00",
        "updated_at": f"2026-01-02T03:04:{version % 60:02d}+00:00",
        **document,
    }


def tombstone(memory_id: str, version: int, *, source: str = "box", tenant: str = "acme") -> dict[str, Any]:
    return {"source": source, "tenant": tenant, "memory_id": memory_id, "version": version, "op": "tombstone"}


def batch(*records: dict[str, Any], source: str = "box") -> dict[str, Any]:
    return {"source": source, "records": list(records)}


def parsed(*records: dict[str, Any], source: str = "box") -> list[Upsert | Tombstone]:
    """The records as the endpoint hands them to the inbox."""
    return Batch.model_validate(batch(*records, source=source)).records
