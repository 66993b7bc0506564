"""Jobs a service runs beside its requests, for as long as it serves (a `Service.background`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine

__all__ = ["in_background", "woken_or_after"]


@contextlib.asynccontextmanager
async def in_background(job: Coroutine[None, None, None]) -> AsyncIterator[None]:
    """`job` as a task for as long as the block runs; cancelled and awaited at its end, so a
    stopping service leaves no job behind."""
    task = asyncio.create_task(job)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def woken_or_after(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass, whichever comes first: a worker with nothing to
    do sleeps so, woken at once by new work in this process, polling for other processes'."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
