"""Mahavishnu's repository tools: what an AI assistant can ask about the managed repos.

Every tool sees only the repositories inside the caller's tag scope; a repo
outside it is reported as not found, never as forbidden, so scope does not
leak names.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import BaseModel, Field

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.manifest_model import Repo, name_sort_key
from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError
from mahavishnu.platform.mcp import ToolSpec

__all__ = ["RepoTools"]

MAX_PAGE = 200


class RepoOut(BaseModel):
    name: str
    nickname: str | None
    package: str | None
    path: str
    role: str | None
    tags: list[str]
    description: str
    mcp: str | None

    @classmethod
    def of(cls, repo: Repo) -> RepoOut:
        return cls(
            name=repo.name,
            nickname=repo.nickname,
            package=repo.package,
            path=str(repo.path),
            role=repo.role,
            tags=list(repo.tags),
            description=repo.description,
            mcp=repo.mcp,
        )


class RepoPage(BaseModel):
    repos: list[RepoOut]
    next_cursor: str | None = Field(
        description="Pass back as `cursor` for the next page; null on the last page."
    )
    total: int = Field(description="How many repositories match the filters in all pages.")


class RepoPath(BaseModel):
    name: str
    path: str


class RepoPaths(BaseModel):
    paths: list[RepoPath]


class RoleCount(BaseModel):
    role: str
    count: int


class RoleList(BaseModel):
    roles: list[RoleCount]


class RoleRepos(BaseModel):
    role: str
    repos: list[RepoOut]


def _encode_cursor(after: str, fingerprint: str) -> str:
    raw = json.dumps({"after": after, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, fingerprint: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after, stamp = data["after"], data["f"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgumentError("cursor is not one this server issued") from None
    if not isinstance(after, str) or stamp != fingerprint:
        raise InvalidArgumentError("cursor belongs to a listing with other filters; start again without it")
    return after


class RepoTools:
    """The tool functions, bound to the manifest store they read."""

    def __init__(self, store: ManifestStore) -> None:
        self._store = store

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.list_repos, title="List repositories"),
            ToolSpec(self.get_repo, title="Get one repository"),
            ToolSpec(self.get_all_repo_paths, title="Get repository paths"),
            ToolSpec(self.list_roles, title="List repository roles"),
            ToolSpec(self.get_repos_by_role, title="Get repositories by role"),
        ]

    def _visible(self, repos: Iterable[Repo]) -> list[Repo]:
        principal = current_principal()
        return [r for r in repos if principal.can_see(r.tags)]

    async def list_repos(
        self,
        tag: str | None = None,
        role: str | None = None,
        query: str | None = None,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 50,
        cursor: str | None = None,
    ) -> RepoPage:
        """List the managed git repositories, sorted by name, optionally filtered.

        Filters combine: `tag` (exact tag), `role` (exact role) and `query` (case-insensitive
        text in name, nickname, package or description). Results come in pages of `limit`;
        when `next_cursor` is not null, call again with the same filters and `cursor` set to it.
        Cursors stay valid when the manifest is edited between pages.
        """
        fingerprint = hashlib.sha256(json.dumps([tag, role, query]).encode()).hexdigest()[:16]
        after = _decode_cursor(cursor, fingerprint) if cursor else None
        matches = self._visible(self._store.manifest.filter(tag=tag, role=role, query=query))
        # Resume by sort key, not by offset: repos added or removed between pages shift nothing.
        remaining = [r for r in matches if after is None or name_sort_key(r.name) > name_sort_key(after)]
        page = remaining[:limit]
        more = len(remaining) > limit
        return RepoPage(
            repos=[RepoOut.of(r) for r in page],
            next_cursor=_encode_cursor(page[-1].name, fingerprint) if more and page else None,
            total=len(matches),
        )

    async def get_repo(self, name_or_nickname: str) -> RepoOut:
        """Get one repository's manifest entry by its name or its nickname (case does not matter)."""
        repo = self._store.manifest.find(name_or_nickname)
        if repo is None or not current_principal().can_see(repo.tags):
            raise NotFoundError(f"no repository named {name_or_nickname!r}")
        return RepoOut.of(repo)

    async def get_all_repo_paths(self, tag: str | None = None) -> RepoPaths:
        """Get the absolute folder path of every repository (only those with `tag` when given)."""
        repos = self._visible(self._store.manifest.filter(tag=tag))
        return RepoPaths(paths=[RepoPath(name=r.name, path=str(r.path)) for r in repos])

    async def list_roles(self) -> RoleList:
        """List the roles the repositories play, with how many repositories have each."""
        counts = Counter(r.role for r in self._visible(self._store.manifest.repos) if r.role)
        return RoleList(roles=[RoleCount(role=k, count=v) for k, v in sorted(counts.items())])

    async def get_repos_by_role(self, role: str) -> RoleRepos:
        """Get every repository with the given role (see `list_roles` for the roles in use)."""
        repos = self._visible(self._store.manifest.filter(role=role))
        return RoleRepos(role=role, repos=[RepoOut.of(r) for r in repos])
