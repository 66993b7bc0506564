"""Status answers shared by watchers: many clients polling one running workflow cost one read.

A client watching a 1,000-repository fan-out asks for its status every few tens of
milliseconds, and every answer was three queries and a page of views on the server's CPU, the
same CPU the fan-out's `git` processes need (`bench/fanout.py --poll`). So `get_workflow_status`
answers a running workflow from a page at most `ttl` seconds old, shared by every caller with
the same scope and arguments, after one small read. What keeps that honest:

- only running workflows are kept, and a page is used only after one indexed read says its
  workflow is still open (a close may come from any engine, in any process): a finished or
  cancelled workflow is never shown running; only its counts and runs may lag, by `ttl`;
- this service's own writes (a cancel, a dead-letter retry, healing) drop the workflow's pages;
- the key holds the caller's tag scope, so a page is only ever shared within one scope;
- internal waits (trigger's `wait`, the CLI's progress) read fresh, never from here.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

from mahavishnu.orchestrator.workflows.pages import WorkflowStatusPage

__all__ = ["STATUS_CACHE_SECONDS", "StatusCache"]

STATUS_CACHE_SECONDS = 0.1
"""The oldest a shared page of a running workflow may be: shorter than any client polls usefully."""
MOST_ENTRIES = 1024


class StatusCache:
    def __init__(self, ttl: float = STATUS_CACHE_SECONDS, most: int = MOST_ENTRIES) -> None:
        self._ttl = ttl
        self._most = most
        self._entries: dict[tuple[str, Hashable], tuple[float, WorkflowStatusPage]] = {}

    def get(self, workflow_id: str, key: Hashable) -> WorkflowStatusPage | None:
        entry = self._entries.get((workflow_id, key))
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, workflow_id: str, key: Hashable, page: WorkflowStatusPage) -> None:
        """Keep `page` for `ttl` seconds if its workflow is still running."""
        if page.finished_at is not None or self._ttl <= 0:
            return
        now = time.monotonic()
        if len(self._entries) >= self._most:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            while len(self._entries) >= self._most:
                del self._entries[next(iter(self._entries))]
        self._entries[(workflow_id, key)] = (now + self._ttl, page)

    def forget(self, workflow_id: str | None = None) -> None:
        """Drop the pages of one workflow (after a write to it), or of all of them."""
        if workflow_id is None:
            self._entries.clear()
        else:
            for key in [k for k in self._entries if k[0] == workflow_id]:
                del self._entries[key]
