"""`mahavishnu memories …` run for real (a subprocess) on a store that Session-Buddy's own code
filled: search, stats, key rotation, audit verification, and clean errors."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.search.embeddings import load_embedder
from mahavishnu.session_buddy.meaning import Meaning
from mahavishnu.session_buddy.memories import Limits, Memories, NewMemory
from mahavishnu.session_buddy.settings import SessionBuddySettings
from mahavishnu.session_buddy.vault import open_vault
from tests.support.session_buddy import session_buddy_env

KEY = generate_key()
FACTS = [
    NewMemory("The nightly billing export runs at 02:30 UTC because the warehouse locks tables earlier."),
    NewMemory("Login test fails with E7781 in tests/api/test_login.py when the clock skews.", kind="fix"),
    NewMemory("Prefer tabs over spaces in shell scripts.", kind="preference", tags=["style"]),
]


def memories_cli(data: Path, *args: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    env = session_buddy_env(data, SESSION_ENCRYPTION_KEY=key)
    return subprocess.run(
        [sys.executable, "-m", "mahavishnu", "memories", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose database holds FACTS for tenant acme (stored as the server would)."""
    folder = tmp_path_factory.mktemp("memories-cli")

    async def fill() -> None:
        settings = SessionBuddySettings(data_dir=folder)
        db = Database.from_settings(settings, create=True)
        await db.ensure_schema(upgrade=True)
        vault = await open_vault(db, KeyRing.parse(KEY))
        acme = Memories(db, vault, Limits(2000, 8), tenant="acme", author="ann")
        for fact in FACTS:
            await acme.store(fact)
        meaning = Meaning(db, load_embedder(settings.embedding_model))  # as the server's workers do
        await meaning.rebuild(vault)
        while await meaning.embed_pending(vault):
            pass
        await db.dispose()

    asyncio.run(fill())
    return folder


def test_keygen_prints_a_fresh_usable_key() -> None:
    keys = [memories_cli(Path("/nonexistent"), "keygen").stdout.strip() for _ in range(2)]
    assert keys[0] != keys[1]
    assert KeyRing.parse(keys[0]).key_ids


def test_search_and_stats_see_one_tenant(data: Path) -> None:
    found = memories_cli(data, "search", "E7781", "--tenant", "acme", "--mode", "keyword", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert [h["memory"]["kind"] for h in hits] == ["fix"]
    table = memories_cli(data, "search", "E7781", "--tenant", "acme", "--mode", "keyword")
    assert "test_login.py" in table.stdout
    other = memories_cli(data, "search", "E7781", "--tenant", "globex", "--mode", "keyword", "--json")
    assert json.loads(other.stdout)["hits"] == []
    counted = json.loads(memories_cli(data, "stats", "--tenant", "acme", "--json").stdout)
    assert counted["by_kind"] == {"note": 1, "fix": 1, "preference": 1}
    assert json.loads(memories_cli(data, "stats", "--tenant", "globex", "--json").stdout)["total"] == 0


def test_search_by_meaning_loads_the_model(data: Path) -> None:
    question = ("search", "overnight invoicing job schedule", "--tenant", "acme", "--json")
    by_words = memories_cli(data, *question, "--mode", "keyword")
    assert json.loads(by_words.stdout)["hits"] == []  # no word in common with the answer
    by_meaning = memories_cli(data, *question, "--mode", "semantic")
    assert by_meaning.returncode == 0, by_meaning.stderr
    assert json.loads(by_meaning.stdout)["hits"][0]["memory"]["content"].startswith("The nightly billing")


def test_audit_verify_finds_an_edited_entry(data: Path, tmp_path: Path) -> None:
    intact = memories_cli(data, "audit", "verify", "--json")
    assert intact.returncode == 0, intact.stderr
    assert json.loads(intact.stdout)["intact"] is True
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "session-buddy.db").write_bytes((data / "session-buddy.db").read_bytes())
    with sqlite3.connect(copy / "session-buddy.db") as conn:
        conn.execute("UPDATE session_buddy_audit SET actor = 'mallory' WHERE seq = 2")
    broken = memories_cli(copy, "audit", "verify")
    assert broken.returncode == 1
    assert "broken at entry 2" in broken.stdout


def test_rotate_key_then_the_old_key_can_go(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "session-buddy.db").write_bytes((data / "session-buddy.db").read_bytes())
    new = generate_key()
    before = memories_cli(copy, "stats", "--tenant", "acme", "--json", key=new)
    assert before.returncode != 0  # the new key alone opens nothing yet
    rotated = memories_cli(copy, "rotate-key", "--json", key=f"{new},{KEY}")
    assert rotated.returncode == 0, rotated.stderr
    answer = json.loads(rotated.stdout)
    assert (answer["remaining"], answer["rotated"] >= len(FACTS)) == (0, True)
    after = memories_cli(copy, "search", "E7781", "--tenant", "acme", "--mode", "keyword", "--json", key=new)
    assert after.returncode == 0, after.stderr
    assert len(json.loads(after.stdout)["hits"]) == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("search", "x", "--tenant", "acme", "--mode", "fuzzy"), 2, "mode: one of"),
        (("search", "x"), 2, "--tenant"),
        (("stats", "--tenant", "acme"), 2, "no database"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, data: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    where = tmp_path if "no database" in message else data
    result = memories_cli(where, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_export_then_import_into_another_tenant(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "session-buddy.db").write_bytes((data / "session-buddy.db").read_bytes())
    exported = tmp_path / "acme.jsonl"
    made = memories_cli(copy, "export", "--tenant", "acme", "--out", str(exported))
    assert made.returncode == 0, made.stderr
    assert f"exported {len(FACTS)} memories" in made.stdout
    assert exported.stat().st_mode & 0o077 == 0  # readable by its owner only
    again = memories_cli(copy, "export", "--tenant", "acme", "--out", str(exported))
    assert again.returncode == 2
    assert "never overwrites" in again.stderr

    imported = memories_cli(copy, "import", str(exported), "--tenant", "initech", "--json")
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert (report["records"], report["created"], report["vectors"]) == (3, 3, 3)
    by_meaning = memories_cli(copy, "search", "overnight invoicing job", "--tenant", "initech", "--json")
    assert json.loads(by_meaning.stdout)["hits"][0]["memory"]["content"].startswith("The nightly billing")
    twice = json.loads(memories_cli(copy, "import", str(exported), "--tenant", "initech", "--json").stdout)
    assert (twice["created"], twice["skipped"]) == (0, 3)

    lines = exported.read_text().splitlines()
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join([lines[0].replace("02:30", "04:30"), *lines[1:]]) + "\n")
    refused = memories_cli(copy, "import", str(tampered), "--tenant", "hooli")
    assert refused.returncode == 2
    assert "line 1" in refused.stderr
    assert json.loads(memories_cli(copy, "stats", "--tenant", "hooli", "--json").stdout)["total"] == 0
