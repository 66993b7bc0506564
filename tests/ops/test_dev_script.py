"""`python3 dev.py`: asking for help succeeds; a wrong command is a usage error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.ops.support import ROOT


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_exits_0_and_prints_the_usage_on_stdout(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), flag], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "python3 dev.py serve" in done.stdout
    assert "python3 dev.py --help" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("argv", [[], ["bogus"]])
def test_no_or_unknown_command_is_a_usage_error(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), *argv], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "python3 dev.py serve" in done.stderr
    assert done.stdout == ""
