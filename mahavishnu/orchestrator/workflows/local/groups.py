"""Process groups that must not outlive their engine, however the engine ends.

After a `kill -9` of the server, a restarted engine retries the run while the
first attempt may still run in the same repository (two `git pull`s fighting
over its lock). `GroupGuard` writes each group down as it starts and keeps a
reaper process that kills them when the engine dies; `reap_dead_ledgers` is the
same kill, done by a later engine's healing when the reaper died too.

This module imports only the standard library: it is also the reaper's program
(`python -I -S groups.py reap LEDGER`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "GroupGuard",
    "ProcStat",
    "Reaped",
    "boot_ticks",
    "kill_groups",
    "proc_stat",
    "reap_dead_ledgers",
    "reap_ledger",
    "signal_group",
]


def signal_group(pid: int, sig: int) -> None:
    """Signal a whole process group; one already gone (or never ours to signal) is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# Why a reaper process, not PR_SET_PDEATHSIG in the child: the death signal reaches only the
# group's leader, so its children (a shell's, git's helpers) run on; it fires when the *thread*
# that forked exits, not the process; it needs a `preexec_fn`, which is Python code run in the
# child of a threaded parent (documented unsafe) and costs every run subprocess's vfork fast path;
# and it kills the leader, whose start time is then gone: a later engine could no longer tell
# the orphaned group from a stranger's that got the reused pid. The reaper is one small process
# per engine, started once, stdlib only. It blocks reading a pipe that only the engine holds;
# the kernel closes that pipe when the engine dies, however it dies, and the reaper then kills
# every group of the engine's ledger whose leader still runs (with the start time written down),
# children and grandchildren alike. Worker threads' lifetimes do not matter to it.
#
# Why a ledger file, not a column written with the batched "mark started" update: the worker
# thread writes the group down as soon as it exists (one pwrite, no database round trip, no
# wait for the next cycle: the cycle marks a run started only once it has run half a second,
# and any group not yet written down would survive a crash); pids and start times are facts of
# this host, while the database is shared with engines on other hosts; and the reaper, a plain
# process without a database driver, can read it. The file never grows: one fixed record per
# worker thread (slot), overwritten by the slot's next run. An earlier run's record stays behind
# once it ended, and is harmless: its leader was reaped, so a process with its pid now started
# later than the record says.
#
# Why "started no later than" (the clock when the group is written down), not the leader's own
# start time from /proc/PID/stat: reading it takes three more system calls on the hot path, each a
# release and re-acquisition of the GIL that the event loop and the other workers contend for
# (measured: about a third of the cost of the fork itself). /proc's start times count clock ticks
# on CLOCK_BOOTTIME, which Python reads without a system call; a leader started before the
# record was written, a process that reuses its pid after it (nothing reuses it in between: the
# leader keeps its pid, as a zombie if need be, until the worker waits for it, after the record).
#
# Not covered: a process that leaves its group (setsid, or a daemonizing program); a crash
# between fork and the record (the child's exec, which Popen waits for); a leader that exits by
# itself in the instant its engine dies (its group is then no longer checkable; the engine kills
# a group as soon as its leader exits, so only that instant is open); a process still alive
# REAP_WAIT_SECONDS after its SIGKILL (logged as an error; its run is requeued all the same);
# an engine that hangs without dying (its leases expire and its runs are requeued, but it is
# alive, so nothing is killed). The ledgers live in the data folder: two engines on one host
# sharing a database but not a data folder heal each other's runs without seeing each other's
# ledgers (each one's reaper still works).

_LEDGER_SUFFIX = ".groups"
_LEDGER_MAGIC = "mahavishnu-groups"
_HEADER_BYTES = 320
"""The header record: magic, host name (at most 253 bytes), the engine's pid and start time."""
_SLOT_BYTES = 32
"""One slot: the group's id and a bound on its leader's start time ('%10d %20d\\n'), or blank."""
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
REAP_WAIT_SECONDS = 5.0
"""How long a reap waits for killed processes to be gone (a process in an uninterruptible
sleep, such as on a hung NFS mount, dies only when the sleep ends)."""
_REAP_POLL_SECONDS = 0.02


class ProcStat(NamedTuple):
    """The fields of /proc/PID/stat that tell a process apart after its pid is reused."""

    state: str
    """'Z' for a zombie: dead, not yet reaped by its parent."""
    pgrp: int
    start: int
    """Clock ticks after boot (field 22): a reused pid has a later one."""


def proc_stat(pid: int) -> ProcStat | None:
    """The process's state, group and start time; None when there is no such process (or no
    /proc). Raw os calls: this runs once per run on the engine's hot path."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 2048)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data[data.rfind(b")") + 2 :].split()  # the command name may hold spaces and ')'
    try:
        return ProcStat(fields[0].decode(), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


class Reaped(NamedTuple):
    """What a reap did, for the log: a survivor means a retry may overlap it."""

    killed: list[int]
    """Groups that had live processes and were sent SIGKILL."""
    survivors: list[int]
    """Of those, the groups with a process still alive when the wait ended."""


@dataclass(frozen=True, slots=True)
class _Ledger:
    host: str
    owner: int
    owner_start: int
    groups: list[tuple[int, int]]
    """(group id, latest leader start) per slot written so far."""


def _header(host: str, pid: int, start: int) -> bytes:
    return f"{_LEDGER_MAGIC} {host} {pid} {start}".encode().ljust(_HEADER_BYTES - 1) + b"\n"


def _read_ledger(path: Path) -> _Ledger | None:
    """The ledger at `path`; None when it vanished meanwhile or is not one."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    header = data[:_HEADER_BYTES].split()
    if len(header) != 4 or header[0] != _LEDGER_MAGIC.encode():
        return None
    groups = []
    for line in data[_HEADER_BYTES:].splitlines():
        with contextlib.suppress(ValueError):
            pgid, start = (int(field) for field in line.split())
            groups.append((pgid, start))
    try:
        return _Ledger(header[1].decode(), int(header[2]), int(header[3]), groups)
    except ValueError:
        return None


def boot_ticks() -> int:
    """Now, in the clock ticks after boot that /proc/PID/stat's start times count (no system
    call); one tick ahead, so a process started in this tick is never later than the answer."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS_PER_SECOND) + 1


def _leads(pgid: int, started_by: int) -> bool:
    """Whether the recorded leader is still the process with that pid (alive, or a zombie that
    keeps the pid taken): then every process in the group is the run's, not a stranger's. A
    process that took the pid after the leader was written down started later than the record."""
    stat = proc_stat(pgid)
    return stat is not None and stat.start <= started_by and stat.pgrp == pgid


def _groups_alive(pgids: Collection[int]) -> set[int]:
    """Of these groups, those with a process that is not a zombie (one scan of /proc)."""
    wanted, alive = set(pgids), set[int]()
    if not wanted:
        return alive
    with os.scandir("/proc") as entries:
        for entry in entries:
            stat = proc_stat(int(entry.name)) if entry.name.isdigit() else None
            if stat is not None and stat.pgrp in wanted and stat.state != "Z":
                alive.add(stat.pgrp)
    return alive


def kill_groups(groups: Iterable[tuple[int, int]], wait_seconds: float = REAP_WAIT_SECONDS) -> Reaped:
    """SIGKILL each (group id, latest leader start) whose leader is still that process, then wait
    until none of their processes is alive (zombies count as gone: only their parent's wait
    is missing, and a container's init may never do it)."""
    ours = {pgid for pgid, started_by in groups if _leads(pgid, started_by)}
    killed = _groups_alive(ours)
    for pgid in killed:
        signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + wait_seconds
    survivors = set(killed)
    while survivors and time.monotonic() < deadline:
        time.sleep(_REAP_POLL_SECONDS)
        survivors = _groups_alive(survivors)
    return Reaped(sorted(killed), sorted(survivors))


def reap_ledger(path: Path, wait_seconds: float = REAP_WAIT_SECONDS) -> Reaped:
    """Kill the live groups of a ledger whose engine is gone (or done), and remove the ledger
    once none is left: with survivors it stays, for the next healing to try again."""
    ledger = _read_ledger(path)
    if ledger is None:
        return Reaped([], [])
    reaped = kill_groups(ledger.groups, wait_seconds)
    if not reaped.survivors:
        path.unlink(missing_ok=True)
    return reaped


def reap_dead_ledgers(
    directory: Path, *, skip: Path | None = None, wait_seconds: float = REAP_WAIT_SECONDS
) -> dict[str, Reaped]:
    """Healing: the ledgers in `directory` of engines of this host that are no longer running
    (its pid gone, a zombie, or taken by a process started later) are reaped; returns what was
    reaped per ledger, those that had groups to kill only. `skip`: the caller's own ledger."""
    host = socket.gethostname()
    found: dict[str, Reaped] = {}
    with contextlib.suppress(FileNotFoundError):
        for path in sorted(directory.glob(f"*{_LEDGER_SUFFIX}")):
            ledger = _read_ledger(path) if path != skip else None
            if ledger is None or ledger.host != host:
                continue
            owner = proc_stat(ledger.owner)
            if owner is not None and owner.start == ledger.owner_start and owner.state != "Z":
                continue  # that engine still runs (its reaper, or its own stop, will do this)
            reaped = reap_ledger(path, wait_seconds)
            if reaped.killed or reaped.survivors:
                found[path.name] = reaped
    return found


class GroupGuard:
    """An engine's ledger of the process groups it runs, and the reaper that kills those groups
    when the engine dies (see the comment above for why it is done this way)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._lock = threading.Lock()
        self._reaper: subprocess.Popen[bytes] | None = None
        self._reapable = True
        """False once a reaper could not be started: no second try, no second warning."""

    @classmethod
    def start(cls, directory: Path, name: str, slots: int) -> GroupGuard | None:
        """Write an empty ledger (atomically: a reader sees all of it or nothing) and start its
        reaper. None where there is no /proc to tell processes apart (not Linux)."""
        me = proc_stat(os.getpid())
        if me is None:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}{_LEDGER_SUFFIX}"
        staging = directory / f".{name}.tmp"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            blank = b" " * (_SLOT_BYTES - 1) + b"\n"
            os.write(fd, _header(socket.gethostname(), os.getpid(), me.start) + blank * slots)
            os.rename(staging, path)
        except BaseException:
            os.close(fd)
            staging.unlink(missing_ok=True)
            raise
        guard = cls(path, fd)
        guard.ensure_reaper()
        return guard

    def started(self, slot: int, pid: int) -> None:
        """Write down the group just started by worker `slot`, before the worker waits for its
        leader (the engine's hot path: one pwrite; no fsync: the page cache outlives a killed
        process, and a crash of the machine leaves no process to kill)."""
        record = f"{pid:>10} {boot_ticks():>20}\n".encode()
        with self._lock:  # never into a closed (and maybe reused) descriptor
            if self._fd >= 0:
                os.pwrite(self._fd, record, _HEADER_BYTES + slot * _SLOT_BYTES)

    @property
    def reaping(self) -> bool:
        """Whether a reaper is running. Without one (no interpreter or source file to run, or
        it was killed and not yet replaced), only a later engine's healing is left."""
        return self._reaper is not None and self._reaper.poll() is None

    def ensure_reaper(self) -> bool:
        """Start a reaper unless one runs (someone may have killed the last) or none can be
        started; returns whether it started one."""
        if self.reaping or not self._reapable:
            return False
        self._reaper = _spawn_reaper(self.path)
        self._reapable = self._reaper is not None
        return self._reapable

    def close(self, wait_seconds: float = REAP_WAIT_SECONDS + 5) -> None:
        """The engine stops: the reaper sees the pipe close, kills any group still running (normally
        none is: the engine stopped them), removes the ledger and exits; this waits for that."""
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        reaper, self._reaper = self._reaper, None
        if reaper is None or reaper.poll() is not None:
            reap_ledger(self.path)
            return
        assert reaper.stdin is not None
        reaper.stdin.close()
        try:
            reaper.wait(wait_seconds)
        except subprocess.TimeoutExpired:
            reaper.kill()
            reaper.wait()


def _spawn_reaper(ledger: Path) -> subprocess.Popen[bytes] | None:
    """This file as a program: `-I -S` keeps the interpreter's start small and the reaper's
    imports to the standard library. Its own session keeps a terminal's Ctrl-C or a signal to
    the server's process group from taking it with the server."""
    script = Path(__file__)
    if not sys.executable or script.suffix not in (".py", ".pyc") or not script.is_file():
        return None
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(script), "reap", str(ledger)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def _reaper_main(ledger: Path) -> int:
    """Wait for the engine to end (the pipe on stdin closes), then reap its ledger. Signals
    that would stop the server gracefully are ignored here: the reaper must outlive it, and it
    exits by itself right after."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while os.read(0, 4096):
        pass
    reaped = reap_ledger(ledger)
    if reaped.killed:
        line = {
            "event": "process_groups_killed",
            "level": "warning",
            "logger": "mahavishnu.reaper",
            "timestamp": datetime.now(UTC).isoformat(),
            "ledger": ledger.name,
            "killed": reaped.killed,
            "survivors": reaped.survivors,
        }
        print(json.dumps(line), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["reap"] and len(sys.argv) == 3:
    sys.exit(_reaper_main(Path(sys.argv[2])))
