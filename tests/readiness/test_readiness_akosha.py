"""`mahavishnu readiness --service akosha` checks what Akosha needs beyond the platform: the
token senders push with, the key its store is sealed under, the embedding model
`search_all_systems` finds by meaning with, and the search index against the store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mahavishnu.akosha.cold_tier import ColdTier
from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.keys import key_ring
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.akosha.vector_store import VectorStore
from mahavishnu.platform.crypto import generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from mahavishnu.platform.search.embeddings import MODELS
from tests.akosha.records import parsed, upsert
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


async def _store_with_vectors(data: Path, key: str) -> None:
    """Akosha's store in `data` as the server keeps it: three records, two of them with their
    vector, one cold segment."""
    settings = AkoshaSettings(data_dir=data, encryption_key=key)  # type: ignore[arg-type]
    db = Database.from_settings(settings, create=True)
    await db.ensure_schema(upgrade=True)
    ring = key_ring(settings)
    try:
        inbox = Inbox(db, ring, IngestMetrics(Metrics(prefix="t")), max_records=10)
        await inbox.take("box", parsed(upsert("a", 1), upsert("b", 1), upsert("c", 1)))
        model_id = MODELS[settings.embedding_model].model_id
        store = VectorStore(db, ring, model_id=model_id, dimensions=4)
        unit = np.array([1, 0, 0, 0], dtype=np.float32)
        await store.save([("box/a", 1, unit), ("box/b", 1, unit)])
        cold = ColdTier(settings.effective_cold_dir, ring, model_id=model_id, dimensions=4)
        cold.write([("box/a", 1, unit)])
    finally:
        await db.dispose()


def test_the_search_index_is_checked_against_the_store(tmp_path: Path) -> None:
    key = generate_key()
    asyncio.run(_store_with_vectors(tmp_path, key))
    env = {"AKOSHA_API_TOKEN": TOKEN, "AKOSHA_ENCRYPTION_KEY": key}
    check = _readiness(tmp_path, **env)["search_index"]
    assert check["status"] == "pass", check
    assert "2 records have their vector, 1 cold segment(s) open; 1 of 3 records wait" in check["reason"]

    (segment,) = (tmp_path / "cold").glob("*.parquet.sealed")
    segment.write_bytes(segment.read_bytes()[:-10])
    check = _readiness(tmp_path, **env)["search_index"]
    assert check["status"] == "warn"
    assert "1 of 1 cold segment" in check["reason"]

    with sqlite3.connect(tmp_path / "akosha.db") as db:  # a tombstone that left its vector behind
        db.execute("UPDATE akosha_records SET state = 'tombstoned', sealed = NULL WHERE memory_id = 'b'")
    check = _readiness(tmp_path, **env)["search_index"]
    assert check["status"] == "fail"
    assert "1 stored vector(s) outlived their deleted records" in check["reason"]
