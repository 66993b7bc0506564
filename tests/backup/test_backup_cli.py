"""`mahavishnu backup` as a person uses it, through the real command: short IDs that fit 80
columns and are taken back as any unique prefix, `show`, and a restore prompt answered `n`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mahavishnu.ops.backup.manager import BackupManager
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.db import Database

ROOT = Path(__file__).resolve().parents[2]
HEX_ID = re.compile(r"^\s*([0-9a-f]{8,})\s")


class BackupCli:
    def __init__(self, root: Path) -> None:
        inherited = ("MAHAVISHNU_", "POSTGRES_URL", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "COLUMNS")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
        self.env.update(
            {
                "MAHAVISHNU_CONFIG": str(root / "absent.yaml"),
                "MAHAVISHNU_DATA_DIR": str(root / "var"),
                "MAHAVISHNU_REPOS_FILE": str(root / "repos.yaml"),
                "NO_COLOR": "1",
            }
        )
        self.root = root

    def __call__(
        self, *args: str, stdin: str | None = None, columns: int = 80
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mahavishnu", *args],
            cwd=self.root,
            env={**self.env, "COLUMNS": str(columns)},
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def backups(self) -> list[dict[str, Any]]:
        """What the library lists (in-process: quicker than another command)."""
        return asyncio.run(_with_manager(self.root, lambda m: m.backups()))


async def _with_manager(root: Path, action: Callable[[BackupManager], Awaitable[Any]]) -> Any:
    settings = MahavishnuSettings(data_dir=root / "var", repos_file=root / "repos.yaml")
    db = Database.from_settings(settings, create=True)
    try:
        await db.ensure_schema(upgrade=True)
        result = await action(BackupManager(settings, db))
        return [b.model_dump(mode="json") for b in result] if isinstance(result, list) else result
    finally:
        await db.dispose()


async def _two_backups_the_newer_verified(manager: BackupManager) -> None:
    await manager.create()
    await manager.create()
    await manager.verify("latest")


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> BackupCli:
    """A migrated database with two backups, the newer one verified (made in-process)."""
    cli = BackupCli(tmp_path_factory.mktemp("backup-cli"))
    (cli.root / "repos.yaml").write_text("repos: []\n")
    asyncio.run(_with_manager(cli.root, _two_backups_the_newer_verified))
    return cli


def table_ids(output: str) -> list[str]:
    return [m.group(1) for line in output.splitlines() if (m := HEX_ID.match(line))]


def test_the_list_fits_80_columns_with_whole_ids_and_status_words(cli: BackupCli) -> None:
    done = cli.ok("backup", "list")
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    backups = cli.backups()
    ids = table_ids(done.stdout)
    assert len(ids) == 2
    assert [b["id"][: len(i)] for b, i in zip(backups, ids, strict=True)] == ids
    assert "…" not in done.stdout
    assert re.search(rf"^\s*{ids[0]}\s.*\bpassed\b", done.stdout, re.MULTILINE), done.stdout
    assert re.search(rf"^\s*{ids[1]}\s.*\bnever\b", done.stdout, re.MULTILINE), done.stdout
    wide = cli("backup", "list", columns=200).stdout
    assert backups[0]["name"] in wide, "a wide terminal shows the archive names too"


def test_any_unique_prefix_of_an_id_or_a_name_is_taken(cli: BackupCli) -> None:
    newest, oldest = cli.backups()
    shown = cli.ok("backup", "show", oldest["id"][:8], "--json")
    assert json.loads(shown.stdout)["name"] == oldest["name"]
    verified = cli.ok("backup", "verify", oldest["id"][:6].upper(), "--json")
    assert json.loads(verified.stdout)["name"] == oldest["name"]
    assert cli.backups()[1]["verified"] is True
    assert newest["verified"] is True


def test_an_ambiguous_prefix_is_a_clear_error(cli: BackupCli) -> None:
    done = cli("backup", "verify", "mahavishnu-2")
    assert done.returncode == 2
    assert "is ambiguous: it matches 2 backups" in done.stderr
    assert "Traceback" not in done.stderr
    for backup in cli.backups():
        assert backup["name"] in done.stderr


@pytest.mark.parametrize(
    ("query", "message"),
    [("ffffffffffff", "no backup of mahavishnu matches"), ("../etc/passwd", "is not a backup")],
)
def test_no_match_and_nonsense_are_refused(cli: BackupCli, query: str, message: str) -> None:
    done = cli("backup", "show", query)
    assert done.returncode == 2
    assert message in done.stderr


def test_answering_n_at_the_restore_prompt_cancels(cli: BackupCli) -> None:
    before = cli.backups()
    done = cli("backup", "restore", before[1]["id"][:8], stdin="n\n")
    assert done.returncode == 1
    assert f"with {before[1]['name']}" in done.stdout, "the prompt names the archive, not the prefix"
    assert "restore cancelled: nothing was changed" in done.stderr
    assert cli.backups() == before, "no safety backup: nothing ran"


def test_no_answer_at_all_cancels_with_a_hint(cli: BackupCli) -> None:
    before = cli.backups()
    done = cli("backup", "restore", "latest", stdin="")
    assert done.returncode == 1
    assert "restore cancelled (no answer; pass --yes" in done.stderr
    assert "Aborted" not in done.stdout + done.stderr
    assert cli.backups() == before
