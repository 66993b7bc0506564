"""The README's "first ten minutes", line by line, as a new user types them: a home of its own
(no settings yet), an empty folder outside it, `bash` for each line (the walk-through is shell),
and `serve` stopped with Ctrl-C. Only two things are the test's: the workflow ID that the user
copies from the table, and the port `serve` listens on (another test may hold 8680).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.cli_fixtures import GIT_ENV, wait_for
from tests.support.server import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
CLONE = README.parent
MARK = "<!-- walkthrough -->"


def walkthrough() -> list[str]:
    """The shell lines of the marked block, without comments."""
    text = README.read_text()
    assert MARK in text, "the README lost its walk-through"
    block = text.split(MARK, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_walkthrough_works_from_an_empty_folder_outside_home(tmp_path: Path) -> None:
    home, demo = tmp_path / "home", tmp_path / "demo"
    home.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "XDG_", "POSTGRES_"))}
    env.update(GIT_ENV)
    env.update({"HOME": str(home), "MAHAVISHNU_CLONE": str(CLONE), "MAHAVISHNU_PORT": str(port)})
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    outputs: dict[str, str] = {}
    short_id = ""
    for line in walkthrough():
        line = line.replace("/tmp/demo", str(demo))
        if line.startswith("export PATH="):
            continue  # PATH already leads to this checkout's .venv/bin
        if line.startswith("mkdir -p") and "&& cd" in line:
            subprocess.run(["bash", "-c", line], check=True, env=env)
            continue
        if line == "mahavishnu serve":
            check_serve(demo, env, port)
            continue
        if line.endswith(" ID"):
            assert short_id, "the walk-through shows an ID before it uses one"
            line = line[: -len("ID")] + short_id
        result = subprocess.run(
            ["bash", "-c", line], cwd=demo, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        outputs[line] = result.stdout + result.stderr
        if line == "mahavishnu workflows list":
            short_id = re.findall(r"^([0-9a-f]{8,}) ", result.stdout, re.MULTILINE)[0]

    assert outputs["mahavishnu repos validate"].startswith("OK: 2 repositories")
    run = outputs["mahavishnu run git-status --output"]
    assert "?? notes.txt" in run
    assert "succeeded · 2 succeeded" in run
    show = outputs[f"mahavishnu workflows show {short_id}"]
    assert "app" in show
    assert "lib" in show
    config = outputs["mahavishnu config show"]
    assert f"# settings file: {home}/.config/mahavishnu/mahavishnu.yaml" in config
    assert f"# data folder: {home}/.local/share/mahavishnu" in config
    assert str(demo) in (home / ".config" / "mahavishnu" / "mahavishnu.yaml").read_text()
    assert not (demo / "settings").exists()  # nothing is kept in the working folder
    assert not (demo / "var").exists()


def check_serve(cwd: Path, env: dict[str, str], port: int) -> None:
    """`mahavishnu serve` answers on its port with the manifest the walk-through wrote; Ctrl-C
    (SIGINT, as the terminal sends it) stops it cleanly."""
    server = subprocess.Popen(
        shlex.split("mahavishnu serve"), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: _healthy(port), timeout=60, what="serve to answer /health")
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, output.decode(errors="replace")


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
