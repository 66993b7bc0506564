"""The thread side of the engine: claimed runs waiting for a worker, and the worker threads.

Each worker thread takes the next run it may start (respecting each
workflow's own concurrency limit), executes it start to finish with
blocking calls that release the GIL, and hands the outcome back. The event
loop is not on this path at all, so starting the next run never waits for
it; the loop only records outcomes and claims more runs, in batches.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from mahavishnu.orchestrator.workflows.local.process import Cancellation
from mahavishnu.orchestrator.workflows.records import Claimed

__all__ = ["RunQueue", "WorkerThreads"]


class RunQueue:
    """Claimed runs, waiting or executing, shared by the loop and the worker threads."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self._limits = dict(limits)
        self._cond = threading.Condition()
        self._waiting: deque[Claimed] = deque()
        self._executing: dict[str, Claimed] = {}
        self._per_workflow: dict[str, int] = {}
        self._cancel: dict[str, Cancellation] = {}
        self._closed = False

    def put(self, runs: Iterable[Claimed]) -> None:
        with self._cond:
            for run in runs:
                self._cancel[run.run_id] = Cancellation()
                self._waiting.append(run)
            self._cond.notify_all()

    def take(self) -> tuple[Claimed, Cancellation] | None:
        """Block until a run may start (None once closed)."""
        with self._cond:
            while not self._closed:
                for run in self._waiting:
                    limit = self._limits.get(run.workflow_name)
                    if limit is None or self._per_workflow.get(run.workflow_id, 0) < limit:
                        self._waiting.remove(run)
                        self._executing[run.run_id] = run
                        self._per_workflow[run.workflow_id] = self._per_workflow.get(run.workflow_id, 0) + 1
                        return run, self._cancel[run.run_id]
                self._cond.wait()
            return None

    def done(self, run: Claimed) -> None:
        with self._cond:
            self._executing.pop(run.run_id, None)
            self._cancel.pop(run.run_id, None)
            self._per_workflow[run.workflow_id] -= 1
            self._cond.notify_all()

    def cancel(self, matches: Callable[[Claimed], bool]) -> int:
        """Request cancellation of held runs that match; returns how many were newly cancelled."""
        with self._cond:
            hits = [
                self._cancel[r.run_id]
                for r in [*self._waiting, *self._executing.values()]
                if matches(r) and r.run_id in self._cancel and not self._cancel[r.run_id].requested
            ]
        for cancellation in hits:
            cancellation.request()
        return len(hits)

    def held(self) -> list[Claimed]:
        with self._cond:
            return [*self._executing.values(), *self._waiting]

    def executing_ids(self) -> set[str]:
        with self._cond:
            return set(self._executing)

    def sizes(self) -> tuple[int, int]:
        """(waiting, executing)."""
        with self._cond:
            return len(self._waiting), len(self._executing)

    def backlog(self) -> int:
        """Waiting runs that can start soon: those of workflows without a limit of their own,
        and of each workflow with one no more than its limit (the rest wait on that limit)."""
        with self._cond:
            count = 0
            per_workflow: dict[str, int] = {}
            for run in self._waiting:
                limit = self._limits.get(run.workflow_name)
                if limit is not None:
                    if per_workflow.get(run.workflow_id, 0) >= limit:
                        continue
                    per_workflow[run.workflow_id] = per_workflow.get(run.workflow_id, 0) + 1
                count += 1
            return count

    def saturated(self) -> set[str]:
        """Workflows with a limit of their own holding at least twice that many runs here:
        claiming more of them would only keep other workflows' runs from the free slots."""
        with self._cond:
            held = [*self._waiting, *self._executing.values()]
        counts: dict[tuple[str, int], int] = {}
        for run in held:
            if (limit := self._limits.get(run.workflow_name)) is not None:
                counts[run.workflow_id, limit] = counts.get((run.workflow_id, limit), 0) + 1
        return {workflow_id for (workflow_id, limit), n in counts.items() if n >= 2 * limit}

    def surplus(self, slots: int) -> list[Claimed]:
        """Take back the waiting runs that no free one of `slots` would start now (the newest):
        once taken they never start here, so they may be handed back to the shared queue."""
        with self._cond:
            count = len(self._waiting) - max(0, slots - len(self._executing))
            taken = [self._waiting.pop() for _ in range(max(0, count))]
            for run in taken:
                self._cancel.pop(run.run_id, None)
        return taken[::-1]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class WorkerThreads:
    """`count` threads, each running `execute` on the runs it takes from the queue.

    `execute` also gets the thread's slot (0 to count - 1): a thread runs one attempt at a
    time, so the slot names one place where the engine writes down the process group of the
    attempt in progress (see `groups.GroupGuard`).
    """

    def __init__(
        self, count: int, queue: RunQueue, execute: Callable[[Claimed, Cancellation, int], None]
    ) -> None:
        self._queue = queue
        self._execute = execute
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), name=f"mahavishnu-run-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _loop(self, slot: int) -> None:
        while (taken := self._queue.take()) is not None:
            run, cancellation = taken
            try:
                self._execute(run, cancellation, slot)
            finally:
                self._queue.done(run)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)
