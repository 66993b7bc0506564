"""Where each attempt's log file lives, and reading its end back.

`process.py` writes the file (the head of the output, up to `log_max_bytes`); the CLI reads its
end to show an earlier attempt's output, whose tail the database no longer holds (a run keeps
only its latest attempt's tail).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["log_file", "read_tail"]


def log_file(log_dir: Path, workflow_id: str, run_id: str, attempt: int) -> Path:
    """`DATA_DIR/logs/WORKFLOW_ID/RUN_ID.ATTEMPT.log`, as the README names it."""
    return log_dir / workflow_id / f"{run_id}.{attempt}.log"


def read_tail(path: Path, max_bytes: int) -> str | None:
    """The last `max_bytes` of the file (a partial first line dropped), or None when there is no
    such file here (the attempt ran on another machine, or its logs were removed)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - max_bytes))
            data = fh.read(max_bytes)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if size > max_bytes:
        data = data.partition(b"\n")[2]
    return data.decode("utf-8", errors="replace")
