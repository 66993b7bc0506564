"""The recipes of docs/ARCHITECTURE.md as data, so tests can follow them literally.

A recipe's code block is marked by the comment line before it:

    <!-- recipe: add-a-service file: mahavishnu/notes/settings.py -->   a whole new file
    <!-- recipe: add-a-service edit: mahavishnu/cli.py -->              lines added to a file

Tests write the `file` blocks to disk as they stand and apply the `edit` blocks the way the
recipe says (run in the edited module's namespace, or compared with the file they extend).
"""

from __future__ import annotations
import __future__

import re
from dataclasses import dataclass
from pathlib import Path
from types import CodeType

__all__ = ["ARCHITECTURE", "Block", "compile_edit", "edit", "recipe", "recipe_section", "write_files"]

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
