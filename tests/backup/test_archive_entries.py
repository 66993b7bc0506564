"""An archive is a flat list of regular files: `read_archive` refuses any other entry (a path
that climbs out, a folder path, a link, a device) before writing anything outside `dest`, on
every Python 3.11 (it does not rely on `extractall(filter=...)`, which 3.11.0-3.11.3 lack)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from mahavishnu.ops.backup.archive import read_archive, write_archive
from mahavishnu.platform.errors import InvalidArgumentError


def _archive(path: Path, entries: list[tarfile.TarInfo]) -> Path:
    manifest = json.dumps({"files": {}}).encode()
    with tarfile.open(path, mode="w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for entry in entries:
            tar.addfile(entry, io.BytesIO(b"x" * entry.size) if entry.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _link(name: str, kind: bytes, target: str = "/etc/passwd") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "entry",
    [
        _file("../escaped.txt"),
        _file("/tmp/absolute.txt"),
        _file("folder/nested.txt"),
        _link("passwd", tarfile.SYMTYPE),
        _link("hard", tarfile.LNKTYPE),
        _link("fifo", tarfile.FIFOTYPE, ""),
        _link("dir", tarfile.DIRTYPE, ""),
    ],
    ids=["dotdot", "absolute", "nested", "symlink", "hardlink", "fifo", "directory"],
)
def test_anything_but_a_plain_file_is_refused(tmp_path: Path, entry: tarfile.TarInfo) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = _archive(tmp_path / "mahavishnu-20261202T000000Z.tar.gz", [entry])
    with pytest.raises(InvalidArgumentError, match="unexpected entry"):
        read_archive(archive, dest, None)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (dest / "passwd").exists()


def test_plain_files_are_unpacked(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = _archive(tmp_path / "mahavishnu-20261202T000000Z.tar.gz", [_file("repos.yaml")])
    manifest, problems = read_archive(archive, dest, None)
    assert (manifest, problems) == ({"files": {}}, [])
    assert (dest / "repos.yaml").read_bytes() == b"x"


@pytest.mark.parametrize("cut", [1, 4, 8])
def test_an_archive_cut_short_is_damaged_even_when_every_file_still_reads(tmp_path: Path, cut: int) -> None:
    """The cut lands in the gzip trailer (CRC and length): tarfile alone stops reading at the
    tar's end marker and never sees it."""
    source = tmp_path / "data"
    source.mkdir()
    (source / "db.sqlite").write_bytes(b"rows" * 1000)
    archive = tmp_path / "cut.tar.gz"
    write_archive(source, {}, archive, None)
    read_archive(archive, _empty(tmp_path / "whole"), None)  # the whole archive reads
    archive.write_bytes(archive.read_bytes()[:-cut])
    with pytest.raises(InvalidArgumentError, match="damaged"):
        read_archive(archive, _empty(tmp_path / "cut"), None)


def _empty(folder: Path) -> Path:
    folder.mkdir()
    return folder
