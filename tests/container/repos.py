"""Repositories to mount into a container at /repos: real git repositories and a manifest that
names them by their path inside the container, owned by the image's user (uid 10001) so git in
the container trusts them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from tests.support.gitrepos import make_git_repo

IMAGE_UID = 10001
MOUNT = "/repos"
NAMES = ("akosha", "crackerjack", "session-buddy")


def mounted_fleet(folder: Path, *extra: Path) -> Path:
    """`folder` holds the repositories and repos.yaml, and a copy of each `extra` file (a
    script the container runs, say); mount it at /repos."""
    for file in extra:
        shutil.copyfile(file, folder / file.name)
    entries = []
    for name in NAMES:
        make_git_repo(folder / name)
        entries.append({"name": name, "path": f"{MOUNT}/{name}", "tags": ["python"], "role": "tool"})
    (folder / "repos.yaml").write_text(yaml.safe_dump({"repos": entries}))
    for path in [folder, *folder.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(path, IMAGE_UID, IMAGE_UID, follow_symlinks=False)
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder
