"""Closed-loop load generator for one MCP endpoint, run as its own process by mcp_throughput.py.

Raw HTTP/1.1 over keep-alive asyncio connections, one pre-built request per connection: a
general-purpose client (httpx) spends a large fraction of the CPU per request that the Python
servers it measures spend, so on a small machine it could set the pace instead of the server.

Prints one JSON object with the measured window's throughput, latency percentiles and failures,
plus the CPU share this process and the server used, so a saturated load generator or a
starved server is visible in the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MAX_ERROR_SAMPLES = 5


@dataclass
class Tally:
    """What every connection records during the measured window."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    samples: list[str] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failures += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(why)


def build_request(port: int, body: bytes, token: str | None) -> bytes:
    lines = [
        "POST /mcp HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        "MCP-Protocol-Version: 2025-11-25",
        f"Content-Length: {len(body)}",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def judge(status: int, body: bytes) -> str | None:
    """Why a response is a failure (non-200, JSON-RPC error, tool error result), or None."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    message: Any = json.loads(body)
    if "error" in message:
        return f"JSON-RPC error: {message['error']}"
    if message.get("result", {}).get("isError"):
        return f"tool error: {body[:200]!r}"
    return None


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    if "content-length" not in headers:
        raise ValueError(f"response without content-length: {headers}")
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split(" ", 2)[1]), body, headers.get("connection") == "close"


async def connection(port: int, request: bytes, window: tuple[float, float], tally: Tally) -> None:
    """Send the request back to back until the window closes, reconnecting if the server hangs up."""
    measure_from, stop_at = window
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (started := time.perf_counter()) < stop_at:
            writer.write(request)
            try:
                status, body, closing = await read_response(reader)
                why = judge(status, body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                why, closing = f"{type(exc).__name__}: {exc}", True
            finished = time.perf_counter()
            if started >= measure_from and finished <= stop_at:
                if why is None:
                    tally.latencies.append(finished - started)
                else:
                    tally.fail(why)
            if closing:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    request = build_request(args.port, args.body.encode(), args.token)
    measure_from = time.perf_counter() + args.warmup
    stop_at = measure_from + args.duration
    tally = Tally()
    tasks = [
        asyncio.create_task(connection(args.port, request, (measure_from, stop_at), tally))
        for _ in range(args.connections)
    ]
    await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
    own_start, server_start, wall_start = (
        time.process_time(),
        cpu_seconds(args.server_pid),
        time.perf_counter(),
    )
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - wall_start
    ordered = sorted(tally.latencies)
    return {
        "requests": len(ordered),
        "failures": tally.failures,
        "failure_samples": tally.samples,
        "rps": len(ordered) / args.duration,
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "client_cpu": (time.process_time() - own_start) / wall,
        "server_cpu": (cpu_seconds(args.server_pid) - server_start) / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True, help="whose CPU use to report")
    parser.add_argument("--body", required=True, help="the JSON-RPC request sent on every POST")
    parser.add_argument("--token", help="bearer token, when the server wants one")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
