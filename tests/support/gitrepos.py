"""Real git repositories for workflow tests, and a manifest naming them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def make_git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    (path / "README.md").write_text(f"# {path.name}\n")
    subprocess.run(["git", "-C", str(path), "add", "README.md"], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", "initial"], check=True, env=env)
    return path


def git_fleet(root: Path, tags_by_name: dict[str, list[str]]) -> Path:
    """Create one git repo per name under root/repos and write root/repos.yaml."""
    entries = []
    for name, tags in tags_by_name.items():
        path = make_git_repo(root / "repos" / name)
        entries.append({"name": name, "path": str(path), "tags": tags, "role": "tool"})
    manifest = root / "repos.yaml"
    manifest.write_text(yaml.safe_dump({"repos": entries}))
    return manifest
