"""How long a big manifest takes to load and validate (issue #10, item 11).

Generates `--repos` real repository folders (default 10,000, in groups of 100 under one
allowed root), each an empty but real git repository (`.git` with HEAD, objects/ and refs/:
what `git init` leaves, minus its sample hooks; `git status` works in it), and a manifest
using every field for each. Then, `--rounds` times (default 5), measures:

- **load**: `load_manifest`, what a server does at start-up and on every edit: read the
  file, check every field and rule (allowed roots with symlinks resolved, duplicate names,
  nicknames and folders, tags, roles), build the manifest;
- **validate --strict**: the same plus the check `mahavishnu repos validate` adds: every
  folder exists and is a git work tree.

It says whether the manifest takes the quick path (`manifest_fast`), as a plain one should.
Medians are reported, with the process CPU time beside the wall-clock time (on a shared
machine CPU time is the steadier figure). One fresh-process `mahavishnu repos validate
--strict` (interpreter start and imports included) is timed for information.

Floor: the median of each measurement is under 1 s for 10,000 repositories. Exits 1 when
it is missed (`not checked` for another size). See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mahavishnu.orchestrator.manifest import Manifest, load_manifest
from mahavishnu.orchestrator.manifest_fast import plain_repos
from mahavishnu.orchestrator.manifest_paths import worktree_problems
from mahavishnu.orchestrator.settings import DEFAULT_ROLES

FLOOR_SECONDS = 1.0
FLOOR_SIZE = 10_000
GROUP = 100


def make_fleet(root: Path, count: int) -> Path:
    """`count` empty git repositories under `root/code` and `root/repos.yaml` naming them."""
    entries = ["repos:"]
    for index in range(count):
        folder = root / "code" / f"group-{index // GROUP:03d}" / f"repo-{index:05d}"
        git = folder / ".git"
        (git / "objects").mkdir(parents=True)
        (git / "refs").mkdir()
        (git / "HEAD").write_text("ref: refs/heads/main\n")
        language = "python" if index % 2 else "rust"
        entries.append(
            f"  - name: repo-{index:05d}\n"
            f"    nickname: r{index:05d}\n"
            f"    package: package_{index}\n"
            f"    path: {folder}\n"
            f"    role: {DEFAULT_ROLES[index % len(DEFAULT_ROLES)]}\n"
            f"    tags: [generated, {language}]\n"
            f"    description: Generated repository number {index}, for the manifest benchmark\n"
            f"    mcp: none"
        )
    manifest = root / "repos.yaml"
    manifest.write_text("\n".join(entries) + "\n")
    return manifest


def check_sample(manifest: Manifest) -> None:
    """The folders are real git work trees as git itself sees them, not just to our check."""
    for repo in manifest.repos[:: max(1, len(manifest) // 3)]:
        subprocess.run(
            ["git", "-C", str(repo.path), "rev-parse", "--is-inside-work-tree"],
            check=True,
            capture_output=True,
        )


def measure(action: Callable[[], object], rounds: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of `rounds` calls, each after a full collection."""
    walls, cpus = [], []
    for _ in range(rounds):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return walls, cpus


def fresh_process(manifest: Path, root: Path) -> str:
    """One `repos validate --strict` in a new interpreter: what a user at a terminal waits for."""
    env = {**os.environ, "MAHAVISHNU_ALLOWED_ROOTS": f'["{root}"]'}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mahavishnu", "repos", "validate", "--strict", str(manifest)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        return f"failed ({result.returncode}): {(result.stderr or result.stdout).strip()[:200]}"
    return f"{elapsed:.2f} s ({result.stdout.strip()})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=FLOOR_SIZE, help="Repositories in the manifest.")
    parser.add_argument("--rounds", type=int, default=5, help="Measurements per case (median reported).")
    args = parser.parse_args(argv)
    if args.repos < 1 or args.rounds < 1:
        parser.error("--repos and --rounds take 1 or more")

    with tempfile.TemporaryDirectory(prefix="mahavishnu-manifest-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        path = make_fleet(root, args.repos)
        size = path.stat().st_size / 1e6
        took = time.perf_counter() - started
        print(f"generated {args.repos} repositories ({size:.1f} MB manifest) in {took:.1f} s")
        roots, source = [root], str(path)

        def load() -> Manifest:
            return load_manifest(path, allowed_roots=roots, roles=DEFAULT_ROLES)

        def validate_strict() -> None:
            problems = worktree_problems(load(), source)
            if problems:
                raise SystemExit(f"unexpected problem: {problems[0]}")

        check_sample(load())
        quick = plain_repos(path.read_text(encoding="utf-8")) is not None
        print(f"quick path (manifest_fast): {'taken' if quick else 'NOT taken, the node path reads it'}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'measurement':<20} {'median s':>9} {'min s':>7} {'CPU s':>7}")
        medians = {}
        for name, action in (("load", load), ("validate --strict", validate_strict)):
            walls, cpus = measure(action, args.rounds)
            medians[name] = statistics.median(walls)
            print(f"{name:<20} {medians[name]:>9.3f} {min(walls):>7.3f} {statistics.median(cpus):>7.3f}")
        print(f"fresh process `repos validate --strict`: {fresh_process(path, root)}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if verdict(args.repos, medians) else 1


def verdict(repos: int, medians: dict[str, float]) -> bool:
    if repos != FLOOR_SIZE:
        print(f"verdict: not checked (the floor is for {FLOOR_SIZE} repositories)")
        return True
    missed = [name for name, seconds in medians.items() if seconds >= FLOOR_SECONDS]
    figures = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in medians.items())
    print(
        f"verdict: {FLOOR_SIZE} repositories: {figures} (floor < {FLOOR_SECONDS} s): "
        + ("MISSED by " + ", ".join(missed) if missed else "MET")
    )
    return not missed


if __name__ == "__main__":
    sys.exit(main())
