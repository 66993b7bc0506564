"""The recipes of docs/ARCHITECTURE.md as data, so tests can follow them literally.

A recipe's code block is marked by the comment line before it:

    <!-- recipe: add-a-service file: mahavishnu/notes/settings.py -->   a whole new file
    <!-- recipe: add-a-service edit: mahavishnu/cli.py -->              lines added to a file

Tests write the `file` blocks to disk as they stand and apply the `edit` blocks the way the
recipe says (run in the edited module's namespace, or compared with the file they extend).
"""

from __future__ import annotations
import __future__

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import CodeType

__all__ = [
    "ARCHITECTURE",
    "Block",
    "compile_edit",
    "edit",
    "mypy_problems",
    "recipe",
    "recipe_section",
    "ruff_problems",
    "write_files",
]

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
_MARKED = re.compile(
    r"^<!-- recipe: (?P<recipe>[a-z-]+) (?P<kind>file|edit): (?P<path>\S+) -->\n"
    r"```(?P<lang>\w+)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Block:
    recipe: str
    kind: str
    """`file` (a whole new file) or `edit` (lines added to an existing one)."""
    path: str
    lang: str
    code: str


def recipe(name: str) -> list[Block]:
    """The marked blocks of one recipe, in the document's order."""
    text = ARCHITECTURE.read_text()
    return [
        Block(m["recipe"], m["kind"], m["path"], m["lang"], m["code"])
        for m in _MARKED.finditer(text)
        if m["recipe"] == name
    ]


def recipe_section(title: str) -> str:
    """The text of the `## <title>` section, up to the next `## ` heading."""
    text = ARCHITECTURE.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def write_files(blocks: list[Block], root: Path) -> list[Path]:
    """Write each `file` block under `root` at its path; returns the paths written."""
    written = []
    for block in blocks:
        if block.kind == "file":
            path = root / block.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code)
            written.append(path)
    return written


def edit(blocks: list[Block], path: str) -> Block:
    """The one `edit` block for `path`."""
    (found,) = [b for b in blocks if b.kind == "edit" and b.path == path]
    return found


def compile_edit(block: Block, module_file: str) -> CodeType:
    """An edit block of Python compiled as part of the module it extends (which, like every
    module here, has `from __future__ import annotations`)."""
    flags = __future__.annotations.compiler_flag
    return compile(block.code, module_file, "exec", flags=flags, dont_inherit=True)


def ruff_problems(paths: list[Path]) -> str:
    """What the project's ruff (lint and format) says of `paths`; empty when they are clean.
    `mahavishnu` counts as first-party though the files lie outside the tree."""
    ruff = str(ROOT / ".venv" / "bin" / "ruff")
    config = [
        "--config",
        str(ROOT / "pyproject.toml"),
        "--config",
        "lint.isort.known-first-party=['mahavishnu']",
    ]
    files = [str(p) for p in paths]
    found = []
    for command in ([ruff, "check", *config, *files], [ruff, "format", "--check", *config, *files]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            found.append(result.stdout + result.stderr)
    return "\n".join(found)


def mypy_problems(files: list[str], *, cwd: Path, search: Path = ROOT) -> str:
    """What mypy --strict (the project's settings) says of `files`, run in `cwd` with `search` on
    its path (where `mahavishnu` is found); the modules they import are read but not judged.
    Empty when they type-check. The cache outlives the test run: a cold check takes a minute, a
    warm one seconds."""
    result = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "mypy"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "--follow-imports=silent",
            "--cache-dir",
            str(Path(tempfile.gettempdir()) / "mahavishnu-recipe-mypy-cache"),
            *files,
        ],
        cwd=cwd,
        env={**os.environ, "MYPYPATH": str(search)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr
