"""`RunQueue`: what the worker threads take, and what the engine may take back before it starts."""

from __future__ import annotations

from mahavishnu.orchestrator.workflows.local.workers import RunQueue
from mahavishnu.orchestrator.workflows.records import Claimed


def run(n: int) -> Claimed:
    return Claimed(f"run-{n}", "wf", "pause", f"repo-{n}", f"/repos/{n}", ["true"], 1, 3, False)


def test_the_surplus_is_what_no_free_slot_takes_newest_first_and_it_never_starts_here() -> None:
    queue = RunQueue({})
    queue.put(run(n) for n in range(6))
    started = queue.take()
    assert started is not None
    assert started[0].run_id == "run-0"
    # 3 slots, 1 executing: 2 free slots keep the two oldest waiting runs; the rest go back.
    surplus = queue.surplus(3)
    assert [r.run_id for r in surplus] == ["run-3", "run-4", "run-5"]
    assert [r.run_id for r in queue.held()] == ["run-0", "run-1", "run-2"]
    assert queue.sizes() == (2, 1)
    assert queue.cancel(lambda r: r.run_id == "run-5") == 0  # no longer this queue's to stop
    assert queue.surplus(3) == []


def test_no_surplus_while_slots_are_free() -> None:
    queue = RunQueue({})
    queue.put([run(1), run(2)])
    assert queue.surplus(4) == []
    assert queue.sizes() == (2, 0)
