"""Akosha's search at scale (issue 13): real embeddings of real text, and 1M synthetic vectors.

The corpus is prose found offline on this machine: sentences from the docstrings of the
installed Python packages (the running interpreter's site-packages, read with `ast`) and from
the system's manual pages (`/usr/share/man/man1`..`man8`, troff stripped crudely),
deduplicated and put in a seeded order (a keyed hash of each sentence). The first `--queries`
sentences are held out as queries, the next `--corpus` are indexed. They are embedded with the
real model (`--model`, the service's default) and cached, with the sentences, under `--cache`,
keyed by the model and a hash of the sentences: a re-run loads them in seconds, and after a
package or manual page is installed only the sentences new to the cache are embedded.

Each phase is a function of the shared `Bench` (arguments, figures so far, the real corpus on
first use) returning its figures; a new one is a `Phase` in `PHASES`, its floors `Floor`s in
`FLOORS`. `--phases` picks some, `--json PATH` writes every figure. Phases:

- hot: `TenantVectors` built the way the service builds it (one `add` per record: an exact
  scan until 20,000 vectors, then a usearch HNSW graph kept up to date on every add); build
  time, memory (RSS growth), recall@10 against an exact scan, and the latency of
  `nearest(query, 10)` (query embedding excluded) beside an exact numpy scan's.
- synthetic: `--synthetic` vectors (384-d, seeded Gaussian clusters on the unit sphere) in the
  same class. The graph is built in one bulk add (`ann_threshold` = all but the last
  `--tail`), then the tail is added one at a time, so the per-add cost at that size is
  measured too; adding 1M one at a time would take far longer (see the figures).

Floors (issue 13) are printed as MET or MISSED lines; the exit code is 0 either way.

    .venv/bin/python bench/akosha_search.py --corpus 5000 --synthetic 20000   # a quick look
    .venv/bin/python bench/akosha_search.py --synthetic 0                     # 200k real vectors
    .venv/bin/python bench/akosha_search.py --phases synthetic --synthetic 1000000
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import gc
import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.record_index import RecordIndex, Tiering
from mahavishnu.akosha.settings import MIGRATIONS
from mahavishnu.akosha.tiers import AgingPolicy
from mahavishnu.akosha.wire import Batch, Embedding
from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from mahavishnu.platform.search.embeddings import DEFAULT_MODEL, MODELS, Embedder, load_embedder
from mahavishnu.platform.search.vector_index import ANN_THRESHOLD, TenantVectors

Vectors = NDArray[np.float32]
Figures = dict[str, float | int | str]

TOP = 10
KEY_PREFIX = "bench/"
INGEST_BATCH = 1000
"""Records per ingest request (Akosha takes up to 5,000)."""
DIMENSIONS = 384
MIN_CHARS, MAX_CHARS = 30, 400
MAN_ROOT = Path("/usr/share/man")
MAN_SECTIONS = [f"man{n}" for n in range(1, 9)]

# ---------------------------------------------------------------------------------------------
# The corpus: sentences found offline.

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_SPACE = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")
_TROFF_ESCAPE = re.compile(
    r"\\(?:f(?:\[[^\]]*\]|\(..|.)|\(..|\[[^\]]*\]|\*(?:\(..|\[[^\]]*\]|.)|s[+-]?\d+|[kn](?:\(..|.)|.)"
)
_TROFF_KEPT = {
    "\\-": "-",
    "\\ ": " ",
    "\\~": " ",
    "\\e": "\\",
    "\\(em": " - ",
    "\\(en": "-",
    "\\(aq": "'",
    "\\(dq": '"',
    "\\(lq": '"',
    "\\(rq": '"',
    "\\(oq": "'",
    "\\(cq": "'",
}
_TROFF_TEXT_MACROS = {"B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB", "Nm", "Nd", "Xr"}
_TROFF_VERBATIM = {"nf": "fi", "EX": "EE", "Bd": "Ed", "TS": "TE", "EQ": "EN"}


def prose_sentences(paragraph: str) -> Iterator[str]:
    """The sentences of a paragraph of prose that read like prose: code and tables are dropped."""
    text = _SPACE.sub(" ", paragraph).strip()
    if ">>>" in text:
        return
    for sentence in _SENTENCE_END.split(text):
        if not MIN_CHARS <= len(sentence) <= MAX_CHARS or not sentence[0].isalpha():
            continue
        letters = len(_LETTER.findall(sentence))
        if len(sentence.split()) >= 5 and letters >= 0.7 * len(sentence.replace(" ", "")):
            yield sentence


def docstring_sentences(path: Path) -> list[str]:
    """Sentences of the module, class and function docstrings of one Python file."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node)
            for paragraph in (docstring or "").split("\n\n"):
                found.extend(prose_sentences(paragraph))
    return found


def man_sentences(path: Path) -> list[str]:
    """Sentences of one manual page: requests dropped, font and character escapes stripped."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError):
        return []
    paragraphs: list[list[str]] = [[]]
    verbatim_until: str | None = None
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if line.startswith((".", "'")):
            request, _, rest = line[1:].strip().partition(" ")
            if verbatim_until is not None:
                verbatim_until = None if request == verbatim_until else verbatim_until
            elif request in _TROFF_VERBATIM:
                verbatim_until = _TROFF_VERBATIM[request]
            elif request in _TROFF_TEXT_MACROS:
                paragraphs[-1].append(rest.replace('"', ""))
            else:
                paragraphs.append([])
        elif verbatim_until is None:
            paragraphs[-1].append(line)
    sentences: list[str] = []
    for lines in paragraphs:
        text = _TROFF_ESCAPE.sub(lambda m: _TROFF_KEPT.get(m.group(0), ""), " ".join(lines))
        sentences.extend(prose_sentences(text))
    return sentences


Reader = Callable[[Path], list[str]]


def corpus_sources() -> list[tuple[Path, Reader]]:
    """Every source file with its reader, in a fixed order."""
    packages = {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    python = sorted({p for root in packages for p in root.rglob("*.py") if p.is_file()})
    sections = [d for s in MAN_SECTIONS if (d := MAN_ROOT / s).is_dir()]
    man = sorted(p for d in sections for p in d.iterdir() if p.is_file())
    readers: list[tuple[Path, Reader]] = [(p, docstring_sentences) for p in python]
    return readers + [(p, man_sentences) for p in man]


def gather_sentences(cache: Path, seed: int) -> list[str]:
    """Every distinct sentence found, ordered by a hash keyed with `seed`: a seeded shuffle in
    which sentences added later (a package or manual page installed since) fall in among the
    rest without reordering them, so most of a corpus, and its cached vectors, survive them.
    Kept in `cache` until a source file changes."""
    sources = corpus_sources()
    fingerprint = hashlib.sha256(f"{MIN_CHARS}-{MAX_CHARS}-{seed}".encode())
    for path, _ in sources:
        stat = path.stat()
        fingerprint.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    kept = cache / f"sentences-{fingerprint.hexdigest()[:16]}.txt"
    if kept.is_file():
        return kept.read_text(encoding="utf-8").splitlines()
    started, seen = time.perf_counter(), dict[str, None]()
    for done, (path, read) in enumerate(sources, 1):
        seen.update(dict.fromkeys(read(path)))
        if done % 2000 == 0 or done == len(sources):
            note(f"corpus: read {done}/{len(sources)} files, {len(seen)} sentences, {elapsed(started)}")
    salt = seed.to_bytes(8, "little")
    sentences = sorted(
        seen, key=lambda text: hashlib.blake2b(text.encode(), digest_size=8, key=salt).digest()
    )
    write_atomically(kept, "\n".join(sentences).encode())
    return sentences


# ---------------------------------------------------------------------------------------------
# Embedding, once, cached.


def embedded(sentences: list[str], model: str, cache: Path) -> tuple[Vectors, int]:
    """The model's vectors of `sentences`, and how many had to be embedded now: a sentence this
    model embedded for an earlier run is read from that run's files in `cache`."""
    model_id = re.sub(r"[^A-Za-z0-9_-]+", "_", MODELS[model.strip().lower()].model_id)
    digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:16]
    stem = cache / f"{model_id}-{len(sentences)}-{digest}"
    if stem.with_suffix(".npy").is_file():
        note(f"embeddings: loading {stem}.npy")
        loaded: Vectors = np.load(stem.with_suffix(".npy"))
        return loaded, 0
    earlier: dict[str, Vectors] = {}
    for text_file in sorted(cache.glob(f"{model_id}-*.txt")):
        if not text_file.with_suffix(".npy").is_file():
            continue  # a run stopped between writing the two
        rows = np.load(text_file.with_suffix(".npy"), mmap_mode="r")
        earlier.update(zip(text_file.read_text(encoding="utf-8").splitlines(), rows, strict=True))
    missing = [text for text in sentences if text not in earlier]
    note(f"embeddings: {len(sentences) - len(missing)} from earlier runs, {len(missing)} to embed")
    fresh = (
        dict(zip(missing, embed_with_progress(load_embedder(model), missing), strict=True)) if missing else {}
    )
    vectors = np.stack([fresh[text] if text in fresh else earlier[text] for text in sentences])
    write_atomically(stem.with_suffix(".txt"), "\n".join(sentences).encode())
    temporary = stem.with_suffix(".partial.npy")
    np.save(temporary, vectors)
    temporary.replace(stem.with_suffix(".npy"))
    note(f"embeddings: saved {stem}.npy")
    return vectors, len(missing)


def embed_with_progress(embedder: Embedder, texts: list[str]) -> Vectors:
    vectors = np.empty((len(texts), embedder.dimensions), dtype=np.float32)
    started, step = time.perf_counter(), 2000
    for start in range(0, len(texts), step):
        vectors[start : start + step] = embedder.embed(texts[start : start + step])
        done = min(start + step, len(texts))
        rate = done / elapsed_s(started)
        note(f"embeddings: {done}/{len(texts)} ({rate:.0f}/s, {(len(texts) - done) / rate:.0f} s left)")
    return vectors


# ---------------------------------------------------------------------------------------------
# Measuring an index.


def rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def key(n: int) -> str:
    """The record key of row `n`."""
    return f"{KEY_PREFIX}{n}"


def build(vectors: Vectors, *, ann_threshold: int, label: str) -> tuple[TenantVectors, Figures]:
    """`vectors` added one `add` at a time, as the service adds records; the add that crosses
    `ann_threshold` builds the HNSW graph over everything so far in one bulk add."""
    gc.collect()
    rss, cpu, started = rss_bytes(), time.process_time(), time.perf_counter()
    index = TenantVectors(vectors.shape[1], ann_threshold=ann_threshold)
    graph_s, after_graph_s, report_at = 0.0, 0.0, started + 10
    for n, vector in enumerate(vectors):
        if n + 1 == ann_threshold:
            note(f"{label}: building the graph over {n + 1} vectors in one bulk add (no progress until done)")
        before = time.perf_counter()
        index.add(key(n), 1, vector)
        took = time.perf_counter() - before
        if n + 1 == ann_threshold:
            graph_s = took
        elif n + 1 > ann_threshold:
            after_graph_s += took
        if before > report_at:
            report_at = before + 10
            note(f"{label}: added {n + 1}/{len(vectors)}, {elapsed(started)}")
    one_by_one = len(vectors) - ann_threshold
    figures: Figures = {
        "vectors": len(vectors),
        "build s": time.perf_counter() - started,
        "build CPU s": time.process_time() - cpu,
        "graph": "HNSW (usearch)" if index.approximate else "exact scan",
        "RSS growth MB": (rss_bytes() - rss) / 2**20,
        "raw vectors MB": vectors.nbytes / 2**20,
    }
    if index.approximate:
        figures[f"bulk graph build over {ann_threshold} s"] = graph_s
    if one_by_one > 0:
        figures[f"add ms, {one_by_one} after the graph"] = 1000 * after_graph_s / one_by_one
    note(f"{label}: built in {figures['build s']:.1f} s")
    return index, figures


def exact_top(matrix: Vectors, queries: Vectors) -> NDArray[np.int64]:
    """The row numbers of the `TOP` rows most similar to each query (a full scan, in chunks)."""
    found = np.empty((len(queries), TOP), dtype=np.int64)
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ matrix.T
        found[start : start + 64] = np.argpartition(-scores, TOP - 1, axis=1)[:, :TOP]
    return found


def exact_nearest(matrix: Vectors, query: Vectors) -> NDArray[np.intp]:
    """The row numbers of the `TOP` rows most similar to `query`, best first: what the exact
    path of `TenantVectors.nearest` does."""
    scores = matrix @ query
    top = np.argpartition(-scores, TOP - 1)[:TOP]
    ranked: NDArray[np.intp] = top[np.argsort(-scores[top])]
    return ranked


def percentiles(durations_ns: Sequence[int], prefix: str) -> Figures:
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    return {
        f"{prefix} p50 ms": float(np.percentile(ms, 50)),
        f"{prefix} p99 ms": float(np.percentile(ms, 99)),
    }


def search_figures(index: TenantVectors, matrix: Vectors, queries: Vectors, exact_sample: int) -> Figures:
    """Recall@10 of `index` against an exact scan of `matrix`, and latencies of both, per query."""
    truth = exact_top(matrix, queries)
    for query in queries[:20]:  # warm-up
        index.nearest(query, TOP)
    hits, durations = 0, []
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter_ns()
        found = index.nearest(query, TOP)
        durations.append(time.perf_counter_ns() - started)
        hits += len({int(n.memory_id.removeprefix(KEY_PREFIX)) for n in found} & set(expected.tolist()))
    exact = []
    for query in queries[:exact_sample]:
        started = time.perf_counter_ns()
        exact_nearest(matrix, query)
        exact.append(time.perf_counter_ns() - started)
    return {
        "queries": len(queries),
        f"recall@{TOP}": hits / (TOP * len(queries)),
        **percentiles(durations, "search"),
        **percentiles(exact, f"exact scan ({len(exact)} queries)"),
    }


# ---------------------------------------------------------------------------------------------
# Phases.


@dataclass(frozen=True)
class Corpus:
    """Real sentences with their vectors: `sentences` are indexed, `questions` held out."""

    sentences: list[str]
    vectors: Vectors
    questions: list[str]
    queries: Vectors


@dataclass
class Bench:
    """What the phases share: the arguments, the figures so far, and the real corpus, loaded
    (gathered and embedded, or read from the cache) on first use."""

    args: argparse.Namespace
    figures: dict[str, Figures] = field(default_factory=dict)
    runner: asyncio.Runner = field(default_factory=asyncio.Runner)
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="akosha-bench-")))
    """Akosha's store and cold segments for the ingest and tiers phases; removed at the end."""

    @cached_property
    def store(self) -> Store:
        """Akosha's store holding the real corpus, ingested on first use (`ingest`)."""
        return self.runner.run(_ingest(self, self.work))

    @cached_property
    def real(self) -> Corpus:
        cache: Path = self.args.cache
        cache.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        found = gather_sentences(cache, self.args.seed)
        held_out, wanted = self.args.queries, self.args.queries + self.args.corpus
        if len(found) < wanted:
            note(f"corpus: only {len(found)} sentences found, {wanted} wanted: using them all")
        chosen = found[:wanted]
        self.figures["corpus"] = {
            "sentences found": len(found),
            "sentences used": len(chosen),
            "gather s": elapsed_s(started),
        }
        started = time.perf_counter()
        vectors, embedded_now = embedded(chosen, self.args.model, cache)
        self.figures["corpus"]["embedded now"] = embedded_now
        if embedded_now:
            self.figures["corpus"]["embedded per s"] = embedded_now / elapsed_s(started)
        return Corpus(chosen[held_out:], vectors[held_out:], chosen[:held_out], vectors[:held_out])


def hot(bench: Bench) -> Figures:
    """The hot tier as the service builds it, over real vectors (with fewer than 20,000 the graph
    is built at the last one, so that the graph is still what is measured)."""
    corpus = bench.real
    threshold = min(ANN_THRESHOLD, len(corpus.vectors))
    index, figures = build(corpus.vectors, ann_threshold=threshold, label="hot")
    return figures | search_figures(index, corpus.vectors, corpus.queries, exact_sample=len(corpus.queries))


def clustered(count: int, clusters: int, spread: float, rng: np.random.Generator) -> Vectors:
    """`count` unit vectors around `clusters` random centres; `spread` is the noise's length
    relative to the centre's (0.5: a member's cosine to its centre is about 0.9)."""
    centres = rng.standard_normal((clusters, DIMENSIONS), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((count, DIMENSIONS), dtype=np.float32)
    for start in range(0, count, 65536):
        rows = min(65536, count - start)
        chunk = centres[rng.integers(clusters, size=rows)]
        chunk += rng.standard_normal((rows, DIMENSIONS), dtype=np.float32) * np.float32(
            spread / DIMENSIONS**0.5
        )
        out[start : start + rows] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def synthetic(bench: Bench) -> Figures:
    """`--synthetic` clustered vectors: a bulk graph build, then `--tail` one-at-a-time adds."""
    args = bench.args
    rng = np.random.default_rng(args.seed)
    vectors = clustered(args.synthetic + args.queries, args.clusters, args.spread, rng)
    corpus, queries = vectors[args.queries :], vectors[: args.queries]
    threshold = max(1, len(corpus) - args.tail)
    index, figures = build(corpus, ann_threshold=threshold, label="synthetic")
    figures |= {"clusters": args.clusters, "spread": args.spread}
    return figures | search_figures(index, corpus, queries, exact_sample=min(100, len(queries)))


# ---------------------------------------------------------------------------------------------
# Akosha's own path: the store, the index, the tiers.


class Precomputed:
    """An embedder that answers the bench's vectors for the bench's sentences: Akosha's real
    ingest and indexing path, with the model's work done beforehand (`embedded`)."""

    def __init__(self, model_id: str, sentences: Sequence[str], vectors: Vectors) -> None:
        self.model_id = model_id
        self.dimensions = vectors.shape[1]
        self._rows = {text: n for n, text in enumerate(sentences)}
        self._vectors = vectors
        self.asked = 0
        """Texts Akosha asked for (none, when every record carries its vector)."""

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.asked += len(texts)
        return self._vectors[[self._rows[text] for text in texts]]


AGES_DAYS = (1, 60, 400)
"""Record n is written AGES_DAYS[n % 3] days ago: with the service's policy (hot 30 days, warm
180) a third of the records in each tier."""


def _record(n: int, sentence: str, now: datetime, embedding: Embedding) -> dict[str, object]:
    """Record n as a Session-Buddy sends it, with the vector it made (`wire.Embedding`)."""
    written = (now - timedelta(days=AGES_DAYS[n % 3])).isoformat()
    return {
        "source": "bench",
        "tenant": "bench",
        "memory_id": str(n),
        "version": 1,
        "op": "upsert",
        "content": sentence,
        "kind": "fact",
        "tags": [],
        "project": None,
        "session_id": None,
        "importance": 0.5,
        "created_at": written,
        "updated_at": written,
        "embedding": embedding.model_dump(),
    }


@dataclass
class Store:
    """Akosha's store on SQLite in a temporary folder, its index and the time ingest took."""

    folder: Path
    db: Database
    ring: KeyRing
    index: RecordIndex
    figures: Figures


async def _ingest(bench: Bench, folder: Path) -> Store:
    corpus = bench.real
    db = Database(f"sqlite:///{folder / 'akosha.db'}", migrations=MIGRATIONS)
    await db.ensure_schema(upgrade=True)
    ring = KeyRing.parse(generate_key())
    policy = AgingPolicy(hot_days=30, warm_days=180)
    index = RecordIndex(db, ring, Tiering(folder / "cold", policy))
    await index.rebuild()
    model_id = MODELS[bench.args.model].model_id
    embedder = Precomputed(model_id, corpus.sentences, corpus.vectors)
    index.use_embedder(embedder)
    inbox = Inbox(
        db,
        ring,
        IngestMetrics(Metrics(prefix="bench")),
        max_records=5000,
        on_stored=index.note,
        vectors=index.vector_store,
    )
    sent = [Embedding.of(model_id, vector) for vector in corpus.vectors]  # made by the sender
    now = datetime.now(UTC)
    started, report_at = time.perf_counter(), time.perf_counter() + 10
    indexing = asyncio.create_task(_index_until_cancelled(index))  # as the service's index runs
    for start in range(0, len(corpus.sentences), INGEST_BATCH):
        ending = min(start + INGEST_BATCH, len(corpus.sentences))
        rows = [_record(n, corpus.sentences[n], now, sent[n]) for n in range(start, ending)]
        await inbox.take("bench", Batch.model_validate({"source": "bench", "records": rows}).records)
        if time.perf_counter() > report_at:
            report_at = time.perf_counter() + 10
            note(f"ingest: {ending}/{len(corpus.sentences)} acknowledged, {elapsed(started)}")
    acknowledged = elapsed_s(started)
    indexing.cancel()  # what is left, indexed here (a batch cut short is taken again)
    with contextlib.suppress(asyncio.CancelledError):
        await indexing
    while await index.embed_pending():
        pass
    took = elapsed_s(started)
    figures: Figures = {
        "records": len(corpus.sentences),
        "acknowledged per s (stored, sealed)": len(corpus.sentences) / acknowledged,
        "ingest s (until every vector is indexed)": took,
        "ingested per s": len(corpus.sentences) / took,
        "embedded by Akosha": embedder.asked,
        "batch": INGEST_BATCH,
    }
    return Store(folder, db, ring, index, figures)


async def _index_until_cancelled(index: RecordIndex) -> None:
    while True:
        if not await index.embed_pending():
            await asyncio.sleep(0.005)


def ingest(bench: Bench) -> Figures:
    """Records with precomputed vectors through Akosha's path, in batches, each record carrying
    the vector its sender made (as Session-Buddy sends them): checked, sealed and stored with
    their vectors in one transaction (`Inbox.take`), while the index, as in the service, adds
    the sent vectors to the hot tier in the background (`embed_pending`); timed until every
    record is searchable by meaning."""
    return bench.store.figures


async def _tiers(bench: Bench) -> Figures:
    store, corpus = bench.store, bench.real
    vectors = store.index.vectors
    assert vectors is not None
    started = time.perf_counter()
    moved = await store.index.age()
    aging_s = elapsed_s(started)
    sizes = vectors.sizes()
    truth = exact_top(corpus.vectors, corpus.queries)
    all_hot, _ = build(corpus.vectors, ann_threshold=len(corpus.vectors), label="all-hot (bulk)")
    overlap = recall = 0
    durations = []
    for query, expected in zip(corpus.queries, truth, strict=True):
        began = time.perf_counter_ns()
        found = await vectors.nearest(query, TOP)
        durations.append(time.perf_counter_ns() - began)
        keys = {int(n.memory_id.rsplit("/", 1)[1]) for n in found}
        hot_keys = {int(n.memory_id.removeprefix(KEY_PREFIX)) for n in all_hot.nearest(query, TOP)}
        overlap += len(keys & hot_keys)
        recall += len(keys & set(expected.tolist()))
    cold_bytes = sum(p.stat().st_size for p in (store.folder / "cold").glob("*"))
    figures: Figures = {
        "aging run s": aging_s,
        "moved to warm": moved.get("warm", 0),
        "moved to cold": moved.get("cold", 0),
        **{f"{tier} vectors": count for tier, count in sizes.items()},
        "warm MB (int8 codes, scales)": vectors.warm.nbytes / 2**20,
        "cold segments": vectors.cold.segments,
        "cold MB on disk (sealed)": cold_bytes / 2**20,
        f"top-{TOP} overlap with all-hot": overlap / (TOP * len(corpus.queries)),
        f"recall@{TOP} vs exact": recall / (TOP * len(corpus.queries)),
        **percentiles(durations, "search across tiers"),
    }
    started = time.perf_counter()
    again = RecordIndex(store.db, store.ring, Tiering(store.folder / "cold", AgingPolicy(30, 180)))
    await again.rebuild()
    again.use_embedder(Precomputed(MODELS[bench.args.model].model_id, [], corpus.vectors[:0]))
    await again.load_vectors()
    figures["restart s (rebuild from the store, segments adopted)"] = elapsed_s(started)
    assert again.tier_sizes() == sizes, (again.tier_sizes(), sizes)
    return figures


def tiers(bench: Bench) -> Figures:
    """The records of `ingest` aged by the service's policy (a third per tier), then searched
    across the tiers and compared with an all-hot index and an exact scan; then a restart."""
    return bench.runner.run(_tiers(bench))


@dataclass(frozen=True)
class Phase:
    name: str
    run: Callable[[Bench], Figures]
    wanted: Callable[[argparse.Namespace], bool] = lambda _: True


PHASES = [
    Phase("hot", hot),
    Phase("ingest", ingest),
    Phase("tiers", tiers),
    Phase("synthetic", synthetic, wanted=lambda args: args.synthetic > 0),
]


@dataclass(frozen=True)
class Floor:
    """A figure of a phase that must be at least `minimum` or at most `maximum` (issue 13)."""

    phase: str
    figure: str
    minimum: float | None = None
    maximum: float | None = None

    def verdict(self, figures: dict[str, Figures]) -> str | None:
        value = figures.get(self.phase, {}).get(self.figure)
        if not isinstance(value, int | float):
            return None
        if self.minimum is not None:
            bound, met = f">= {self.minimum:g}", value >= self.minimum
        else:
            assert self.maximum is not None
            bound, met = f"<= {self.maximum:g}", value <= self.maximum
        return f"{self.phase} {self.figure} {value:.3f} (floor {bound}): {'MET' if met else 'MISSED'}"


FLOORS = [
    Floor("hot", f"recall@{TOP}", minimum=0.95),
    Floor("hot", "search p99 ms", maximum=10.0),
    Floor("ingest", "ingested per s", minimum=1000),
    Floor("tiers", f"top-{TOP} overlap with all-hot", minimum=0.9),
]


# ---------------------------------------------------------------------------------------------
# Running.


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def elapsed_s(started: float) -> float:
    return time.perf_counter() - started


def elapsed(started: float) -> str:
    return f"{elapsed_s(started):.0f} s"


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(data)
    temporary.replace(path)


def shown(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=int, default=200_000, help="real sentences indexed")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (real and synthetic)")
    parser.add_argument("--synthetic", type=int, default=1_000_000, help="synthetic vectors; 0 skips them")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--tail", type=int, default=10_000, help="synthetic vectors added one at a time")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "mahavishnu-bench")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--phases", help="comma-separated: " + ", ".join(p.name for p in PHASES))
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    chosen = set(args.phases.split(",")) if args.phases else {p.name for p in PHASES if p.wanted(args)}
    unknown = chosen - {p.name for p in PHASES}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")

    bench = Bench(args)
    print(f"model {args.model}, {len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f}")
    try:
        for phase in PHASES:
            if phase.name in chosen:
                bench.figures[phase.name] = phase.run(bench)
    finally:
        if "store" in bench.__dict__:
            bench.runner.run(bench.store.db.dispose())
        bench.runner.close()
        shutil.rmtree(bench.work, ignore_errors=True)
    print(f"{'phase':<10} {'figure':<44} value")
    for name, figures in bench.figures.items():
        for figure, value in figures.items():
            print(f"{name:<10} {figure:<44} {shown(value)}")
    verdicts = [v for floor in FLOORS if (v := floor.verdict(bench.figures)) is not None]
    print("\n".join(verdicts))
    missed = sum("MISSED" in v for v in verdicts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"summary: {len(verdicts) - missed} floors met, {missed} missed; peak RSS {peak_mb:.0f} MB, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if args.json:
        args.json.write_text(json.dumps({"figures": bench.figures, "floors": verdicts}, indent=2))


if __name__ == "__main__":
    main()
