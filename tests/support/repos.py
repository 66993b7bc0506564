"""Build real repository folders and a manifest describing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def make_repos(root: Path, specs: list[dict[str, Any]]) -> Path:
    """Create one folder (with a README) per spec under `root` and write `root/repos.yaml`."""
    entries = []
    for spec in specs:
        path = root / "repos" / spec["name"]
        path.mkdir(parents=True, exist_ok=True)
        (path / "README.md").write_text(f"# {spec['name']}\n\n{spec.get('description', 'A repository.')}\n")
        entries.append({"path": str(path), **spec})
    manifest = root / "repos.yaml"
    manifest.write_text(yaml.safe_dump({"repos": entries}, sort_keys=False))
    return manifest


def standard_specs(count: int = 0) -> list[dict[str, Any]]:
    """A small fleet with overlapping tags and roles, plus `count` generated ones."""
    specs: list[dict[str, Any]] = [
        {
            "name": "akosha",
            "nickname": "ako",
            "role": "diviner",
            "tags": ["python", "analytics"],
            "description": "Memory aggregation and semantic search",
        },
        {
            "name": "crackerjack",
            "nickname": "cj",
            "role": "inspector",
            "tags": ["python", "quality"],
            "description": "Lint and test runner",
        },
        {"name": "fastblocks", "role": "app", "tags": ["python", "web"], "description": "Web framework"},
        {
            "name": "mahavishnu",
            "nickname": "vishnu",
            "role": "orchestrator",
            "tags": ["python", "mcp"],
            "description": "Orchestrates repositories",
        },
        {"name": "webui", "role": "app", "tags": ["typescript", "web"], "description": "Browser front end"},
    ]
    specs.extend(
        {
            "name": f"gen-{i:04d}",
            "role": "tool",
            "tags": ["generated", "python" if i % 2 else "rust"],
            "description": f"Generated repository {i}",
        }
        for i in range(count)
    )
    return specs
