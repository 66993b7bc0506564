"""Reading untrusted repository files: real files, symlinks, FIFOs and devices on disk."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from mahavishnu.platform import untrusted_files
from mahavishnu.platform.untrusted_files import (
    FileAbsent,
    FileRefused,
    UntrustedFileError,
    UntrustedReader,
    read_head_sync,
)
from tests.conftest import require_capability


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository folder next to a sibling repository holding a secret."""
    root = tmp_path / "repos" / "mine"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "intro.md").write_text("# intro inside\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("url = https://user:hunter2@example.com/x.git\n")
    other = tmp_path / "repos" / "other"
    other.mkdir()
    (other / "README.md").write_text("SIBLING-SECRET\n")
    return root


def refusal(root: Path, relative: str = "README.md") -> str:
    with pytest.raises(FileRefused) as caught:
        read_head_sync(root, relative, 4096)
    return caught.value.reason


def test_regular_file_head_is_capped(repo: Path) -> None:
    (repo / "README.md").write_bytes(b"x" * 100_000)
    assert read_head_sync(repo, "README.md", 4096) == b"x" * 4096
    (repo / "small.txt").write_bytes(b"short")
    assert read_head_sync(repo, "small.txt", 4096) == b"short"


def test_symlinks_inside_the_repository_are_followed(repo: Path) -> None:
    (repo / "README.md").symlink_to("docs/intro.md")
    assert read_head_sync(repo, "README.md", 4096) == b"# intro inside\n"
    (repo / "alias").symlink_to(repo / "docs")  # absolute, still inside
    assert read_head_sync(repo, "alias/intro.md", 4096) == b"# intro inside\n"


def test_repository_root_given_through_a_symlink_still_works(repo: Path, tmp_path: Path) -> None:
    (repo / "README.md").symlink_to("docs/intro.md")
    (tmp_path / "link-to-repo").symlink_to(repo)
    assert read_head_sync(tmp_path / "link-to-repo", "README.md", 4096) == b"# intro inside\n"


@pytest.mark.parametrize("target", ["/proc/self/environ", "/etc/passwd", "../other/README.md", "/"])
def test_symlinks_leaving_the_repository_are_refused(repo: Path, target: str) -> None:
    (repo / "README.md").symlink_to(target)
    assert refusal(repo) == "a symlink leaving the repository"


def test_a_directory_symlink_leaving_the_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    (repo / "escape").symlink_to(tmp_path / "repos" / "other")
    assert refusal(repo, "escape/README.md") == "a symlink leaving the repository"


def test_dangling_symlinks(repo: Path) -> None:
    (repo / "README.md").symlink_to("/nonexistent/secret")
    assert refusal(repo) == "a symlink leaving the repository"
    (repo / "README.md").unlink()
    (repo / "README.md").symlink_to("docs/missing.md")
    with pytest.raises(FileAbsent):
        read_head_sync(repo, "README.md", 4096)


def test_missing_file_and_missing_repository_are_absent(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(FileAbsent):
        read_head_sync(repo, "README.md", 4096)
    with pytest.raises(FileAbsent):
        read_head_sync(repo, "docs/intro.md/below", 4096)
    with pytest.raises(FileAbsent):
        read_head_sync(tmp_path / "gone", "README.md", 4096)


def test_the_git_folder_is_out_of_bounds(repo: Path) -> None:
    (repo / "README.md").symlink_to(".git/config")
    assert refusal(repo) == "a path into the repository's .git folder"


def test_directories_are_refused(repo: Path) -> None:
    (repo / "README.md").mkdir()
    assert refusal(repo) == "a directory, not a regular file"
    (repo / "README.md").rmdir()
    (repo / "README.md").symlink_to("docs")
    assert refusal(repo) == "a directory, not a regular file"
    (repo / "README.md").unlink()
    (repo / "README.md").symlink_to(".")
    assert refusal(repo) == "a directory, not a regular file"


def test_a_fifo_is_refused_without_blocking(repo: Path) -> None:
    os.mkfifo(repo / "README.md")
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(refusal(repo)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the stuck open() so the thread can end
        fd = os.open(repo / "README.md", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("reading a FIFO blocked")
    assert outcome == ["a FIFO, not a regular file"]


def test_devices_are_refused(repo: Path) -> None:
    (repo / "README.md").symlink_to("/dev/zero")
    assert refusal(repo) == "a symlink leaving the repository"
    (repo / "README.md").unlink()
    try:
        os.mknod(repo / "README.md", stat.S_IFCHR | 0o644, os.makedev(1, 5))
    except PermissionError:
        require_capability("creating a device node needs CAP_MKNOD")
    assert refusal(repo) == "a character device, not a regular file"


def test_a_socket_is_refused(repo: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(repo / "README.md"))
        assert refusal(repo) == "a socket, not a regular file"


def test_a_symlink_loop_is_refused(repo: Path) -> None:
    (repo / "README.md").symlink_to("loop")
    (repo / "loop").symlink_to("README.md")
    assert refusal(repo) == "a symlink, not a regular file"


def test_a_folder_swapped_for_a_symlink_after_the_check_is_not_followed(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOCTOU: the path was checked while `docs` was a folder; it is a symlink out by the open.

    Opening it as a folder without following fails (ENOTDIR), so nothing is read.
    """
    (repo / "docs").rename(repo / "docs-old")
    (repo / "docs").symlink_to(tmp_path / "repos" / "other")
    monkeypatch.setattr(untrusted_files, "_contained_parts", lambda _root, _rel: ("docs", "README.md"))
    with pytest.raises(UntrustedFileError):
        read_head_sync(repo, "docs/README.md", 4096)


def test_a_file_swapped_for_a_symlink_after_the_check_is_not_followed(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / "README.md").symlink_to(tmp_path / "repos" / "other" / "README.md")
    monkeypatch.setattr(untrusted_files, "_contained_parts", lambda _root, _rel: ("README.md",))
    assert refusal(repo) == "a symlink, not a regular file"


@pytest.mark.parametrize("relative", ["/etc/passwd", "../other/README.md", "", "docs/../../x"])
def test_the_caller_must_ask_for_a_plain_relative_path(repo: Path, relative: str) -> None:
    with pytest.raises(ValueError, match="plain relative path"):
        read_head_sync(repo, relative, 4096)


async def test_reader_reads_in_a_thread(repo: Path) -> None:
    (repo / "README.md").write_text("# hello\n")
    reader = UntrustedReader()
    assert await reader.read_head(repo, "README.md", max_bytes=3, time_limit=5) == b"# h"
    with pytest.raises(FileAbsent):
        await reader.read_head(repo, "README.rst", max_bytes=3, time_limit=5)


@pytest.fixture
def hung_filesystem(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Every read hangs (a dead NFS server) until the test sets the event."""
    release = threading.Event()

    def hang(_root: Path, _relative: str, _max_bytes: int) -> bytes:
        release.wait(30)
        return b"late"

    monkeypatch.setattr(untrusted_files, "read_head_sync", hang)
    yield release
    release.set()


async def test_a_hung_read_is_abandoned_after_the_time_limit(
    repo: Path, hung_filesystem: threading.Event
) -> None:
    reader = UntrustedReader()
    started = time.monotonic()
    with pytest.raises(FileRefused, match=r"not read within 0.3 s"):
        await reader.read_head(repo, "README.md", max_bytes=10, time_limit=0.3)
    assert time.monotonic() - started < 5


async def test_threads_stuck_in_the_filesystem_are_bounded(
    repo: Path, hung_filesystem: threading.Event
) -> None:
    reader = UntrustedReader(concurrency=2, max_threads=3)
    reasons: list[str] = []

    async def one() -> None:
        with pytest.raises(FileRefused) as caught:
            await reader.read_head(repo, "README.md", max_bytes=10, time_limit=0.3)
        reasons.append(caught.value.reason)

    for _ in range(4):  # sequential, so each abandoned thread is known to be stuck
        await one()
    assert reasons[:3] == ["not read within 0.3 s"] * 3
    assert reasons[3] == "not read: too many earlier reads of repository files still hang"
    hung_filesystem.set()
    with anyio.fail_after(10):
        while True:  # the stuck threads end; reads work again
            try:
                assert await reader.read_head(repo, "README.md", max_bytes=10, time_limit=5) == b"late"
                break
            except FileRefused:
                await anyio.sleep(0.05)


async def test_a_flood_waits_on_its_own_limiter_not_the_shared_one(
    repo: Path, hung_filesystem: threading.Event
) -> None:
    """Reads beyond the reader's concurrency wait (within their limit); the default pool stays free."""
    reader = UntrustedReader(concurrency=2, max_threads=50)
    default = anyio.to_thread.current_default_thread_limiter()
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(_expect_refused, reader, repo)
        await anyio.sleep(0.1)
        assert default.borrowed_tokens == 0
        with anyio.fail_after(5):
            assert await anyio.to_thread.run_sync(lambda: 42) == 42


async def _expect_refused(reader: UntrustedReader, repo: Path) -> None:
    with pytest.raises(FileRefused):
        await reader.read_head(repo, "README.md", max_bytes=10, time_limit=0.5)
