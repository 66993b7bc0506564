#!/usr/bin/env python3
"""Set up the project's virtual environment on demand, then run a command in it.

    python3 dev.py serve             install runtime deps, start every service (mahavishnu up)
    python3 dev.py serve ARGS...     the same, then `mahavishnu serve ARGS` (one service)
    python3 dev.py test  [ARGS...]   install dev deps, run the whole test suite
    python3 dev.py lock  [ARGS...]   regenerate requirements/*.lock from pyproject.toml
                                     (ARGS go to `uv pip compile`, e.g. --upgrade)
    python3 dev.py --help            this text

Needs only Python 3.11+. The environment lives in `.venv` and holds exactly the pinned,
hashed versions of `requirements/runtime.lock` (serve) or `requirements/dev.lock` (test),
installed with `pip install --require-hashes`; it is reinstalled when a lock file or
`pyproject.toml` changes (a hash stamp records what was installed). A lock whose recorded
hash of pyproject.toml's dependencies no longer matches is refused, never installed unpinned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
LOCKS = ROOT / "requirements"
MIN_PYTHON = (3, 11)
LOCK_TOOL = "uv==0.13.9"  # the pinned resolver behind `python3 dev.py lock`
DEPS_KEY = "# pyproject-dependencies-sha256: "


def check_python() -> None:
    if sys.version_info < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        sys.exit(f"Mahavishnu needs Python {need} or newer; this is {sys.version.split()[0]}")


def lock_path(extras: str) -> Path:
    return LOCKS / f"{extras or 'runtime'}.lock"


def deps_digest() -> str:
    """Hash of everything in pyproject.toml that decides the locks' contents (not its formatting)."""
    import tomllib  # 3.11+: imported after check_python so older Pythons get the version message

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = data.get("project", {})
    relevant = {
        "build-system.requires": data.get("build-system", {}).get("requires", []),
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def check_lock(lock: Path) -> None:
    """Exit with a clear message unless `lock` exists and was generated from this pyproject.toml."""
    rel = lock.relative_to(ROOT)
    if not lock.exists():
        sys.exit(f"{rel} is missing; generate it with: python3 dev.py lock")
    recorded = next(
        (ln[len(DEPS_KEY) :].strip() for ln in lock.read_text().splitlines() if ln.startswith(DEPS_KEY)),
        None,
    )
    if recorded != deps_digest():
        sys.exit(
            f"{rel} is stale: the dependencies in pyproject.toml changed since it was generated.\n"
            "Regenerate the locks with `python3 dev.py lock` (needs the package index) and commit\n"
            "requirements/*.lock with the pyproject.toml change. Nothing is installed unpinned."
        )


def ensure_env(extras: str) -> None:
    check_python()
    lock = lock_path(extras)
    check_lock(lock)
    if not (BIN / "python").exists():
        print("creating .venv ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256(
        lock.read_bytes() + (ROOT / "pyproject.toml").read_bytes() + extras.encode()
    ).hexdigest()
    stamp = VENV / f".installed-{extras or 'runtime'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"installing dependencies from {lock.relative_to(ROOT)} ...", file=sys.stderr)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--require-hashes", "-r", str(lock)], cwd=ROOT, check=True)
    # The project itself: its dependencies and build backend (setuptools) came from the lock.
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", "."], cwd=ROOT, check=True)
    stamp.write_text(digest)


def pip_index_url(python: Path) -> str | None:
    """The primary index pip is configured with, so the locks hash what that index serves."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    out = subprocess.run(
        [str(python), "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True
    )
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def lock(args: list[str]) -> int:
    """Resolve pyproject.toml (plus its build backend) into hashed, universal lock files."""
    check_python()
    digest = deps_digest()
    import tomllib

    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"][
        "requires"
    ]
    with tempfile.TemporaryDirectory(prefix="mahavishnu-lock-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"installing {LOCK_TOOL} into a throwaway environment ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(tmp / "venv")
        tool_bin = tmp / "venv" / ("Scripts" if os.name == "nt" else "bin")
        tool_pip = [str(tool_bin / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*tool_pip, LOCK_TOOL], check=True)
        build_in = tmp / "build-system.in"
        build_in.write_text("".join(f"{req}\n" for req in build_requires))
        env = dict(os.environ)
        index = pip_index_url(tool_bin / "python")
        if index and not (env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL")):
            env["UV_DEFAULT_INDEX"] = index
        # Resolve dev (the superset) first, then runtime constrained to dev's pins, so
        # `serve` and `test` share one version of every package.
        plan = [("dev", ["--extra", "dev"]), ("runtime", ["-c", str(tmp / "dev.lock")])]
        for name, extra_args in plan:
            out = tmp / f"{name}.lock"
            if (LOCKS / f"{name}.lock").exists():  # existing pins are uv's preferences: minimal churn
                shutil.copyfile(LOCKS / f"{name}.lock", out)
            cmd = [
                str(tool_bin / "uv"), "--no-config", "pip", "compile", "pyproject.toml", str(build_in),
                *extra_args, "--universal", "--python-version", ".".join(map(str, MIN_PYTHON)),
                "--generate-hashes", "--no-header", "--quiet", "-o", str(out), *args,
            ]  # fmt: skip
            print(f"resolving requirements/{name}.lock ...", file=sys.stderr)
            subprocess.run(cmd, cwd=ROOT, env=env, check=True)
            body = (
                out.read_text()
                .replace(f"-r {build_in}", "build-system (pyproject.toml)")
                .replace(str(tmp / "dev.lock"), "requirements/dev.lock")
            )
            what = "python3 dev.py test (extra: dev)" if name == "dev" else "python3 dev.py serve"
            header = (
                f"# Every package `{what}` installs, pinned with hashes (pip --require-hashes),\n"
                "# plus the build backend. Universal: Python >= 3.11 on any platform (markers).\n"
                f"# Generated by `python3 dev.py lock` with {LOCK_TOOL}; do not edit by hand.\n"
                "# Regenerate after any change to pyproject.toml's dependencies.\n"
                f"{DEPS_KEY}{digest}\n"
            )
            out.write_text(header + body)
        LOCKS.mkdir(exist_ok=True)
        for name, _ in plan:  # both or neither: a failed resolve above leaves the old locks alone
            staged = LOCKS / f".{name}.lock.new"
            shutil.copyfile(tmp / f"{name}.lock", staged)
            os.replace(staged, LOCKS / f"{name}.lock")
    print("wrote requirements/dev.lock and requirements/runtime.lock", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(__doc__)  # asked for: stdout and success, as `git --help` does
        return 0
    if not argv or argv[0] not in {"serve", "test", "lock"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "lock":
        return lock(rest)
    if command == "serve":
        ensure_env("")
        cmd = [str(BIN / "mahavishnu"), "serve", *rest] if rest else [str(BIN / "mahavishnu"), "up"]
    else:
        ensure_env("dev")
        cmd = [str(BIN / "python"), "-m", "pytest", *rest]
    os.chdir(ROOT)
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
