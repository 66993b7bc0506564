#!/usr/bin/env python3
"""A stand-in for an AI agent CLI (`claude -p PROMPT`) run over a fleet: it says what it does in
the repository it runs in (the current folder), and fails with exit code 3 (its reason on
stderr) in the repositories the prompt names after `failing:`, as in `failing: gamma,delta`."""

from __future__ import annotations

import re
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    prompt = argv[-1] if argv else ""
    here = Path.cwd()
    print(f"agent in {here.name}: working on {prompt!r}", flush=True)
    print(f"agent in {here.name}: read {sum(1 for _ in here.iterdir())} entries", flush=True)
    failing = re.search(r"failing: ([\w,.-]+)", prompt)
    if failing and here.name in failing.group(1).split(","):
        print(f"agent in {here.name}: the tests still fail after the change; giving up", file=sys.stderr)
        return 3
    print(f"agent in {here.name}: done, the tests pass")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
