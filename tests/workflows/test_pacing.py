"""The local engine's pacing: when its database cycle comes and how much it claims (pure rules)."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

import pytest

from mahavishnu.orchestrator.workflows.local.pacing import (
    CLAIM_HORIZON,
    FIRST_DEPTH,
    PREFETCH,
    RECORD_DELAY,
    Pacing,
    drain,
    split_started,
)

PACING = Pacing(slots=4, poll_seconds=2.0, run_seconds=0.001)
"""Short runs: holds 4 * 32 = 128 runs; low water 32, record batch 64."""


def test_the_figures_follow_the_slots() -> None:
    assert PACING.held == 4 * PREFETCH
    assert (PACING.low_water, PACING.record_batch) == (PACING.held // 4, PACING.held // 2)


def test_the_prefetch_covers_a_fraction_of_a_second_of_work_per_slot() -> None:
    """Long runs are not hoarded: engines sharing the database then share them."""
    unknown = Pacing(slots=4, poll_seconds=2.0)
    assert unknown.held == 4 * FIRST_DEPTH  # nothing measured yet: one waiting per slot
    assert Pacing(4, 2.0, run_seconds=0.3).depth == 1 + 1  # the one executing and one more
    assert Pacing(4, 2.0, run_seconds=CLAIM_HORIZON / 10).depth == 1 + 10
    assert Pacing(4, 2.0, run_seconds=60.0).depth == FIRST_DEPTH
    assert Pacing(4, 2.0, run_seconds=0.0).depth == PREFETCH


def test_the_run_length_is_a_mean_that_follows_the_batches() -> None:
    first = Pacing(slots=4, poll_seconds=2.0).observed([0.2, 0.4])
    assert first.run_seconds == pytest.approx(0.3)
    assert first.observed([]) is first
    assert first.observed([0.1]).run_seconds == pytest.approx(0.2)  # halfway to the new batch


def test_idle_claims_a_first_few_only() -> None:
    """Nothing waiting or executing: two per slot now, so they start at once; the rest next cycle."""
    assert PACING.claim_size(backlog=0, waiting=0, executing=0) == (128, 8)


def test_busy_claims_the_room_left_and_nothing_above_low_water() -> None:
    assert PACING.claim_size(backlog=10, waiting=10, executing=4) == (128 - 10 - 4, 128 - 10 - 4)
    assert PACING.claim_size(backlog=PACING.low_water + 1, waiting=40, executing=4) == (0, 0)
    assert PACING.claim_size(backlog=0, waiting=200, executing=4) == (124, 124)  # held back by limits


def test_the_cycle_sleeps_short_only_while_work_is_on() -> None:
    assert PACING.wait_seconds(busy=True) == RECORD_DELAY
    assert PACING.wait_seconds(busy=False) == 2.0
    assert Pacing(slots=1, poll_seconds=0.05).wait_seconds(busy=True) == 0.05


def test_an_outcome_wakes_the_cycle_at_the_tail_when_low_or_when_outcomes_pile_up() -> None:
    wake = PACING.wake_for_outcome
    assert wake(waiting=0, drained=True, finished=1)  # the tail: close the workflow now
    assert wake(waiting=PACING.low_water, drained=False, finished=1)  # time to claim more
    assert not wake(waiting=PACING.low_water, drained=True, finished=1)  # the queue has no more
    assert wake(waiting=100, drained=True, finished=PACING.record_batch)
    assert not wake(waiting=100, drained=False, finished=PACING.record_batch - 1)


def test_only_starts_older_than_the_record_delay_are_written_now() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    old, young = now - timedelta(seconds=RECORD_DELAY * 2), now - timedelta(seconds=RECORD_DELAY / 2)
    began = [("finished", old), ("long", old), ("short", young)]
    later, at_once = split_started(began, done={"finished"}, now=now)
    assert later == [("short", young)]
    assert at_once == [("long", old)]


def test_drain_takes_what_is_there() -> None:
    items = deque([1, 2, 3])
    assert drain(items) == [1, 2, 3]
    assert not items
    assert drain(items) == []


def test_at_the_tail_of_long_runs_only_free_slots_are_filled() -> None:
    long = Pacing(slots=4, poll_seconds=2.0, run_seconds=CLAIM_HORIZON * 2)
    assert long.shares_the_tail
    assert not PACING.shares_the_tail  # short runs: a waiting run costs another engine little
    assert not Pacing(slots=4, poll_seconds=2.0).shares_the_tail  # nothing measured yet
    assert long.claim_size(backlog=0, waiting=0, executing=3, tail=True) == (1, 1)
    assert long.claim_size(backlog=2, waiting=2, executing=4, tail=True) == (0, 0)
    assert long.claim_size(backlog=0, waiting=0, executing=3) == (long.held - 3, long.held - 3)
