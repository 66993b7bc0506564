"""Idempotency keys of `trigger_workflow`: a retried trigger creates one workflow, not two.

A caller that cannot tell whether its trigger arrived (a timeout, a dropped connection, a
replica that died after the commit) sends it again with the same key. The workflow row keeps the
key and a fingerprint of what was asked; a unique index on (requested_by, idempotency_key) makes
the database the judge, so it holds across replicas and concurrent calls: the first insert wins,
the others find its row. The same key with other arguments is a conflict, never a second
workflow and never a silent answer about a different request.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows.models import Workflow
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.errors import ConflictError, InvalidArgumentError

__all__ = [
    "KEY_MAX_LENGTH",
    "KEY_PATTERN",
    "IdempotencyConflictError",
    "check_key",
    "earlier",
    "fingerprint",
]

KEY_MAX_LENGTH = 128
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
"""Letters, digits and `. _ : -` (a UUID, a ULID, `deploy-2026-12-03:7` all fit); nothing a log
line or an error message would have to quote."""
_KEY = re.compile(KEY_PATTERN)


class IdempotencyConflictError(ConflictError):
    """The key was used before, by the same caller, for a different request (HTTP's 409)."""


def check_key(key: str | None) -> str | None:
    """The key as given, or an argument error saying what a key may hold."""
    if key is None:
        return None
    if not 1 <= len(key) <= KEY_MAX_LENGTH or _KEY.fullmatch(key) is None:
        raise InvalidArgumentError(
            f"idempotency_key: must be 1 to {KEY_MAX_LENGTH} characters of letters, digits and . _ : - "
            "(starting with a letter or digit)"
        )
    return key


def fingerprint(
    principal: Principal,
    workflow: str,
    *,
    tag: str | None,
    role: str | None,
    repos: Sequence[str] | None,
    params: Mapping[str, Any] | None,
) -> str:
    """What was asked, as a digest: the arguments as given (repositories as a set) and the
    caller's tag scope, which decides what the same arguments select."""
    request = {
        "workflow": workflow,
        "tag": tag,
        "role": role,
        "repos": sorted(set(repos)) if repos else None,
        "params": dict(params or {}),
        "scope": sorted(principal.tags),
    }
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


async def earlier(session: AsyncSession, principal: Principal, key: str, request: str) -> Workflow | None:
    """The workflow this caller already triggered with `key`, if any; a conflict if it was
    triggered with other arguments."""
    found = await session.scalar(
        select(Workflow).where(Workflow.requested_by == principal.subject, Workflow.idempotency_key == key)
    )
    if found is not None and found.request_fingerprint != request:
        raise IdempotencyConflictError(
            f"idempotency_key {key!r} was used for a different request (workflow {found.id}); "
            "send the same arguments to get that workflow, or use a new key"
        )
    return found
