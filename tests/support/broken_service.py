"""`python -m tests.support.broken_service serve broken ...`: the `mahavishnu` command with a service
whose start-up step fails inside the lifespan, after the port is bound and the server has begun.

Its background job also leaves behind a task that will not end when cancelled (as a database
driver's connection close can, waiting on a thread that is gone): a runner that waited for every
task on the way out would never exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mahavishnu.cli import SERVICES, ServiceEntry, app
from mahavishnu.platform import Metrics, PlatformSettings, Service, UnavailableError

PROBLEM = "the widget store at 127.0.0.1:9 did not answer"


class BrokenSettings(PlatformSettings, service_name="broken", env_prefix="BROKEN_", default_port=8699):
    pass


_stubborn: list[asyncio.Task[None]] = []


async def _ignore_cancellation() -> None:
    while True:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)


def create_service(settings: BrokenSettings, metrics: Metrics) -> Service:
    @contextlib.asynccontextmanager
    async def background() -> AsyncIterator[None]:
        _stubborn.append(asyncio.get_running_loop().create_task(_ignore_cancellation()))
        await asyncio.sleep(0)
        raise UnavailableError(PROBLEM)
        yield  # never reached: the start-up step fails first

    return Service(
        name=settings.service_name,
        version="1.0.0",
        instructions="Fails to start.",
        settings=settings,
        tools=[],
        background=background,
    )


if __name__ == "__main__":
    SERVICES["broken"] = ServiceEntry(BrokenSettings, lambda: create_service)
    app()
