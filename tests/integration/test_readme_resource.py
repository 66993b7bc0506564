"""`repo://NAME` against hostile READMEs: symlinks out, FIFOs, devices, huge files, over real HTTP.

The server runs with authentication on, so its secret is in its environment (and in
/proc/self/environ); the caller's token sees only the `alpha` tag, not the `vault` repository.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import require_capability
from tests.support.client import call_tool, rpc
from tests.support.repos import make_repos
from tests.support.server import SECRET, RunningServer, base_env, start_server
from tests.support.tokens import claims, hs256

VAULT_MARKER = "VAULT-ONLY-FOR-SECRET-SCOPE-7f3a"
PASSWD_MARKER = "root:x:0:0"
NAMES = [
    "plain",
    "environ",
    "passwd",
    "neighbour",
    "dirlink",
    "fifo",
    "devzero",
    "devnode",
    "inside",
    "huge",
    "fallback",
    "stopfirst",
    "gitconfig",
]
LEAVING = "README.md refused: a symlink leaving the repository"


def _arrange(repos: Path) -> bool:
    """Turn the plain READMEs into hostile ones; return whether a device node could be made."""
    (repos / "vault" / "README.md").write_text(f"# vault\n{VAULT_MARKER}\n")
    for name in ("environ", "passwd", "neighbour", "dirlink", "inside", "devzero", "gitconfig"):
        (repos / name / "README.md").unlink()
    (repos / "environ" / "README.md").symlink_to("/proc/self/environ")
    (repos / "passwd" / "README.md").symlink_to("/etc/passwd")
    (repos / "neighbour" / "README.md").symlink_to("../vault/README.md")
    (repos / "dirlink" / "docs").mkdir()
    (repos / "dirlink" / "README.md").symlink_to("docs")
    (repos / "devzero" / "README.md").symlink_to("/dev/zero")
    (repos / "inside" / "docs").mkdir()
    (repos / "inside" / "docs" / "intro.md").write_text("# inside, through a symlink\n")
    (repos / "inside" / "README.md").symlink_to("docs/intro.md")
    (repos / "huge" / "README.md").write_bytes(b"# huge\n" + b"h" * 1_000_000)
    (repos / "fallback" / "README.md").unlink()
    (repos / "fallback" / "README.rst").write_text("fallback rst\n")
    for name in ("fifo", "stopfirst"):
        (repos / name / "README.md").unlink()
        os.mkfifo(repos / name / "README.md")
    (repos / "stopfirst" / "README.rst").write_text("should not be served\n")
    (repos / "gitconfig" / ".git").mkdir()
    (repos / "gitconfig" / ".git" / "config").write_text("url = https://bot:ghp_leak@example.com/x\n")
    (repos / "gitconfig" / "README.md").symlink_to(".git/config")
    (repos / "devnode" / "README.md").unlink()
    try:
        os.mknod(repos / "devnode" / "README.md", stat.S_IFCHR | 0o644, os.makedev(1, 5))
    except PermissionError:
        (repos / "devnode" / "README.md").write_text("# no CAP_MKNOD here\n")
        return False
    return True


@pytest.fixture(scope="module")
def hostile(workdir: Path) -> tuple[Path, bool]:
    specs: list[dict[str, Any]] = [{"name": n, "role": "tool", "tags": ["alpha"]} for n in NAMES]
    specs.append({"name": "vault", "role": "tool", "tags": ["secret"]})
    manifest = make_repos(workdir, specs)
    return manifest, _arrange(workdir / "repos")


@pytest.fixture(scope="module")
def server(workdir: Path, hostile: tuple[Path, bool]) -> Iterator[RunningServer]:
    env = base_env(workdir, hostile[0], {"MAHAVISHNU_ENV": "production", "MAHAVISHNU_AUTH_SECRET": SECRET})
    running = start_server(workdir, env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token() -> str:
    return hs256(claims(sub="alpha-reader", tags=["alpha"]))


def _entry(response: httpx.Response) -> dict[str, Any]:
    """The resource's JSON, after checking the answer is a success that leaks nothing."""
    assert response.status_code == 200, response.text
    for leak in (SECRET, VAULT_MARKER, PASSWD_MARKER, "ghp_leak", "/proc/", "/etc/"):
        assert leak not in response.text
    body = response.json()
    assert "result" in body, body
    entry: dict[str, Any] = json.loads(body["result"]["contents"][0]["text"])
    return entry


def read(server: RunningServer, token: str, name: str) -> dict[str, Any]:
    return _entry(rpc(server.url, "resources/read", {"uri": f"repo://{name}"}, token=token))


def test_the_vault_is_another_scope(server: RunningServer, token: str) -> None:
    hidden = rpc(server.url, "resources/read", {"uri": "repo://vault"}, token=token).json()
    assert "error" in hidden
    assert VAULT_MARKER not in json.dumps(hidden)


def test_a_plain_readme_is_served(server: RunningServer, token: str) -> None:
    entry = read(server, token, "plain")
    assert entry["readme_head"].startswith("# plain")
    assert entry.get("readme_note") is None


@pytest.mark.parametrize("name", ["environ", "passwd", "neighbour", "devzero"])
def test_symlinks_leaving_the_repository_are_refused(server: RunningServer, token: str, name: str) -> None:
    entry = read(server, token, name)
    assert entry["readme_head"] is None
    assert entry["readme_note"] == LEAVING


def test_a_symlink_to_a_directory_is_refused(server: RunningServer, token: str) -> None:
    entry = read(server, token, "dirlink")
    assert entry["readme_head"] is None
    assert entry["readme_note"] == "README.md refused: a directory, not a regular file"


def test_a_symlink_into_git_is_refused(server: RunningServer, token: str) -> None:
    entry = read(server, token, "gitconfig")
    assert entry["readme_head"] is None
    assert entry["readme_note"] == "README.md refused: a path into the repository's .git folder"


def test_a_fifo_is_refused_at_once(server: RunningServer, token: str) -> None:
    entry = read(server, token, "fifo")
    assert entry["readme_head"] is None
    assert entry["readme_note"] == "README.md refused: a FIFO, not a regular file"


def test_a_present_but_refused_readme_ends_the_search(server: RunningServer, token: str) -> None:
    entry = read(server, token, "stopfirst")
    assert entry["readme_head"] is None
    assert entry["readme_note"] == "README.md refused: a FIFO, not a regular file"


def test_a_device_node_is_refused(server: RunningServer, token: str, hostile: tuple[Path, bool]) -> None:
    if not hostile[1]:
        require_capability("creating a device node needs CAP_MKNOD")
    entry = read(server, token, "devnode")
    assert entry["readme_head"] is None
    assert entry["readme_note"] == "README.md refused: a character device, not a regular file"


def test_a_symlink_inside_the_repository_is_followed(server: RunningServer, token: str) -> None:
    entry = read(server, token, "inside")
    assert entry["readme_head"] == "# inside, through a symlink\n"
    assert entry.get("readme_note") is None


def test_a_huge_readme_yields_only_its_head(server: RunningServer, token: str) -> None:
    entry = read(server, token, "huge")
    assert len(entry["readme_head"]) == 4096
    assert entry["readme_head"].startswith("# huge\nhhh")


def test_a_missing_readme_md_falls_back_to_the_next(server: RunningServer, token: str) -> None:
    entry = read(server, token, "fallback")
    assert entry["readme_head"] == "fallback rst\n"
    assert entry.get("readme_note") is None


async def test_a_flood_of_fifo_reads_holds_nothing_else(server: RunningServer, token: str) -> None:
    """Many FIFO reads at once: other reads, tools and /health answer meanwhile; the FIFO reads end."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    fifo_answers: list[httpx.Response] = []

    async def post(http: httpx.AsyncClient, uri: str) -> httpx.Response:
        message = {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}}
        return await http.post(server.url, json=message, headers=headers)

    async def fifo_read(http: httpx.AsyncClient) -> None:
        fifo_answers.append(await post(http, "repo://fifo"))

    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http, anyio.create_task_group() as tg:
        with anyio.fail_after(30):
            for _ in range(48):
                tg.start_soon(fifo_read, http)
            await anyio.sleep(0.2)
            started = time.monotonic()
            assert _entry(await post(http, "repo://plain"))["readme_head"].startswith("# plain")
            tool = await http.post(
                server.url,
                json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_repos"}},
                headers=headers,
            )
            assert tool.status_code == 200
            assert tool.json()["result"]["structuredContent"]["total"] == len(NAMES)
            assert (await http.get(f"{server.base}/health")).status_code == 200
            assert time.monotonic() - started < 10
    assert len(fifo_answers) == 48
    for answer in fifo_answers:
        assert _entry(answer)["readme_head"] is None


def test_refusals_are_logged_once_without_content(server: RunningServer, token: str) -> None:
    """Runs last: every refusal above, repeated reads included, gave one warning per repository."""
    for _ in range(3):
        read(server, token, "passwd")
    assert call_tool(server.url, "get_health", token=token).status_code == 200
    time.sleep(0.3)
    text = server.log_path.read_text()
    for leak in (SECRET, VAULT_MARKER, PASSWD_MARKER, "ghp_leak"):
        assert leak not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    refusals = [line for line in lines if line.get("event") == "readme_refused"]
    assert all(line["level"] == "warning" for line in refusals)
    by_repo = sorted(line["repo"] for line in refusals)
    expected = ["dirlink", "environ", "fifo", "gitconfig", "neighbour", "passwd", "stopfirst", "devzero"]
    if any(line["repo"] == "devnode" for line in refusals):
        expected.append("devnode")
    assert by_repo == sorted(expected)
    assert next(line for line in refusals if line["repo"] == "passwd")["reason"] == LEAVING
