"""How fast Session-Buddy's memory store is with many memories in one tenant.

Fills one tenant through the real store (`Memories.store`: sealed, blind-indexed, audited; on
SQLite unless `--database-url` names PostgreSQL), embeds everything through the embedding
workers' code path, then measures:

- store latency (embedding excluded: storing never embeds), p50/p99 over every store;
- search latency per mode, p50/p99 over `--searches` queries, with the query's embedding made
  beforehand (excluded) and the decryption of the hits included (limit 10); keyword ranking
  from the in-process index as a server does, and in SQL beside it (what answers at start);
- rebuilding the in-memory indexes from the sealed vectors and the blind-index rows (what a
  start does);
- key rotation of every sealed value (memories, versions, vectors).

Floors (issue 12, for 100k memories): store p99 <= 30 ms, search p99 <= 50 ms, rotation <= 60 s.
`--hashing` embeds with the test embedder at the real model's width instead of the model (quick
runs: fills fast, but the index sees vectors of another distribution).

    .venv/bin/python bench/memory_speed.py                      # 10,000 memories
    .venv/bin/python bench/memory_speed.py --memories 100000
    .venv/bin/python bench/memory_speed.py --memories 100000 --hashing --store-only   # ~20 min
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.search.embeddings import Embedder, HashingEmbedder, load_embedder
from mahavishnu.session_buddy.keywords import Keywords
from mahavishnu.session_buddy.meaning import Meaning
from mahavishnu.session_buddy.memories import Filters, Limits, Memories, NewMemory
from mahavishnu.session_buddy.rotation import Rotation
from mahavishnu.session_buddy.settings import MIGRATIONS
from mahavishnu.session_buddy.vault import open_vault

WORDS = [
    "retry",
    "cache",
    "deploy",
    "login",
    "token",
    "refund",
    "invoice",
    "webhook",
    "cursor",
    "batch",
    "report",
    "quota",
    "timeout",
    "migration",
    "index",
    "redis",
    "postgres",
    "fixture",
    "flaky",
    "pipeline",
    "container",
    "memory",
    "limit",
    "rollout",
    "certificate",
    "queue",
    "broker",
    "schema",
    "export",
    "import",
    "rotation",
    "tenant",
    "audit",
    "session",
    "checkpoint",
]
SERVICES = ["billing", "auth", "search", "ingest", "gateway", "reports", "ledger", "mailer"]


def sentence(rng: random.Random, number: int) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(8, 20)))
    return f"{rng.choice(SERVICES)} {words} E{number % 9000 + 1000} src/{rng.choice(SERVICES)}/m{number}.py"


class Precomputed:
    """The model's vectors for the queries, made before timing: search time excludes them."""

    def __init__(self, embedder: Embedder, queries: Sequence[str]) -> None:
        self.model_id = embedder.model_id
        self.dimensions = embedder.dimensions
        self._inner = embedder
        self._known = dict(zip(queries, embedder.embed(queries), strict=True))

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if len(texts) == 1 and texts[0] in self._known:
            return self._known[texts[0]][None, :]
        return self._inner.embed(texts)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms"


async def run(count: int, searches: int, url: str | None, hashing: bool, store_only: bool) -> None:
    rng = random.Random(12)
    with tempfile.TemporaryDirectory() as folder:
        db = Database(url or f"sqlite:///{Path(folder) / 'speed.db'}", migrations=MIGRATIONS)
        await db.ensure_schema(upgrade=True)
        old = generate_key()
        vault = await open_vault(db, KeyRing.parse(old))
        model: Embedder = HashingEmbedder(384) if hashing else load_embedder()
        queries = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(searches)]
        queries += [f"E{rng.randrange(1000, 9999)}" for _ in range(searches // 4)]
        embedder = Precomputed(model, queries)
        meaning = Meaning(db, embedder, batch=256)
        await meaning.rebuild(vault)
        keywords = Keywords(db)
        await keywords.rebuild()
        limits = Limits(16_000, 32)
        memories = Memories(
            db, vault, limits, tenant="bench", author="bench", meaning=meaning, keywords=keywords
        )

        stores: list[float] = []
        started = time.perf_counter()
        for number in range(count):
            new = NewMemory(sentence(rng, number), tags=[rng.choice(SERVICES)])
            began = time.perf_counter()
            await memories.store(new)
            stores.append(time.perf_counter() - began)
        print(
            f"stored {count} memories in {time.perf_counter() - started:.1f} s; store {percentiles(stores)}"
        )
        if store_only:
            await db.dispose()
            return

        started = time.perf_counter()
        while await meaning.embed_pending(vault):
            pass
        took = time.perf_counter() - started
        print(f"embedded {count} in {took:.1f} s ({count / took:.0f}/s, model {model.model_id})")

        started = time.perf_counter()
        rebuilt = Meaning(db, embedder)
        await rebuilt.rebuild(vault)
        index = rebuilt.vectors_of("bench")
        print(
            f"index rebuilt from the sealed vectors in {time.perf_counter() - started:.1f} s "
            f"({len(index)} vectors, {'HNSW (usearch)' if index.approximate else 'exact scan'})"
        )
        started = time.perf_counter()
        await Keywords(db).rebuild()
        print(f"keyword index rebuilt from the blind-index rows in {time.perf_counter() - started:.1f} s")
        in_sql = Memories(db, vault, limits, tenant="bench", author="bench", meaning=meaning)
        for label, searcher, mode in [
            ("keyword", memories, "keyword"),
            ("semantic", memories, "semantic"),
            ("hybrid", memories, "hybrid"),
            ("keyword, ranked in SQL (before the index is ready)", in_sql, "keyword"),
        ]:
            samples = []
            for query in queries:
                began = time.perf_counter()
                await searcher.search(query, Filters(), mode=mode, limit=10)
                samples.append(time.perf_counter() - began)
            print(f"search {label:8} {percentiles(samples)}  ({len(queries)} queries)")

        during = KeyRing.parse(f"{generate_key()},{old}")
        sweep = Rotation(during)
        started = time.perf_counter()
        await sweep.run(db)
        print(
            f"rotation re-sealed {sweep.rotated} values ({count} memories, their versions and vectors) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--database-url", help="PostgreSQL instead of a temporary SQLite file")
    parser.add_argument("--hashing", action="store_true", help="the test embedder instead of the model")
    parser.add_argument("--store-only", action="store_true", help="report store latency only")
    args = parser.parse_args()
    asyncio.run(run(args.memories, args.searches, args.database_url, args.hashing, args.store_only))


if __name__ == "__main__":
    main()
