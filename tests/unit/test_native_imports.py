"""The native libraries the services load must live together in one process, in any order.

usearch 2.26.3 to 2.26.6 crash the interpreter (SIGSEGV) when onnxruntime 1.32 is imported
after them: a server whose index module happened to load first would die at start. This runs
each order in a fresh interpreter, so an upgrade that brings the crash back fails here first."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "usearch.index",
    "onnxruntime",
    "tokenizers",
    "numpy",
    "cryptography.hazmat.primitives.ciphers.aead",
]


@pytest.mark.parametrize("first", MODULES)
def test_each_native_library_may_be_imported_first(first: str) -> None:
    order = [first, *(m for m in MODULES if m != first)]
    code = f"import importlib\nfor name in {order!r}:\n    importlib.import_module(name)\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"importing {order} ended with {done.returncode}: {done.stderr[-500:]}"
    assert done.stdout.strip() == "ok"
