"""When the local engine's database cycle comes, and how much it claims.

The database's CPU competes with the runs themselves, so cycles work in batches, never once per
run: a claim when the runs held locally run low (a quarter of what may be held), a record when
half of that has finished or `RECORD_DELAY` has passed while runs execute, and at once at the tail
of the work so a workflow closes without delay. Pure arithmetic over counts, so the policy reads
in one place and is the same for the loop and the worker threads.

How much may be held follows how long runs take (`run_seconds`, the recent mean): about
`CLAIM_HORIZON` seconds of work per slot, never more than `PREFETCH` runs. Short runs need a
deep prefetch (a claim per run would cost more than the run), long ones do not: an engine that
held many would leave other engines sharing the database idle while its own slots work through
them. A claim thus covers a fraction of a second of work whatever the run length (claims
come a few times a second at most), and the runs one engine holds back from the others are
worth about that much time.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

__all__ = ["CLAIM_HORIZON", "FIRST_DEPTH", "PREFETCH", "RECORD_DELAY", "Pacing", "drain", "split_started"]

_T = TypeVar("_T")
PREFETCH = 32
"""Most claimed runs held locally per worker (short runs), so a freed slot never waits for the database."""
FIRST_DEPTH = 2
"""Runs held per worker before any run length is known: one executing, one waiting."""
CLAIM_HORIZON = 0.25
"""Seconds of work per worker a claim covers (beyond the run executing)."""
RECORD_DELAY = 0.5
"""Longest an outcome waits to be recorded while runs execute (status and progress lag by this)."""


@dataclass(frozen=True, slots=True)
class Pacing:
    slots: int
    """Worker threads (`max_concurrent_runs`)."""
    poll_seconds: float
    run_seconds: float | None = None
    """Recent mean length of an attempt (None until one was recorded): sets the prefetch depth."""

    @property
    def depth(self) -> int:
        """Runs held per worker: the one executing and `CLAIM_HORIZON` seconds more of them."""
        if self.run_seconds is None:
            return FIRST_DEPTH
        ahead = math.ceil(CLAIM_HORIZON / max(self.run_seconds, CLAIM_HORIZON / PREFETCH))
        return max(FIRST_DEPTH, min(PREFETCH, 1 + ahead))

    @property
    def held(self) -> int:
        """Most runs held locally, waiting or executing."""
        return self.slots * self.depth

    def observed(self, seconds: Sequence[float]) -> Pacing:
        """This pacing after attempts of these lengths (a mean halfway between the old and the
        batch's, so one odd batch moves it only so far and a new kind of work is seen at once)."""
        if not seconds:
            return self
        mean = sum(seconds) / len(seconds)
        return replace(self, run_seconds=mean if self.run_seconds is None else (self.run_seconds + mean) / 2)

    @property
    def shares_the_tail(self) -> bool:
        """Runs take long enough (`CLAIM_HORIZON` or more) that once the queue is empty a run
        waiting here is better handed back for any engine's free slot: the cycle a freed slot
        then waits for costs little beside the run, a run waiting behind a busy slot a whole one."""
        return self.run_seconds is not None and self.run_seconds >= CLAIM_HORIZON

    @property
    def low_water(self) -> int:
        """Claim more when this few runs wait locally (enough for the next claim to arrive)."""
        return self.held // 4

    @property
    def record_batch(self) -> int:
        """Record at once when this many outcomes wait."""
        return self.held // 2

    def wait_seconds(self, *, busy: bool) -> float:
        """Longest sleep before the next cycle: short while runs execute or outcomes wait."""
        return min(RECORD_DELAY, self.poll_seconds) if busy else self.poll_seconds

    def claim_size(
        self, *, backlog: int, waiting: int, executing: int, tail: bool = False
    ) -> tuple[int, int]:
        """(room, want): how many runs would fit, and how many to claim this cycle.

        `backlog` counts waiting runs that a workflow's own limit does not hold back. Above the
        low-water mark nothing is claimed (claiming now would only mean smaller batches); when
        idle only a first few are claimed, so they start at once and the rest follow next cycle.
        At the `tail` (`shares_the_tail`, and the queue ran empty) only free slots are filled.
        """
        if tail:
            room = max(0, self.slots - backlog - executing)
            return room, room
        if backlog > self.low_water:
            return 0, 0
        room = max(0, self.held - backlog - executing)
        want = min(room, 2 * self.slots) if not waiting and not executing else room
        return room, want

    def wake_for_outcome(self, *, waiting: int, drained: bool, finished: int) -> bool:
        """Whether an outcome just handed over should wake the cycle now rather than at its delay."""
        return (
            waiting == 0  # the tail: record now, so the workflow closes without delay
            or (waiting <= self.low_water and not drained)
            or finished >= self.record_batch
        )


def split_started(
    began: Sequence[tuple[str, datetime]], done: Collection[str], now: datetime
) -> tuple[list[tuple[str, datetime]], list[tuple[str, datetime]]]:
    """(later, now): starts of runs still executing, split by whether they are worth a statement
    yet. Recording sets the start of finished runs (`done`); of the others, only those running for
    a while are written now (most runs of a fan-out end before the next cycle)."""
    young = now - timedelta(seconds=RECORD_DELAY)
    pending = [(run_id, at) for run_id, at in began if run_id not in done]
    return [s for s in pending if s[1] > young], [s for s in pending if s[1] <= young]


def drain(items: deque[_T]) -> list[_T]:
    """Take what is there now, leaving the deque to the threads that append to it."""
    taken: list[_T] = []
    with contextlib.suppress(IndexError):
        while True:
            taken.append(items.popleft())
    return taken
