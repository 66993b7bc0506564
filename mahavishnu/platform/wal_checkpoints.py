"""Checkpointing a SQLite file's write-ahead log from a thread of its own, off every commit.

In WAL mode SQLite copies the log back into the database file (a checkpoint, with its fsyncs)
in whichever connection commits past `wal_autocheckpoint` pages: that commit pays tens of
milliseconds, every few dozen writes of a busy store (Session-Buddy's 100k-memory store bench:
p50 9.7 ms, p99 29 ms with it; p50 6.8 ms, p99 11.7 ms without). Here a daemon thread runs a
PASSIVE checkpoint every `CHECKPOINT_SECONDS` on a connection of its own (writers and readers
go on meanwhile), and the commits' own threshold is raised to `AUTOCHECKPOINT_PAGES`, a bound
for the log that holds even if this thread is not running (a process of another version, a
checkpoint that keeps finding readers in the way).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Final

from mahavishnu.platform.observability import get_logger

__all__ = ["AUTOCHECKPOINT_PAGES", "CHECKPOINT_SECONDS", "WalCheckpointer"]

log = get_logger("platform.wal_checkpoints")

CHECKPOINT_SECONDS: Final = 0.5
AUTOCHECKPOINT_PAGES: Final = 16_384
"""64 MB of 4 KB pages: how far the log may grow before a commit checkpoints it itself."""


class WalCheckpointer:
    """A daemon thread checkpointing `path`'s log from `start` until `stop`.

    `start` is called whenever a connection to the file opens (so the file exists) and starts
    the thread unless it runs; `stop` ends it (a later `start` begins again).
    """

    def __init__(self, path: Path, *, every: float = CHECKPOINT_SECONDS) -> None:
        self.path = path
        self._every = every
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name=f"wal-checkpoint-{self.path.name}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """End the thread; it finishes a checkpoint under way first."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def request_stop(self) -> None:
        """`stop` without waiting: for a finalizer, which must not block."""
        self._stop.set()

    def _run(self, stop: threading.Event) -> None:
        try:  # mode=rw: a file deleted meanwhile is not made again, empty
            connection = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=rw", uri=True, timeout=0, check_same_thread=False
            )
        except sqlite3.Error as exc:
            log.warning("wal_checkpointer_not_started", path=str(self.path), error=str(exc))
            return
        with contextlib.closing(connection):
            while not stop.wait(self._every):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.OperationalError:
                    continue  # busy (another process checkpoints): the next turn tries again
                except sqlite3.Error as exc:  # the file is gone or damaged: nothing more to do
                    log.warning("wal_checkpointer_stopped", path=str(self.path), error=str(exc))
                    return
