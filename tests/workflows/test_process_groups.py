"""Process groups that must not outlive their engine: the ledger, the reaper, and healing's kill,
with real processes (an engine here is a small Python process that is killed with -9)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mahavishnu.orchestrator.workflows.local.groups import (
    GroupGuard,
    boot_ticks,
    kill_groups,
    proc_stat,
    reap_dead_ledgers,
)
from mahavishnu.orchestrator.workflows.local.process import run_attempt

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

ENGINE = """
import subprocess, sys
from pathlib import Path
from mahavishnu.orchestrator.workflows.local.groups import GroupGuard

guard = GroupGuard.start(Path(sys.argv[1]), "engine", 2)
quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}  # no pipe of the test's
group = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True, **quiet)
guard.started(1, group.pid)
print(group.pid, flush=True)
sys.stdin.read()  # until the test kills this "engine"
"""


def members(pgid: int) -> list[int]:
    """Processes of the group that are alive (zombies are dead, only not yet reaped)."""
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if entry.isdigit() and int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found


def wait_until(condition: Callable[[], bool], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def group() -> Iterator[int]:
    """A process group like a run's: a shell leading it, and its child."""
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    assert wait_until(lambda: len(members(leader.pid)) == 2)
    yield leader.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGKILL)
    leader.wait()


def start_engine(ledgers: Path) -> tuple[subprocess.Popen[str], int]:
    """A stand-in engine with a ledger, a reaper and one running group (leader and child)."""
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE, str(ledgers)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert engine.stdout is not None
    pgid = int(engine.stdout.readline())
    assert wait_until(lambda: len(members(pgid)) == 2)
    return engine, pgid


def kill_reapers_of(engine: subprocess.Popen[str]) -> None:
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == engine.pid and b"reap" in Path(f"/proc/{entry}/cmdline").read_bytes():
                os.kill(int(entry), signal.SIGKILL)


def test_the_reaper_kills_the_groups_when_the_engine_is_killed(tmp_path: Path) -> None:
    engine, pgid = start_engine(tmp_path)
    engine.kill()
    engine.communicate()
    assert wait_until(lambda: not members(pgid)), "the group outlived its engine"
    assert wait_until(lambda: not list(tmp_path.glob("*.groups"))), "the reaper left the ledger"


def test_healing_kills_the_groups_of_a_dead_engine_whose_reaper_died_too(tmp_path: Path) -> None:
    engine, pgid = start_engine(tmp_path)
    try:
        kill_reapers_of(engine)
        engine.kill()
        engine.communicate()
        time.sleep(0.3)
        assert len(members(pgid)) == 2, "nothing else should have killed the group"

        reaped = reap_dead_ledgers(tmp_path)

        assert [r.killed for r in reaped.values()] == [[pgid]]
        assert [r.survivors for r in reaped.values()] == [[]]
        assert not members(pgid)  # gone before reap_dead_ledgers returned: a requeue may follow
        assert not list(tmp_path.glob("*.groups"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def test_a_running_engines_ledger_is_left_alone_until_it_closes(tmp_path: Path, group: int) -> None:
    guard = GroupGuard.start(tmp_path, "engine", 1)
    assert guard is not None
    assert guard.reaping
    guard.started(0, group)

    assert reap_dead_ledgers(tmp_path) == {}  # this engine (the test process) still runs
    assert len(members(group)) == 2

    guard.close()  # as if a worker thread were stuck in it at a stop: the reaper kills it

    assert not members(group)
    assert not guard.path.exists()


def test_a_reused_pid_is_not_killed(group: int) -> None:
    stat = proc_stat(group)
    assert stat is not None
    assert stat.pgrp == group

    # Written down before the leader started: the pid now belongs to a later process.
    assert kill_groups([(group, stat.start - 1)], wait_seconds=0.5).killed == []
    assert len(members(group)) == 2

    reaped = kill_groups([(group, boot_ticks())], wait_seconds=5)
    assert (reaped.killed, reaped.survivors) == ([group], [])
    assert not members(group)


def test_proc_stat_reads_past_an_odd_command_name(tmp_path: Path) -> None:
    odd = tmp_path / "a) 1 2 (b"
    sleep = subprocess.run(["sh", "-c", "command -v sleep"], capture_output=True, text=True, check=True)
    odd.symlink_to(sleep.stdout.strip())
    process = subprocess.Popen([str(odd), "30"], start_new_session=True)
    try:
        stat = proc_stat(process.pid)
        raw = Path(f"/proc/{process.pid}/stat").read_text()
        assert stat is not None
        assert (stat.pgrp, stat.start) == (process.pid, int(raw.rsplit(")", 1)[1].split()[19]))
    finally:
        process.kill()
        process.wait()
    assert proc_stat(process.pid) is None


def test_run_attempt_reports_the_group_it_started(tmp_path: Path) -> None:
    started: list[int] = []
    result = run_attempt(
        ["sh", "-c", "echo $$"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        timeout_seconds=10,
        kill_grace=1,
        tail_bytes=1024,
        log_path=None,
        log_max_bytes=0,
        on_start=started.append,
    )
    assert result.exit_code == 0
    assert started == [int(result.output_tail)]
