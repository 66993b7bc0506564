"""One writer process of the Session-Buddy concurrency tests: `count` store_memory calls over
HTTP, `concurrency` at a time, each with its own idempotency key; a share of them sent twice
(a client retrying after a lost answer). Every acknowledged memory id is appended to `out` as
it arrives, so a test that kills the server mid-burst knows exactly what was acknowledged.

    python -m tests.support.memory_writer URL TOKEN PREFIX COUNT CONCURRENCY RETRY_EVERY OUT
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx


async def _store(client: httpx.AsyncClient, url: str, prefix: str, index: int) -> str | None:
    body = {
        "jsonrpc": "2.0",
        "id": index,
        "method": "tools/call",
        "params": {
            "name": "store_memory",
            "arguments": {
                "content": f"{prefix} memory {index}: build step {index % 7} needs cache key {index * 31}",
                "tags": [prefix],
                "idempotency_key": f"{prefix}-{index}",
            },
        },
    }
    try:
        answer = await client.post(url, json=body)
    except httpx.HTTPError:
        return None  # the server went away: not acknowledged
    if answer.status_code != 200:
        return None
    result = answer.json().get("result") or {}
    if result.get("isError"):
        raise SystemExit(f"store {index} refused: {result}")
    return str(result["structuredContent"]["memory"]["id"])


async def main(
    url: str, token: str, prefix: str, count: int, concurrency: int, retry_every: int, out: Path
) -> None:
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    with out.open("a") as acked:
        async with httpx.AsyncClient(headers=headers, timeout=60) as client:

            async def one(index: int) -> None:
                sends = 2 if retry_every and index % retry_every == 0 else 1
                for _ in range(sends):
                    async with gate:
                        memory_id = await _store(client, url, prefix, index)
                    if memory_id is not None:
                        acked.write(json.dumps({"index": index, "id": memory_id}) + "\n")
                        acked.flush()

            await asyncio.gather(*(one(i) for i in range(count)))


if __name__ == "__main__":
    url, token, prefix, count, concurrency, retry_every, out = sys.argv[1:8]
    asyncio.run(main(url, token, prefix, int(count), int(concurrency), int(retry_every), Path(out)))
