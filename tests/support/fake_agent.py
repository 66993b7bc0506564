#!/usr/bin/env python3
"""A stand-in for an AI agent CLI (`claude -p PROMPT`, `qwen -p PROMPT`), driven by the prompt.

It records how it was called (argv, cwd, environment names) to `.fake-agent-calls.jsonl` in the
repository it runs in (and when it ran, to `.fake-agent-spans.jsonl`), prints the prompt, then obeys
directives found in the prompt:

    sleep:SECONDS        sleep (after printing), e.g. to be timed out or cancelled
    exit:CODE            exit with CODE
    fail-until:N         exit 1 until this repository has seen N calls, then succeed
    fail-in:NAME         exit 2 when the repository folder is named NAME
    spawn-child          start a grandchild in the same process group that sleeps, recording its pid
    bytes:N              print N bytes of output
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    prompt = argv[-1] if argv else ""
    here = Path.cwd()
    started = time.time()
    atexit.register(_record_span, here, started)
    calls = here / ".fake-agent-calls.jsonl"
    with calls.open("a") as fh:
        fh.write(
            json.dumps({"argv": argv, "cwd": str(here), "env": sorted(os.environ), "pid": os.getpid()}) + "\n"
        )
    count = len(calls.read_text().splitlines())
    print(f"agent in {here.name}: {prompt}", flush=True)
    directives = dict(re.findall(r"([a-z-]+):(\S+)", prompt))
    if "bytes" in directives:
        sys.stdout.write("x" * int(directives["bytes"]))
        sys.stdout.flush()
    if "spawn-child" in prompt:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        (here / ".fake-agent-child.pid").write_text(str(child.pid))
        (here / ".fake-agent.pid").write_text(str(os.getpid()))
    if "sleep" in directives:
        time.sleep(float(directives["sleep"]))
    if directives.get("fail-in") == here.name:
        print("failing on request", file=sys.stderr)
        return 2
    if "fail-until" in directives and count < int(directives["fail-until"]):
        print(f"attempt {count} fails on request", file=sys.stderr)
        return 1
    return int(directives.get("exit", "0"))


def _record_span(here: Path, started: float) -> None:
    """When this process ran, so tests can measure real concurrency."""
    with (here / ".fake-agent-spans.jsonl").open("a") as fh:
        fh.write(json.dumps({"start": started, "end": time.time()}) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
