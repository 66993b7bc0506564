"""The service's one rotation sweep at a time: started at start-up when values under an older
key remain, or by `rotate_encryption_key`; cancelled when the service stops (and resumed at the
next start, since what is done no longer matches)."""

from __future__ import annotations

import asyncio
import contextlib

from pydantic import BaseModel, Field

from mahavishnu.platform import Database, get_logger
from mahavishnu.platform.crypto import KeyRing
from mahavishnu.session_buddy.metrics import MemoryMetrics
from mahavishnu.session_buddy.rotation import Rotation, remaining

__all__ = ["RotationStatus", "Rotator"]

log = get_logger("session_buddy.rotation")


class RotationStatus(BaseModel):
    current_key_id: str = Field(description="The key new values are sealed under (an id, not the key).")
    key_ids: list[str] = Field(description="Every key of the ring, current first.")
    running: bool
    rotated: int = Field(description="Values re-sealed by the latest sweep.")
    remaining: int = Field(description="Values still under an older key; 0 means older keys can go.")
    unreadable: list[str] = Field(description="Values no key of the ring opens (table and key).")


class Rotator:
    def __init__(self, db: Database, ring: KeyRing, metrics: MemoryMetrics | None = None) -> None:
        self._db = db
        self._ring = ring
        self._metrics = metrics
        self._sweep: Rotation | None = None
        self._task: asyncio.Task[None] | None = None

    async def start_if_needed(self) -> RotationStatus:
        """Start a sweep unless one runs or nothing is left to re-seal; answer the progress."""
        running = self._task is not None and not self._task.done()
        if not running and await remaining(self._db, self._ring):
            self._sweep = Rotation(self._ring, on_progress=self._progressed)
            self._task = asyncio.create_task(self._run(self._sweep), name="session-buddy-rotation")
            log.info("rotation_started", key_id=self._ring.current_key_id)
        return await self.status()

    async def status(self) -> RotationStatus:
        sweep = self._sweep
        left = await remaining(self._db, self._ring)
        if self._metrics is not None:
            self._metrics.rotation_remaining.set(left)
        return RotationStatus(
            current_key_id=self._ring.current_key_id,
            key_ids=self._ring.key_ids,
            running=self._task is not None and not self._task.done(),
            rotated=sweep.rotated if sweep else 0,
            remaining=left,
            unreadable=list(sweep.errors) if sweep else [],
        )

    def _progressed(self, count: int) -> None:
        if self._metrics is not None:
            self._metrics.rotation_rewrapped.inc(count)
            self._metrics.rotation_remaining.dec(count)

    async def _run(self, sweep: Rotation) -> None:
        try:
            await sweep.run(self._db)
            await self.status()  # the gauge settles on what is left (values no key opens)
        except Exception as exc:  # a sweep that fails says why; the next start resumes it
            sweep.errors.append(f"{type(exc).__name__}: {exc}")
            log.error("rotation_failed", error=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
