"""Mahavishnu as a platform service: its tools, resources, health checks, watcher, engine, the
pusher of workflow outcomes to Akosha and the pusher of agent runs to Session-Buddy."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import ListResourcesResult, Resource
from prometheus_client import Counter, Gauge

from mahavishnu import __version__
from mahavishnu.orchestrator.agent_session_pusher import SessionMetrics, push_agent_sessions
from mahavishnu.orchestrator.completions import completion_hook
from mahavishnu.orchestrator.manifest import Manifest, ManifestStore, Repo
from mahavishnu.orchestrator.outcome_pusher import PushMetrics, push_outcomes
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.tools import RepoOut, RepoTools
from mahavishnu.orchestrator.workflows.local import EngineConfig, LocalEngine
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.service import WorkflowService
from mahavishnu.orchestrator.workflows.tools import WorkflowTools
from mahavishnu.platform.app import Service
from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.client_logging import client_log
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import ConfigurationError, NotFoundError
from mahavishnu.platform.health import ComponentHealth, HealthCheck
from mahavishnu.platform.mcp import ResourceSpec
from mahavishnu.platform.observability import Metrics, get_logger
from mahavishnu.platform.untrusted_files import FileAbsent, FileRefused, UntrustedReader

if TYPE_CHECKING:  # the Temporal SDK is imported only when `engine: temporal` asks for it
    from mahavishnu.orchestrator.workflows.temporal import TemporalConfig, TemporalEngine, TemporalTls

__all__ = ["create_service"]

log = get_logger("mahavishnu.orchestrator")
README_HEAD_BYTES = 4096
README_CANDIDATES = ("README.md", "README.rst", "README.txt", "README")
README_READ_SECONDS = 2.0
README_READ_CONCURRENCY = 4
"""Reads of READMEs at once, on their own limiter: a flood must not take the threads backups use."""
README_READ_MAX_THREADS = 16
"""Threads allowed inside the filesystem at once, including reads the caller gave up on (hung NFS)."""
README_WARNED_MAX = 4096
INSTRUCTIONS = (
    "Mahavishnu manages a fleet of git repositories described in a manifest (name, nickname, role, "
    "tags, path). Use list_repos to browse or filter them, get_repo for one entry, get_all_repo_paths "
    "for folders, list_roles/get_repos_by_role to group them, and get_health to check the server. "
    "Each repository is also readable as the resource repo://NAME. To act on repositories, run one of "
    "the operator's workflows (list_workflow_definitions) with trigger_workflow, then follow it with "
    "get_workflow_status; cancel_workflow stops it."
)


def create_service(settings: MahavishnuSettings, metrics: Metrics, *, db: Database | None = None) -> Service:
    """Mahavishnu's own tools, resources, checks and jobs; `db` when the caller shares it (the
    composition root adds backups over the same database), else one of its own. Either way the
    service's background job disposes it when the service stops."""
    store = ManifestStore(settings.repos_file, allowed_roots=settings.allowed_roots, roles=settings.roles)
    _instrument_manifest(store, metrics)
    store.reload_if_changed()
    db = db or Database.from_settings(settings, create=True)  # serving owns the data
    definitions = settings.workflow_definitions()
    engine = build_engine(db, settings, WorkflowMetrics(metrics), host_of=host_lookup(store))
    workflows = WorkflowService(db, store, definitions, engine)
    push_metrics = PushMetrics(metrics)
    session_metrics = SessionMetrics(metrics)

    @contextlib.asynccontextmanager
    async def background() -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.watch, settings.manifest_poll_seconds)
            ready = await _schema_ready(db, upgrade=settings.db_auto_upgrade)
            tg.start_soon(_run_engine, db, engine, settings.db_auto_upgrade, ready)
            tg.start_soon(push_outcomes, db, settings, push_metrics)
            tg.start_soon(push_agent_sessions, db, settings, session_metrics)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        await db.dispose()

    return Service(
        name="mahavishnu",
        version=__version__,
        instructions=INSTRUCTIONS,
        settings=settings,
        tools=[*RepoTools(store).specs(), *WorkflowTools(workflows).specs()],
        health_checks=[
            HealthCheck("manifest", lambda: _manifest_health(store)),
            HealthCheck("database", lambda: _database_health(db)),
            HealthCheck("engine", lambda: _engine_health(engine, settings)),
        ],
        background=background,
        resources=[_repo_resource(store)],
        mcp_middleware=[_RepoResourceList(store)],
        configure_mcp=completion_hook(store, definitions),
    )


def build_engine(
    db: Database,
    settings: MahavishnuSettings,
    metrics: WorkflowMetrics,
    *,
    host_of: Callable[[str], str | None] = lambda _repo: None,
) -> LocalEngine | TemporalEngine:
    """The engine the settings name (`engine`); `host_of` maps a repository to its build host."""
    definitions = settings.workflow_definitions()
    if settings.engine == "temporal":
        from mahavishnu.orchestrator.workflows.temporal import TemporalEngine

        return TemporalEngine(
            db, temporal_config(settings), engine_config(settings), definitions, metrics, host_of=host_of
        )
    return LocalEngine(db, engine_config(settings), definitions, metrics)


def host_lookup(store: ManifestStore) -> Callable[[str], str | None]:
    def host_of(repo: str) -> str | None:
        found = store.manifest.find(repo)
        return found.host if found is not None else None

    return host_of


def temporal_config(settings: MahavishnuSettings) -> TemporalConfig:
    from mahavishnu.orchestrator.workflows.temporal import TemporalConfig

    return TemporalConfig(
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        task_queue_prefix=settings.temporal_task_queue_prefix,
        batch_size=settings.temporal_batch_size,
        max_batches=settings.temporal_max_batches,
        heartbeat_seconds=settings.temporal_heartbeat_seconds,
        host_timeout_seconds=settings.temporal_host_timeout_seconds,
        serve_runs=settings.temporal_serve_runs,
        reconcile_seconds=settings.temporal_reconcile_seconds,
        tls=temporal_tls(settings),
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
    )


def temporal_tls(settings: MahavishnuSettings) -> TemporalTls | None:
    """The TLS settings with their files read (a missing or unreadable one refuses the start,
    naming its setting); None when TLS is off."""
    from mahavishnu.orchestrator.workflows.temporal import TemporalTls

    if not settings.temporal_tls_on:
        return None
    return TemporalTls(
        ca=_pem(settings.temporal_tls_ca_file, "MAHAVISHNU_TEMPORAL_TLS_CA_FILE"),
        cert=_pem(settings.temporal_tls_cert_file, "MAHAVISHNU_TEMPORAL_TLS_CERT_FILE"),
        key=_pem(settings.temporal_tls_key_file, "MAHAVISHNU_TEMPORAL_TLS_KEY_FILE"),
        server_name=settings.temporal_tls_server_name,
    )


def _pem(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {setting} ({path}): {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigurationError(f"{setting} ({path}) holds no PEM block")
    return data


def engine_config(settings: MahavishnuSettings) -> EngineConfig:
    return EngineConfig(
        max_concurrent_runs=settings.max_concurrent_runs,
        kill_grace_seconds=settings.kill_grace_seconds,
        output_tail_bytes=settings.output_tail_bytes,
        log_max_bytes=settings.log_max_bytes,
        log_dir=settings.data_dir.resolve() / "logs",
        circuit_failure_threshold=settings.circuit_failure_threshold,
        circuit_cooldown_seconds=settings.circuit_cooldown_seconds,
        heal_policy=settings.heal_policy,
        lease_seconds=settings.lease_seconds,
        poll_seconds=settings.engine_poll_seconds,
    )


async def _schema_ready(db: Database, *, upgrade: bool) -> bool:
    """Check (and maybe upgrade) the schema once at start-up. A newer schema stops the start;
    an unreachable database does not: the engine waits for it while the rest serves."""
    try:
        await db.ensure_schema(upgrade=upgrade)
    except ConfigurationError:
        raise
    except Exception as exc:
        log.error("database_unavailable", error=type(exc).__name__, detail=str(exc)[:200])
        return False
    return True


async def _run_engine(db: Database, engine: LocalEngine | TemporalEngine, upgrade: bool, ready: bool) -> None:
    delay = 1.0
    while not ready:
        await anyio.sleep(delay)
        delay = min(delay * 2, 30.0)
        ready = await _schema_ready(db, upgrade=upgrade)
    delay = 1.0
    while True:  # an engine whose cluster is unreachable (Temporal down) is retried, not fatal
        try:
            async with engine.running():
                await anyio.sleep_forever()
        except ConnectionError as exc:
            log.error("engine_unavailable", error=str(exc)[:300], retry_in_seconds=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _engine_health(
    engine: LocalEngine | TemporalEngine, settings: MahavishnuSettings
) -> ComponentHealth:
    """Which engine runs workflows, and for Temporal whether this replica reaches it."""
    if settings.engine == "local":
        return ComponentHealth("ok", data={"engine": "local"})
    data = {"engine": "temporal", "address": settings.temporal_address}
    if getattr(engine, "connected", False):
        return ComponentHealth("ok", data=data)
    return ComponentHealth(
        "degraded", "Temporal is unreachable: workflows are recorded but do not run until it is back", data
    )


async def _database_health(db: Database) -> ComponentHealth:
    if await db.ping():
        return ComponentHealth("ok", data={"dialect": db.dialect})
    return ComponentHealth(
        "degraded", "database unreachable; workflow tools are unavailable", {"dialect": db.dialect}
    )


def _instrument_manifest(store: ManifestStore, metrics: Metrics) -> None:
    repos = Gauge(
        "mahavishnu_manifest_repos", "Repositories in the loaded manifest.", registry=metrics.registry
    )
    failures = Counter(
        "mahavishnu_manifest_reload_failures",
        "Manifest edits rejected as invalid.",
        registry=metrics.registry,
    )

    def on_reload(manifest: Manifest | None) -> None:
        if manifest is None:
            failures.inc()
        else:
            repos.set(len(manifest.repos))

    store.add_listener(on_reload)


async def _manifest_health(store: ManifestStore) -> ComponentHealth:
    data: dict[str, Any] = {"path": str(store.path), "repos": len(store.manifest.repos)}
    if store.problems:
        data["problems"] = [str(p) for p in store.problems[:20]]
        return ComponentHealth(
            "degraded", "last edit of the manifest is invalid; serving the last good one", data
        )
    if not store.exists and store.generation > 0:
        return ComponentHealth("degraded", "the manifest file vanished; serving the last good one", data)
    if not store.exists:
        return ComponentHealth("ok", "no manifest file yet; serving an empty one", data)
    return ComponentHealth("ok", data=data)


class _RepoResourceList:
    """Answers resources/list with one `repo://NAME` resource per repository the caller may see."""

    def __init__(self, store: ManifestStore) -> None:
        self._store = store

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "resources/list":
            return await call_next(ctx)
        principal = current_principal()
        return ListResourcesResult(
            resources=[
                Resource(
                    uri=f"repo://{repo.name}",
                    name=repo.name,
                    description=repo.description or None,
                    mime_type="application/json",
                )
                for repo in self._store.manifest.repos
                if principal.can_see(repo.tags)
            ]
        )


def _repo_resource(store: ManifestStore) -> ResourceSpec:
    reader = UntrustedReader(concurrency=README_READ_CONCURRENCY, max_threads=README_READ_MAX_THREADS)
    warned: set[tuple[str, str]] = set()

    async def read_repo(name: str) -> str:
        """A repository's manifest entry and the head of its README (null, with a note, if refused)."""
        repo = store.manifest.find(name)
        if repo is None or not current_principal().can_see(repo.tags):
            raise NotFoundError(f"no repository named {name!r}")
        head, note = await _readme_head(repo, reader, warned)
        if note is not None:
            await client_log().warning(note, repo=repo.name)
        else:
            await client_log().debug("README head read", repo=repo.name, chars=len(head or ""))
        return json.dumps({**RepoOut.of(repo).model_dump(), "readme_head": head, "readme_note": note})

    return ResourceSpec("repo://{name}", read_repo, name="repository", mime_type="application/json")


async def _readme_head(
    repo: Repo, reader: UntrustedReader, warned: set[tuple[str, str]]
) -> tuple[str | None, str | None]:
    """The README's head and None, or None and why it was refused (None too when there is none).

    README content is chosen by whoever can push to the repository, so it goes through
    `UntrustedReader` (no symlink out of the repository, regular files only, size and time
    bounded). A missing candidate moves on to the next; the first one present but refused ends
    the search: serving README.rst because README.md is a FIFO would only hide the problem.
    The refusal is logged at warning level once per repository and reason (a client repeating
    the read cannot flood the log), later ones at debug level.
    """
    for candidate in README_CANDIDATES:
        try:
            head = await reader.read_head(
                Path(repo.path), candidate, max_bytes=README_HEAD_BYTES, time_limit=README_READ_SECONDS
            )
        except FileAbsent:
            continue
        except FileRefused as refused:
            note = f"{candidate} refused: {refused.reason}"
            first = (repo.name, note) not in warned
            if first and len(warned) >= README_WARNED_MAX:
                warned.clear()
            warned.add((repo.name, note))
            (log.warning if first else log.debug)("readme_refused", repo=repo.name, reason=note)
            return None, note
        return head.decode("utf-8", errors="replace"), None
    return None, None
