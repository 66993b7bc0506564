"""What every workflow use case shares: the stores it reads, and IDs taken by unique prefix."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.workflows import reads
from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition
from mahavishnu.orchestrator.workflows.ports import WorkflowEngine
from mahavishnu.orchestrator.workflows.shortids import FULL, SHORTEST, ambiguous, prefix_of, short_ids
from mahavishnu.orchestrator.workflows.status_cache import StatusCache
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import NotFoundError

__all__ = ["ServiceBase", "listed", "shown"]

CANDIDATES = 6
"""How many IDs a prefix lookup reads: one is unique, more are named in the error (a few)."""
NEIGHBOURS = 10_000
"""At most this many IDs sharing a display prefix are read (UUIDv7: made within about a minute)."""


class ServiceBase:
    def __init__(
        self,
        db: Database,
        manifest: ManifestStore,
        definitions: Mapping[str, WorkflowDefinition],
        engine: WorkflowEngine | None = None,
    ) -> None:
        self._db = db
        self._manifest = manifest
        self._definitions = definitions
        self._engine = engine
        self._status_cache = StatusCache()

    async def _resolve(self, principal: Principal, text: str, key: reads.IdColumn, what: str) -> str:
        """The one ID in the caller's scope that `text` is a prefix of (or is). IDs outside the
        scope neither match nor make a prefix ambiguous: the caller cannot learn of them."""
        prefix = prefix_of(text, what)
        if prefix is None:
            raise NotFoundError(f"no {what} {shown(text)}")
        if len(prefix) == FULL:
            return prefix  # the whole ID: the use case's own scoped read says if it is there
        async with self._db.session() as session:
            found = await reads.ids_starting(session, principal, self._db.dialect, key, [prefix], CANDIDATES)
        if not found:
            raise NotFoundError(f"no {what} {shown(text)}")
        if len(found) > 1:
            raise ambiguous(what, prefix, found)
        return found[0]

    async def _short(self, principal: Principal, ids: Collection[str], key: reads.IdColumn) -> dict[str, str]:
        """Short IDs for display, unique among every ID in the caller's scope (not only `ids`):
        only IDs sharing the first `SHORTEST` characters with one of them can collide."""
        heads = sorted({i[:SHORTEST] for i in ids if len(i) == FULL})
        if not heads:
            return {}
        async with self._db.session() as session:
            among = await reads.ids_starting(session, principal, self._db.dialect, key, heads, NEIGHBOURS)
        return short_ids(ids, among=among)


def shown(value: str, limit: int = 80) -> str:
    """A caller's value quoted for an error message, cut so an answer never echoes a huge input."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def listed(names: Sequence[str], most: int = 5) -> str:
    """A few names and a count of the rest: an error answer stays small whatever was asked."""
    text = ", ".join(shown(n, 64) for n in names[:most])
    return text if len(names) <= most else f"{text} and {len(names) - most} more"
