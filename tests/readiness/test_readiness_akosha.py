"""`mahavishnu readiness --service akosha` checks what Akosha needs beyond the platform: the
token senders push with, the key its store is sealed under, and the embedding model
`search_all_systems` finds by meaning with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from mahavishnu.platform.crypto import generate_key
from tests.support.akosha import akosha_env

TOKEN = "a-sender-token-of-more-than-thirty-two-bytes-0123"


def _readiness(tmp_path: Path, **env: str) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mahavishnu",
            "readiness",
            "--service",
            "akosha",
            "--json",
            "--min-score",
            "0",
        ],
        env=akosha_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def test_token_key_and_the_packaged_model_pass(tmp_path: Path) -> None:
    checks = _readiness(tmp_path, AKOSHA_API_TOKEN=TOKEN, AKOSHA_ENCRYPTION_KEY=generate_key())
    assert {
        name: checks[name]["status"] for name in ("ingest_token", "encryption_key", "embedding_model")
    } == {
        "ingest_token": "pass",
        "encryption_key": "pass",
        "embedding_model": "pass",
    }
    assert "all-MiniLM-L6-v2" in checks["embedding_model"]["reason"]


def test_an_unknown_model_fails_naming_the_known_ones(tmp_path: Path) -> None:
    check = _readiness(tmp_path, AKOSHA_API_TOKEN=TOKEN, EMBEDDING_MODEL="gpt-huge")["embedding_model"]
    assert check["status"] == "fail"
    assert "gpt-huge" in check["reason"]
    assert "all-minilm-l6-v2" in check["fix"]
