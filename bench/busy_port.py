"""How long `mahavishnu serve` takes to give up on a port another socket holds (issue #10,
item 1): it must say so in one line and exit non-zero within a second.

Holds a loopback port, runs `mahavishnu serve --port P` `--rounds` times (default 5) from a
temporary folder with a private config home, and reports the median and every run, beside
`mahavishnu --help` (the CLI's own start-up, which the failure cannot go below).
Floor: the median is under 1 s. Exits 1 when it is missed.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

FLOOR_SECONDS = 1.0
COMMAND = [sys.executable, "-m", "mahavishnu"]


def timed(
    args: Sequence[str], env: dict[str, str], cwd: Path
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run([*COMMAND, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder, socket.socket() as held:
        home = Path(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAHAVISHNU_")}
        env.update(XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"))
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        busy, help_ = [], []
        for _ in range(args.rounds):
            seconds, done = timed(["serve", "--port", str(port)], env, home)
            if done.returncode == 0 or "already in use" not in done.stderr:
                raise SystemExit(f"serve did not refuse the busy port: {done.returncode} {done.stderr!r}")
            busy.append(seconds)
            help_.append(timed(["--help"], env, home)[0])
    median = statistics.median(busy)
    print(f"busy port: median {median:.3f} s, runs {', '.join(f'{s:.2f}' for s in busy)}")
    print(f"--help:    median {statistics.median(help_):.3f} s (the CLI's own start-up)")
    print(f"message:   {done.stderr.strip().splitlines()[-1]}")
    met = median < FLOOR_SECONDS
    print(
        f"verdict: busy-port exit {median:.2f} s (floor < {FLOOR_SECONDS:g} s): {'MET' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
