"""A stop signal's handler never logs by itself: it runs between two bytecodes of the main
thread, perhaps inside a log write holding the log's lock, and a log call there deadlocked a
Session-Buddy stopped while it was logging a request (seen in CI: SIGTERM, then nothing, then
SIGKILL 20 s later). The event loop logs the request to stop at its next turn instead."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
import uvicorn

from mahavishnu.platform import server as server_module
from mahavishnu.platform.health import HealthState


class _Recorder:
    def __init__(self) -> None:
        self.said: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.said.append((event, fields))


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError("no request is made")


async def test_a_stop_signal_is_logged_by_the_loop_not_inside_its_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(server_module, "log", recorder)
    health = HealthState()
    server = server_module._DrainingServer(
        uvicorn.Config(_app), health, url="http://127.0.0.1:1/mcp", auth=True
    )
    server._loop = asyncio.get_running_loop()  # as `startup` sets it

    server.handle_exit(signal.SIGTERM, None)
    assert recorder.said == [], "the handler itself wrote nothing"
    assert health.draining
    assert server.should_exit
    await asyncio.sleep(0)
    assert recorder.said == [("shutdown_requested", {"signal": signal.SIGTERM})]

    server.handle_exit(signal.SIGTERM, None)  # a second signal while draining: said once
    await asyncio.sleep(0)
    assert len(recorder.said) == 1
