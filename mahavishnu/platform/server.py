"""Running a built platform: uvicorn for HTTP (graceful stop on SIGTERM), or stdio."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from types import FrameType

import anyio
import uvicorn
from mcp.server import MCPServer

from mahavishnu.platform.app import Platform
from mahavishnu.platform.health import HealthState
from mahavishnu.platform.observability import get_logger
from mahavishnu.platform.settings import PlatformSettings

__all__ = ["serve_http", "serve_stdio"]

log = get_logger("mahavishnu.server")


class _DrainingServer(uvicorn.Server):
    """Flags the service as draining the moment a stop signal arrives, so /ready turns 503
    while uvicorn finishes the requests already in flight."""

    def __init__(self, config: uvicorn.Config, health: HealthState) -> None:
        super().__init__(config)
        self._health = health

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGINT/SIGTERM as uvicorn does, but do not re-raise them afterwards:
        a graceful stop that finished its in-flight requests exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._health.draining:
            log.info("shutdown_requested", signal=sig)
        self._health.draining = True
        super().handle_exit(sig, frame)


def serve_http(platform: Platform, settings: PlatformSettings) -> None:
    config = uvicorn.Config(
        platform.app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is judged by our own trusted-proxy list, not uvicorn's
        lifespan="on",
        timeout_graceful_shutdown=round(settings.shutdown_grace_seconds),
    )
    log.info("listening", url=f"http://{settings.host}:{settings.port}/mcp", auth=settings.auth_enabled)
    _DrainingServer(config, platform.health).run()


def serve_stdio(
    server: MCPServer, background: Callable[[], AbstractAsyncContextManager[None]] | None
) -> None:
    """Serve one desktop client over stdin/stdout, with the service's background jobs running."""

    async def main() -> None:
        async with background() if background is not None else contextlib.nullcontext():
            await server.run_stdio_async()

    anyio.run(main)
