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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.manifest_model import Repo, name_sort_key, tag_filter_problem
from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.client_logging import client_log
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError
from mahavishnu.platform.mcp import ToolSpec

__all__ = ["RepoTools"]

MAX_PAGE = 200
T = TypeVar("T")


class RepoOut(BaseModel):
    name: str
    nickname: str | None
    package: str | None
    path: str
    role: str | None
    tags: list[str]
    description: str
    mcp: str | None
    host: str | None = Field(
        default=None, description="The build host whose worker runs this repository's runs (engine temporal)."
    )

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
            host=repo.host,
        )


class Paged(BaseModel):
    """What every list-shaped answer ends with: where to resume, and how many match in all."""

    next_cursor: str | None = Field(
        description="Pass back as `cursor` (same other arguments) for the next page; null on the last page."
    )
    total: int = Field(description="How many entries match in all pages.")


class RepoPage(Paged):
    repos: list[RepoOut]


class RepoPath(BaseModel):
    name: str
    path: str


class RepoPaths(Paged):
    paths: list[RepoPath]


class RoleCount(BaseModel):
    role: str
    count: int


class RoleList(Paged):
    roles: list[RoleCount]


class RoleRepos(Paged):
    role: str
    repos: list[RepoOut]


Limit = Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Entries per page, 1 to {MAX_PAGE}.")]
Cursor = Annotated[str | None, Field(description="The `next_cursor` of the previous page.")]


@dataclass(frozen=True, slots=True)
class _Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    total: int


def _paginate(
    items: Sequence[T],
    name: Callable[[T], str],
    *,
    limit: int,
    cursor: str | None,
    listing: list[object],
    order: Callable[[str], Any] = str,
) -> _Page[T]:
    """One page of `items` (sorted by `order` of their `name`) after the cursor's, and the next cursor.

    A cursor names the last entry seen, not an offset, so entries added or removed between pages
    shift nothing; it is bound to `listing` (the tool and its filters), so a cursor from another
    listing is refused rather than silently misread."""
    fingerprint = hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]
    after = order(_decode_cursor(cursor, fingerprint)) if cursor else None
    remaining = [item for item in items if after is None or order(name(item)) > after]
    page = remaining[:limit]
    more = len(remaining) > limit
    return _Page(page, _encode_cursor(name(page[-1]), fingerprint) if more and page else None, len(items))


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

    @staticmethod
    def _refuse_impossible_tag(tag: str | None) -> None:
        """A tag no manifest may hold is a typo: say so, rather than answer an empty page that
        sends the caller looking for a repository (the CLI's `repos list --tag` says the same)."""
        problem = tag_filter_problem(tag) if tag is not None else None
        if problem is not None:
            raise InvalidArgumentError(problem)

    async def list_repos(
        self,
        tag: str | None = None,
        role: str | None = None,
        query: str | None = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> RepoPage:
        """List the managed git repositories, sorted by name, optionally filtered.

        Filters combine: `tag` (exact tag), `role` (exact role) and `query` (case-insensitive
        text in name, nickname, package or description). Results come in pages of `limit`;
        when `next_cursor` is not null, call again with the same filters and `cursor` set to it.
        Cursors stay valid when the manifest is edited between pages.
        """
        self._refuse_impossible_tag(tag)
        matches = self._visible(self._store.manifest.filter(tag=tag, role=role, query=query))
        page = _repo_page(matches, limit=limit, cursor=cursor, listing=[tag, role, query])
        return RepoPage(
            repos=[RepoOut.of(r) for r in page.items], next_cursor=page.next_cursor, total=page.total
        )

    async def get_repo(self, name_or_nickname: str) -> RepoOut:
        """Get one repository's manifest entry by its name or its nickname (case does not matter)."""
        repo = self._store.manifest.find(name_or_nickname)
        if repo is None or not current_principal().can_see(repo.tags):
            raise NotFoundError(f"no repository named {name_or_nickname!r}")
        if repo.name.lower() != name_or_nickname.lower():
            await client_log().info(f"{name_or_nickname!r} is the nickname of {repo.name!r}", repo=repo.name)
        return RepoOut.of(repo)

    async def get_all_repo_paths(
        self, tag: str | None = None, limit: Limit = MAX_PAGE, cursor: Cursor = None
    ) -> RepoPaths:
        """Get the absolute folder path of each repository (only those with `tag` when given),
        by name, in pages of `limit`: pass `next_cursor` back as `cursor` for the next page."""
        self._refuse_impossible_tag(tag)
        repos = self._visible(self._store.manifest.filter(tag=tag))
        page = _repo_page(repos, limit=limit, cursor=cursor, listing=["paths", tag])
        paths = [RepoPath(name=r.name, path=str(r.path)) for r in page.items]
        return RepoPaths(paths=paths, next_cursor=page.next_cursor, total=page.total)

    async def list_roles(self, limit: Limit = MAX_PAGE, cursor: Cursor = None) -> RoleList:
        """List the roles the repositories play, with how many repositories have each, by role,
        in pages of `limit`: pass `next_cursor` back as `cursor` for the next page."""
        counts = Counter(r.role for r in self._visible(self._store.manifest.repos) if r.role)
        roles = [RoleCount(role=k, count=v) for k, v in sorted(counts.items())]
        page = _paginate(roles, lambda c: c.role, limit=limit, cursor=cursor, listing=["roles"])
        return RoleList(roles=page.items, next_cursor=page.next_cursor, total=page.total)

    async def get_repos_by_role(self, role: str, limit: Limit = 50, cursor: Cursor = None) -> RoleRepos:
        """Get the repositories with the given role (see `list_roles` for the roles in use), by
        name, in pages of `limit`: pass `next_cursor` back as `cursor` for the next page."""
        repos = self._visible(self._store.manifest.filter(role=role))
        page = _repo_page(repos, limit=limit, cursor=cursor, listing=["by_role", role])
        repos_out = [RepoOut.of(r) for r in page.items]
        return RoleRepos(role=role, repos=repos_out, next_cursor=page.next_cursor, total=page.total)


def _repo_page(
    repos: Sequence[Repo], *, limit: int, cursor: str | None, listing: list[object]
) -> _Page[Repo]:
    """Repositories in the manifest's order (case-insensitive by name), resumed by name."""
    return _paginate(
        repos, lambda r: r.name, limit=limit, cursor=cursor, listing=listing, order=name_sort_key
    )
