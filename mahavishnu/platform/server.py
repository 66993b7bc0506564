"""Running a service: `run_service` from settings class to a serving process, over uvicorn
(HTTP, graceful stop on SIGTERM) or stdio.

A service that cannot start says why in one line and exits at once: the listening socket is
bound before anything else starts (a busy port is the first thing known, and `listening` is
logged only once the server accepts connections), the database is checked before the server
starts, and a start-up step that fails inside the lifespan ends the process with its reason
instead of leaving it waiting on tasks that will never finish. A stop is bounded too: work
still running in threads once the server stopped (a model still loading, an embedding batch)
gets LEFTOVER_THREAD_SECONDS, then the process exits without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn

from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.observability import Metrics, configure_logging, configure_tracing, get_logger
from mahavishnu.platform.settings import PlatformSettings, mask_url

if TYPE_CHECKING:  # the MCP SDK, Starlette and SQLAlchemy load after the port is bound (see run_service)
    from mcp.server import MCPServer

    from mahavishnu.platform.app import Platform, Service
    from mahavishnu.platform.health import HealthState

__all__ = [
    "SCHEMA_CHECK_SECONDS",
    "StartupError",
    "bind_socket",
    "check_schema",
    "leave_busy_threads",
    "run_service",
    "serve_http",
    "serve_stdio",
]

S = TypeVar("S", bound=PlatformSettings)
SCHEMA_CHECK_SECONDS = 15.0
LEFTOVER_TASK_SECONDS = 1.0
"""After the server stops (or fails to start): how long tasks still pending may take to finish
on cancellation before the process exits without them."""
LEFTOVER_THREAD_SECONDS = 5.0
"""After the server stopped: how long work still running in threads may take before the process
exits without it. A thread cannot be cancelled, and the interpreter joins worker threads at
exit: a SIGTERM during the embedding model's load kept a stopped server alive until the load
ended (20 s and more on a busy machine)."""
log = get_logger("mahavishnu.server")


class StartupError(ConfigurationError):
    """The service could not start for a reason outside its settings' validity (a busy port, an
    unreachable database, a failing start-up step); the message is one line for the operator."""


def run_service(
    settings_cls: type[S],
    factory: Callable[[S, Metrics], Service],
    *,
    version: str,
    overrides: Mapping[str, Any] | None = None,
    stdio: bool = False,
) -> None:
    """Load a service's settings, refuse what must not start, and serve it until stopped.

    Everything that names the service follows from its settings class: the variables read, the
    port, the metric prefix, the `service_name` of every log line and the traces' `service.name`.
    A reason not to start (bad or insecure settings, a busy port, a database that cannot be used)
    is raised as a ConfigurationError (a StartupError when the settings themselves are fine)
    whose message is one line for the operator; the caller prints it.
    """
    settings = settings_cls.load(**(overrides or {}))
    stream = sys.stderr if stdio else sys.stdout  # over stdio, stdout carries the protocol
    configure_logging(settings.log_level, settings.log_format, stream=stream, service=settings.service_name)
    settings.ensure_secure(listening=not stdio)
    for warning in settings.insecure_warnings(listening=not stdio):
        log.warning("insecure_configuration", problem=warning)
    _log_home(settings)
    with contextlib.ExitStack() as stack:
        # First, before the heavy imports below: a busy port is known in well under a second.
        sock = None if stdio else stack.enter_context(contextlib.closing(bind_socket(settings)))
        from mahavishnu.platform.app import build_app, build_stdio

        check_schema(settings)
        tracer_provider = configure_tracing(
            settings.service_name, version, settings.otel_exporter_otlp_endpoint
        )
        stack.callback(tracer_provider.shutdown)  # flush spans still queued for the OTLP exporter
        metrics = Metrics(prefix=settings.metric_prefix)
        service = factory(settings, metrics)
        if sock is None:
            serve_stdio(build_stdio(service, metrics), service.background)
        else:
            serve_http(build_app(service, metrics), settings, sock)
    leave_busy_threads(LEFTOVER_THREAD_SECONDS)


def leave_busy_threads(grace: float) -> None:
    """Wait up to `grace` seconds for the process's other threads to end; if some are still busy
    then, say which and exit at once (status 0: the service itself stopped cleanly).

    Daemon threads are not waited for (the interpreter does not wait for them either); logs and
    standard streams are flushed before the exit, which skips the interpreter's own clean-up."""
    deadline = time.monotonic() + grace
    for thread in _other_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    busy = [thread.name for thread in _other_threads()]
    if not busy:
        return
    log.warning("threads_abandoned", threads=busy, grace_seconds=grace)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe must not turn a clean stop into a crash
            stream.flush()
    os._exit(0)


def _other_threads() -> list[threading.Thread]:
    current = threading.current_thread()
    return [t for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive()]


def _log_home(settings: PlatformSettings) -> None:
    """Which settings file and data folder this process uses: the working folder changes neither."""
    settings_file = settings.settings_file()
    log.info(
        "settings",
        settings_file=str(settings_file),
        settings_file_found=settings_file.is_file(),
        files_read=[str(f) for f in settings.config_files()],
        data_dir=str(settings.data_dir.absolute()),
        database=mask_url(settings.effective_database_url),
    )


def bind_socket(settings: PlatformSettings) -> socket.socket:
    """The listening socket, bound before anything else starts: a busy port is a StartupError
    naming the address and how to choose another, not a log line after a full start."""
    prefix = settings.env_prefix
    address = f"[{settings.host}]" if ":" in settings.host else settings.host
    where = f"{address}:{settings.port}"
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot listen on {where}: {exc.strerror}; choose another address with --host or {prefix}HOST"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise StartupError(_bind_problem(where, exc, prefix)) from None
    return sock


def _bind_problem(where: str, exc: OSError, prefix: str) -> str:
    port_hint = f"choose another port with --port PORT or {prefix}PORT"
    if exc.errno == errno.EADDRINUSE:
        return f"{where} is already in use (another process listens there); {port_hint}"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on {where} (ports below 1024 need privileges); {port_hint}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where} is not an address of this machine; choose another with --host or {prefix}HOST"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def check_schema(settings: PlatformSettings) -> None:
    """Bring the database to a schema this version can use before the server starts.

    A schema it must refuse is a ConfigurationError; a database it cannot reach, or that does
    not answer within SCHEMA_CHECK_SECONDS, is a StartupError naming it (password masked).
    An outage after the start is the service's to ride out (it serves degraded and retries).
    """
    if settings.migrations is None:
        return
    from mahavishnu.platform.db import Database

    async def check() -> None:
        db = Database.from_settings(settings, create=True)
        try:
            async with asyncio.timeout(SCHEMA_CHECK_SECONDS):
                await db.ensure_schema(upgrade=settings.db_auto_upgrade)
        finally:
            await db.dispose()

    try:
        asyncio.run(check())
    except ConfigurationError:
        raise
    except Exception as exc:
        variable = settings.env_names()["database_url"]
        reason = (
            f"no answer in {SCHEMA_CHECK_SECONDS:g} s" if isinstance(exc, TimeoutError) else _first_line(exc)
        )
        raise StartupError(
            f"the database at {mask_url(settings.effective_database_url)} is unreachable ({reason}); "
            f"check {variable} (setting: database_url)"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class _DrainingServer(uvicorn.Server):
    """Says `listening` once it accepts connections, and flags the service as draining the moment
    a stop signal arrives, so /ready turns 503 while uvicorn finishes the requests in flight."""

    def __init__(self, config: uvicorn.Config, health: HealthState, *, url: str, auth: bool) -> None:
        super().__init__(config)
        self._health = health
        self._url = url
        self._auth = auth
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        if self.started:
            log.info("listening", url=self._url, auth=self._auth)

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
        """A signal handler: it runs between two bytecodes of the main thread, perhaps inside a
        log write that holds the log's lock, so it never logs itself (that deadlocked a stop
        that came while a request was being logged); the loop logs at its next turn."""
        if not self._health.draining and self._loop is not None:
            self._loop.call_soon_threadsafe(functools.partial(log.info, "shutdown_requested", signal=sig))
        self._health.draining = True
        super().handle_exit(sig, frame)


def serve_http(platform: Platform, settings: PlatformSettings, sock: socket.socket) -> None:
    """Serve on `sock` (from `bind_socket`) until a stop signal; a failed start is a StartupError."""
    config = uvicorn.Config(
        platform.app,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is judged by our own trusted-proxy list, not uvicorn's
        lifespan="on",
        timeout_graceful_shutdown=round(settings.shutdown_grace_seconds),
    )
    host, port = sock.getsockname()[:2]
    address = f"[{host}]" if ":" in host else host
    server = _DrainingServer(
        config, platform.health, url=f"http://{address}:{port}/mcp", auth=settings.auth_enabled
    )
    try:
        _run_bounded(server.serve(sockets=[sock]), config.get_loop_factory())
    except SystemExit:  # uvicorn's word for "the lifespan's start-up failed"
        reason = platform.startup_failure or "a start-up step failed (see the log)"
        raise StartupError(reason) from None


def _run_bounded(
    main: Coroutine[Any, Any, None], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> None:
    """`asyncio.run`, except that tasks still pending when `main` ends get LEFTOVER_TASK_SECONDS
    to finish on cancellation, not forever: one stuck task (a database driver closing a
    connection whose thread is gone) must not keep a stopped or failed server alive."""
    loop = loop_factory() if loop_factory is not None else asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=LEFTOVER_TASK_SECONDS))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def serve_stdio(
    server: MCPServer, background: Callable[[], AbstractAsyncContextManager[None]] | None
) -> None:
    """Serve one desktop client over stdin/stdout, with the service's background jobs running."""

    async def main() -> None:
        async with background() if background is not None else contextlib.nullcontext():
            await server.run_stdio_async()

    _run_bounded(main(), None)  # not anyio.run: it would wait for every executor thread to end
