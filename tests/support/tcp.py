"""Byte pumps for the loopback TCP proxies tests put between a client and a server."""

from __future__ import annotations

import contextlib
import socket

__all__ = ["pipe"]


def pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy `source` to `sink` until either end closes, then shut both (run it in a thread)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
