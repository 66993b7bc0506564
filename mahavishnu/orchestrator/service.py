"""Mahavishnu as a platform service: its tools, resources, health checks and watcher."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import ListResourcesResult, Resource
from prometheus_client import Counter, Gauge

from mahavishnu import __version__
from mahavishnu.orchestrator.manifest import Manifest, ManifestStore, Repo
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.tools import RepoOut, RepoTools
from mahavishnu.platform.app import Service
from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.health import ComponentHealth, HealthCheck
from mahavishnu.platform.observability import Metrics, get_logger

__all__ = ["create_service"]

log = get_logger("mahavishnu.orchestrator")
README_HEAD_BYTES = 4096
INSTRUCTIONS = (
    "Mahavishnu manages a fleet of git repositories described in a manifest (name, nickname, role, "
    "tags, path). Use list_repos to browse or filter them, get_repo for one entry, get_all_repo_paths "
    "for folders, list_roles/get_repos_by_role to group them, and get_health to check the server. "
    "Each repository is also readable as the resource repo://NAME."
)


def create_service(settings: MahavishnuSettings, metrics: Metrics) -> Service:
    store = ManifestStore(settings.repos_file, allowed_roots=settings.allowed_roots, roles=settings.roles)
    _instrument_manifest(store, metrics)
    store.reload_if_changed()

    @contextlib.asynccontextmanager
    async def background() -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.watch, settings.manifest_poll_seconds)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    return Service(
        name="mahavishnu",
        version=__version__,
        instructions=INSTRUCTIONS,
        settings=settings,
        tools=RepoTools(store).specs(),
        health_checks=[HealthCheck("manifest", lambda: _manifest_health(store))],
        background=background,
        mcp_middleware=[_RepoResourceList(store)],
        configure_mcp=lambda server: _add_repo_resource(server, store),
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


def _add_repo_resource(server: MCPServer, store: ManifestStore) -> None:
    @server.resource("repo://{name}", name="repository", mime_type="application/json")
    async def read_repo(name: str) -> str:
        """A repository's manifest entry and the head of its README."""
        repo = store.manifest.find(name)
        if repo is None or not current_principal().can_see(repo.tags):
            raise MCPError(-32002, f"no repository named {name!r}")
        return json.dumps({**RepoOut.of(repo).model_dump(), "readme_head": await _readme_head(repo)})


async def _readme_head(repo: Repo) -> str | None:
    for candidate in ("README.md", "README.rst", "README.txt", "README"):
        path = Path(repo.path) / candidate
        try:
            async with await anyio.open_file(path, "rb") as fh:
                return (await fh.read(README_HEAD_BYTES)).decode("utf-8", errors="replace")
        except OSError:
            continue
    return None
