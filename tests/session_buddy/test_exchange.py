"""Export and import on SQLite and PostgreSQL: a round trip into another tenant or a fresh
database gives back the same records, a second import changes nothing, every kind of tampering
and bad input is refused with nothing written, tenants never meet, and every act is audited."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mahavishnu.platform import InvalidArgumentError
from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.search.embeddings import HashingEmbedder
from mahavishnu.session_buddy import audit, exchange, exchange_format
from mahavishnu.session_buddy.exchange import Exchange, ImportRefused, export_all
from mahavishnu.session_buddy.meaning import Meaning
from mahavishnu.session_buddy.memories import Filters, Limits, Memories, NewMemory
from mahavishnu.session_buddy.models import (
    Memory,
    MemoryLabel,
    MemoryTerm,
    MemoryVector,
    MemoryVersion,
    OutboxEntry,
)
from mahavishnu.session_buddy.settings import MIGRATIONS
from mahavishnu.session_buddy.vault import Vault, open_vault
from mahavishnu.session_buddy.vectors import pending
from tests.session_buddy.conftest import LIMITS

TABLES = (Memory, MemoryVersion, MemoryTerm, MemoryLabel, MemoryVector, OutboxEntry)
CHAIN_START = hashlib.sha256(b"session-buddy memory export").digest()
Change = Callable[[list[str]], list[str]]


@pytest.fixture
async def meaning(sb_database: Database, vault: Vault) -> Meaning:
    found = Meaning(sb_database, HashingEmbedder(256))
    await found.rebuild(vault)
    return found


def memories_of(db: Database, vault: Vault, meaning: Meaning | None, tenant: str) -> Memories:
    return Memories(db, vault, LIMITS, tenant=tenant, author=f"{tenant}-writer", meaning=meaning)


def exchange_of(
    db: Database, vault: Vault, meaning: Meaning | None, tenant: str, limits: Limits = LIMITS
) -> Exchange:
    return Exchange(db, vault, limits, tenant=tenant, author=f"{tenant}-importer", meaning=meaning)


async def embed_all(meaning: Meaning, vault: Vault) -> None:
    while await meaning.embed_pending(vault):
        pass


async def fill(db: Database, vault: Vault, meaning: Meaning) -> dict[str, str]:
    """acme's memories: one with three versions, tags, project, session and expiry; two more,
    one of them updated after it was embedded (so its vector is stale); one deleted and one
    expired, neither of which is exported."""
    acme = memories_of(db, vault, meaning, "acme")
    later = datetime.now(UTC) + timedelta(days=30)
    deploys = await acme.store(
        NewMemory(
            "deploys go through the staging cluster first",
            kind="decision",
            tags=["ops", "deploy"],
            project="api",
            session_id="s-1",
            importance=0.9,
            expires_at=later,
        )
    )
    await acme.update(
        deploys.memory.id, {"content": "deploys go through staging, then canary", "tags": ["ops"]}
    )
    await acme.update(deploys.memory.id, {"importance": 0.7})
    flaky = await acme.store(NewMemory("the flaky test is test_login_timeout", kind="fix", tags=["ci"]))
    ruff = await acme.store(NewMemory("prefer ruff over flake8", kind="preference"))
    gone = await acme.store(NewMemory("a deleted thought"))
    await acme.store(NewMemory("an expired thought", expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    await embed_all(meaning, vault)
    await acme.update(ruff.memory.id, {"content": "prefer ruff over flake8 and isort"})
    await acme.delete(gone.memory.id)
    return {"deploys": deploys.memory.id, "flaky": flaky.memory.id, "ruff": ruff.memory.id}


async def export_lines(store: Exchange) -> list[str]:
    lines: list[str] = []
    await export_all(store, lines.append)
    return lines


def records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines[:-1]]


def trailer(lines: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(lines[-1])
    assert found["type"] == "trailer"
    return found


def without_ids(lines: list[str]) -> list[dict[str, Any]]:
    """The records as another tenant of the same database holds them: ids (and so checksums)
    are the database's to give; everything else must be the same."""
    found = [{k: v for k, v in r.items() if k not in ("id", "checksum")} for r in records(lines)]
    return sorted(found, key=lambda r: str(r["versions"][0]["content"]))


def checksum(record: dict[str, Any]) -> str:
    """What anyone can recompute: sha256 of the record's canonical JSON."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def rechecked(record: dict[str, Any]) -> str:
    return json.dumps({**record, "checksum": checksum(record)}, ensure_ascii=False)


def redigested(lines: list[str]) -> list[str]:
    """`lines` with every checksum, the count and the digest recomputed (not the signature)."""
    recs = [json.loads(line) for line in lines[:-1]]
    chain = CHAIN_START
    for record in recs:
        record["checksum"] = checksum(record)
        chain = hashlib.sha256(chain + bytes.fromhex(record["checksum"])).digest()
    end = {**trailer(lines), "count": len(recs), "digest": chain.hex()}
    return [json.dumps(r, ensure_ascii=False) for r in recs] + [json.dumps(end)]


def signed(lines: list[str], vault: Vault) -> list[str]:
    """`redigested`, then signed as the deployment of `vault` signs: only its key holder can."""
    out = redigested(lines)
    end = json.loads(out[-1])
    token = vault.seal_bytes(f"memory-export-v{exchange_format.FORMAT}", "", end["digest"], end["count"], b"")
    end["signature"] = base64.urlsafe_b64encode(token).decode()
    return [*out[:-1], json.dumps(end)]


async def rows(db: Database) -> dict[str, int]:
    """Every memory row, counted by table and tenant."""
    found: dict[str, int] = {}
    async with db.session() as session:
        for table in TABLES:
            counted = await session.execute(select(table.tenant, func.count()).group_by(table.tenant))
            for tenant, count in counted:
                found[f"{table.__tablename__}:{tenant}"] = int(count)
    return found


@pytest.fixture
async def acme_export(sb_database: Database, vault: Vault, meaning: Meaning) -> list[str]:
    await fill(sb_database, vault, meaning)
    return await export_lines(exchange_of(sb_database, vault, meaning, "acme"))


@pytest.fixture
async def fresh(tmp_path: Path, ring: KeyRing) -> AsyncIterator[tuple[Database, Vault, Meaning]]:
    """Another database of the same deployment (the same key ring): a restore target."""
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}", migrations=MIGRATIONS)
    await db.ensure_schema(upgrade=True)
    vault = await open_vault(db, ring)
    meaning = Meaning(db, HashingEmbedder(256))
    await meaning.rebuild(vault)
    yield db, vault, meaning
    await db.dispose()


# --- round trips ----------------------------------------------------------------------------


async def test_an_export_holds_every_live_memory_with_its_history_and_embedding(
    sb_database: Database, vault: Vault, meaning: Meaning
) -> None:
    ids = await fill(sb_database, vault, meaning)
    lines = await export_lines(exchange_of(sb_database, vault, meaning, "acme"))
    by_id = {r["id"]: r for r in records(lines)}
    assert set(by_id) == set(ids.values())  # neither the deleted nor the expired one
    assert trailer(lines)["count"] == 3
    deploys = by_id[ids["deploys"]]
    assert [v["version"] for v in deploys["versions"]] == [1, 2, 3]
    assert [v["content"] for v in deploys["versions"]] == [
        "deploys go through the staging cluster first",
        "deploys go through staging, then canary",
        "deploys go through staging, then canary",
    ]
    assert [v["tags"] for v in deploys["versions"]] == [["deploy", "ops"], ["ops"], ["ops"]]
    assert [v["importance"] for v in deploys["versions"]] == [0.9, 0.9, 0.7]
    assert {v["author"] for v in deploys["versions"]} == {"acme-writer"}
    assert (deploys["versions"][-1]["project"], deploys["versions"][-1]["session_id"]) == ("api", "s-1")
    assert deploys["expires_at"] is not None
    assert deploys["embedding"]["model_id"] == "hashing-test-only/256"
    vector = base64.b64decode(deploys["embedding"]["vector"])
    assert len(vector) == 256 * 4
    assert by_id[ids["ruff"]]["embedding"] is None  # its vector is of the version before
    assert all(r["checksum"] == checksum(r) for r in records(lines))


async def test_a_round_trip_into_another_tenant_is_identical(
    sb_database: Database, vault: Vault, meaning: Meaning, acme_export: list[str]
) -> None:
    report = await exchange_of(sb_database, vault, meaning, "globex").import_lines(acme_export)
    assert (report.records, report.created, report.skipped, report.vectors) == (3, 3, 0, 2)
    # acme holds the exported ids, so globex's copies get their own, and the report says which
    assert {i.outcome for i in report.items} == {"renamed"}
    renamed = {i.exported_id: i.id for i in report.items}
    assert not set(renamed.values()) & {r["id"] for r in records(acme_export)}

    again = await export_lines(exchange_of(sb_database, vault, meaning, "globex"))
    assert without_ids(again) == without_ids(acme_export)
    assert (trailer(again)["count"], len(again)) == (3, len(acme_export))

    acme, globex = (
        memories_of(sb_database, vault, meaning, "acme"),
        memories_of(sb_database, vault, meaning, "globex"),
    )
    for exported_id, new_id in renamed.items():
        mine, theirs = await acme.history(exported_id), await globex.history(new_id)
        assert theirs.versions == mine.versions  # contents, kinds, tags, authors and times
        assert (await globex.get(new_id)).model_dump(exclude={"id"}) == (
            await acme.get(exported_id)
        ).model_dump(exclude={"id"})
    # found by meaning at once, with the exported vectors (not re-embedded) ...
    hits = await globex.search("deploys staging canary", Filters(), mode="semantic")
    assert hits.hits[0].memory.content == "deploys go through staging, then canary"
    stale = await pending(sb_database, meaning.index.model_id, limit=10)
    assert [(p.tenant, p.version) for p in stale] == [("acme", 2), ("globex", 2)]  # ... but the stale one
    # ... and by keyword and filters: the blind index rows are a store's, and so is the outbox
    counted = await rows(sb_database)
    assert counted["session_buddy_outbox:globex"] == counted["session_buddy_memory_versions:globex"] == 6
    assert (await globex.search_keyword("test_login_timeout", Filters(tags=["ci"]))).total == 1
    assert (await globex.listing(Filters(project="api", session_id="s-1"))).total == 1


async def test_a_round_trip_into_a_fresh_database_keeps_everything(
    sb_database: Database,
    vault: Vault,
    meaning: Meaning,
    acme_export: list[str],
    fresh: tuple[Database, Vault, Meaning],
) -> None:
    db, fresh_vault, fresh_meaning = fresh
    report = await exchange_of(db, fresh_vault, fresh_meaning, "acme").import_lines(acme_export)
    assert (report.created, report.vectors, report.items) == (3, 2, [])  # every id kept
    again = await export_lines(exchange_of(db, fresh_vault, fresh_meaning, "acme"))
    assert again[:-1] == acme_export[:-1]  # every record, byte for byte
    ours, theirs = trailer(again), trailer(acme_export)
    assert (ours["count"], ours["digest"]) == (theirs["count"], theirs["digest"])
    assert ours["signature"] != theirs["signature"]  # a signature is made anew each time
    # into another tenant of the fresh database too: its ids are free there
    other = await exchange_of(db, fresh_vault, fresh_meaning, "initech").import_lines(acme_export)
    assert {i.outcome for i in other.items} == {"renamed"}


async def test_an_export_paged_small_imports_whole(
    sb_database: Database, vault: Vault, meaning: Meaning, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(sb_database, vault, meaning)
    store = exchange_of(sb_database, vault, meaning, "acme")
    whole = await export_lines(store)
    monkeypatch.setattr(exchange, "_PAGE_CHARS", 1)  # one memory per page, whatever the limit
    page = await store.export(None, 200)
    assert (page.records, len(page.lines)) == (1, 1)
    paged = await export_lines(store)
    assert paged[:-1] == whole[:-1]
    first = await store.export(None, 2)
    rest = await store.export(first.next_cursor, 2)
    assert json.loads(rest.lines[0])["id"] > json.loads(first.lines[-1])["id"]
    report = await exchange_of(sb_database, vault, meaning, "globex").import_lines(paged)
    assert report.created == 3


async def test_importing_twice_changes_nothing(
    sb_database: Database,
    vault: Vault,
    meaning: Meaning,
    acme_export: list[str],
    fresh: tuple[Database, Vault, Meaning],
) -> None:
    globex = exchange_of(sb_database, vault, meaning, "globex")
    await globex.import_lines(acme_export)
    before = await rows(sb_database)
    again = await globex.import_lines(acme_export)
    assert (again.created, again.skipped) == (0, 3)
    assert {i.outcome for i in again.items} == {"same_content"}
    own = await exchange_of(sb_database, vault, meaning, "acme").import_lines(acme_export)
    assert {i.outcome for i in own.items} == {"present"}
    assert [i.id for i in own.items] == [i.exported_id for i in own.items]
    assert await rows(sb_database) == before
    db, fresh_vault, fresh_meaning = fresh
    target = exchange_of(db, fresh_vault, fresh_meaning, "acme")
    await target.import_lines(acme_export)
    restored = await rows(db)
    assert (await target.import_lines(acme_export)).created == 0
    assert await rows(db) == restored


async def test_a_memory_changed_or_deleted_here_since_the_export(
    sb_database: Database, vault: Vault, meaning: Meaning
) -> None:
    ids = await fill(sb_database, vault, meaning)
    acme = memories_of(sb_database, vault, meaning, "acme")
    lines = await export_lines(exchange_of(sb_database, vault, meaning, "acme"))
    await acme.update(ids["flaky"], {"content": "the flaky test was fixed"})
    await acme.delete(ids["ruff"])
    report = await exchange_of(sb_database, vault, meaning, "acme").import_lines(lines)
    outcomes = {i.exported_id: (i.outcome, i.id) for i in report.items}
    assert outcomes[ids["flaky"]] == ("other_version", ids["flaky"])  # a newer version stays
    assert (await acme.get(ids["flaky"])).content == "the flaky test was fixed"
    assert outcomes[ids["deploys"]] == ("present", ids["deploys"])
    outcome, back = outcomes[ids["ruff"]]  # the deleted one comes back, under a new id
    assert outcome == "renamed"
    assert back != ids["ruff"]
    assert [v.content for v in (await acme.history(back)).versions] == [
        "prefer ruff over flake8",
        "prefer ruff over flake8 and isort",
    ]


async def test_vectors_of_another_model_are_left_to_the_embedder(
    sb_database: Database, vault: Vault, acme_export: list[str]
) -> None:
    other = Meaning(sb_database, HashingEmbedder(128))
    await other.rebuild(vault)
    report = await exchange_of(sb_database, vault, other, "globex").import_lines(acme_export)
    assert (report.created, report.vectors) == (3, 0)
    async with sb_database.session() as session:
        assert await session.scalar(select(func.count()).where(MemoryVector.tenant == "globex")) == 0
    await embed_all(other, vault)
    async with sb_database.session() as session:
        models = await session.scalars(select(MemoryVector.model_id).where(MemoryVector.tenant == "globex"))
        assert list(models) == ["hashing-test-only/128"] * 3


async def test_an_expired_memory_is_not_brought_back(
    sb_database: Database, vault: Vault, meaning: Meaning, acme_export: list[str]
) -> None:
    recs = records(acme_export)
    gone = datetime.now(UTC) - timedelta(minutes=1)
    recs[0]["expires_at"] = gone.isoformat().replace("+00:00", "Z")  # as the format writes times
    lines = signed([*(json.dumps(r) for r in recs), acme_export[-1]], vault)
    report = await exchange_of(sb_database, vault, meaning, "globex").import_lines(lines)
    assert (report.created, [i.outcome for i in report.items if i.outcome != "renamed"]) == (2, ["expired"])


# --- tampering ------------------------------------------------------------------------------


def _edit(lines: list[str], *, recompute: bool) -> list[str]:
    record = json.loads(lines[0])
    record["versions"][-1]["content"] = "deploys go straight to production"
    edited = rechecked(record) if recompute else json.dumps(record)
    return [edited, *lines[1:]]


TAMPERING: dict[str, tuple[Change, str, str]] = {
    "edited, old checksum": (lambda ls: _edit(ls, recompute=False), "checksum", r"line 1: the checksum"),
    "edited, checksum recomputed": (lambda ls: _edit(ls, recompute=True), "digest", r"line 4: .*digest"),
    "edited, digest recomputed": (
        lambda ls: redigested(_edit(ls, recompute=True)),
        "signature",
        r"line 4: the signature does not verify",
    ),
    "a record dropped": (lambda ls: [ls[0], *ls[2:]], "count", r"line 3: the trailer counts 3 .* holds 2"),
    "a record dropped, recounted": (lambda ls: redigested([ls[0], *ls[2:]]), "signature", r"does not verify"),
    "reordered": (lambda ls: [ls[1], ls[0], *ls[2:]], "digest", r"reordered"),
    "trailer removed": (lambda ls: ls[:-1], "truncated", r"^the file ends without its trailer"),
    "trailer cut short": (lambda ls: [*ls[:-1], ls[-1][:40]], "format", r"line 4: not JSON"),
    "a line appended": (lambda ls: [*ls, ls[0]], "after_trailer", r"line 5: a line after the trailer"),
    "signature replaced": (
        lambda ls: [*ls[:-1], json.dumps({**trailer(ls), "signature": "AAAA"})],
        "signature",
        r"line 4: the signature",
    ),
}


@pytest.mark.parametrize("tamper", list(TAMPERING))
async def test_a_tampered_export_is_refused_and_nothing_is_written(
    sb_database: Database, vault: Vault, meaning: Meaning, acme_export: list[str], tamper: str
) -> None:
    change, check, message = TAMPERING[tamper]
    before = await rows(sb_database)
    with pytest.raises(ImportRefused, match=message) as refused:
        await exchange_of(sb_database, vault, meaning, "globex").import_lines(change(acme_export))
    assert refused.value.check == check
    assert await rows(sb_database) == before


async def test_a_file_from_another_deployment_is_refused_unless_trusted(
    sb_database: Database, vault: Vault, meaning: Meaning, tmp_path: Path
) -> None:
    elsewhere = Database(f"sqlite:///{tmp_path / 'elsewhere.db'}", migrations=MIGRATIONS)
    await elsewhere.ensure_schema(upgrade=True)
    their_vault = await open_vault(elsewhere, KeyRing.parse(generate_key()))
    await memories_of(elsewhere, their_vault, None, "acme").store(NewMemory("a memory from elsewhere"))
    lines = await export_lines(exchange_of(elsewhere, their_vault, None, "acme"))
    await elsewhere.dispose()
    store = exchange_of(sb_database, vault, meaning, "acme")
    with pytest.raises(ImportRefused, match=r"line 2: signed by another deployment .*key id") as refused:
        await store.import_lines(lines)
    assert refused.value.check == "foreign_signature"
    assert await rows(sb_database) == {}
    report = await store.import_lines(lines, trust_foreign_signature=True)
    assert (report.created, report.foreign_signature) == (1, True)
    # trusting another deployment is not trusting an altered file
    with pytest.raises(ImportRefused, match="line 1: the checksum"):
        await store.import_lines(_edit(lines, recompute=False), trust_foreign_signature=True)
    entries = (await audit.page(sb_database, "acme", limit=10, cursor=None)).entries
    done = [e.detail for e in entries if e.action == "memory.import.done"]
    assert done == [{"records": 1, "created": 1, "vectors": 0, "foreign_signature": True}]


async def test_an_export_signed_before_a_key_rotation_still_imports(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    db = Database(f"sqlite:///{tmp_path / 'rotating.db'}", migrations=MIGRATIONS)
    await db.ensure_schema(upgrade=True)
    try:
        before = await open_vault(db, KeyRing.parse(old))
        await memories_of(db, before, None, "acme").store(NewMemory("kept across the rotation"))
        lines = await export_lines(exchange_of(db, before, None, "acme"))
        after = await open_vault(db, KeyRing.parse(f"{new},{old}"))
        report = await exchange_of(db, after, None, "globex").import_lines(lines)
        assert (report.created, report.foreign_signature) == (1, False)
    finally:
        await db.dispose()


# --- bad input ------------------------------------------------------------------------------


def _record_change(change: Callable[[dict[str, Any]], object]) -> Change:
    """A change to the first record, with its checksum recomputed (so the content check is
    what refuses it, not the checksum)."""

    def apply(lines: list[str]) -> list[str]:
        record = json.loads(lines[0])
        change(record)
        return [rechecked(record), *lines[1:]]

    return apply


def _set(path: tuple[str | int, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        target: Any = record
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


BAD: dict[str, tuple[Change, str]] = {
    "not JSON": (lambda ls: ["{not json", *ls[1:]], r"^line 1: not JSON$"),
    "not an object": (lambda ls: ["[1, 2]", *ls[1:]], r"^line 1: not a memory or trailer line"),
    "no type": (lambda ls: ['{"id": "x"}', *ls[1:]], r"^line 1: not a memory or trailer line"),
    "a huge line": (
        lambda ls: ["x" * (exchange_format.MAX_LINE_BYTES + 1), *ls[1:]],
        rf"^line 1: over {exchange_format.MAX_LINE_BYTES} bytes$",
    ),
    "importance as text": (
        _record_change(_set(("versions", 0, "importance"), "0.5")),
        r"^line 1: versions\[0\]\.importance: expected a number",
    ),
    "version as float": (
        _record_change(_set(("versions", 0, "version"), 1.0)),
        r"^line 1: versions\[0\]\.version: expected an integer",
    ),
    "a time without zone": (
        _record_change(_set(("created_at",), "2026-01-01T00:00:00")),
        r"^line 1: created_at: .*time ?zone",
    ),
    "an unknown field": (_record_change(_set(("colour",), "red")), r"^line 1: colour: not a known"),
    "a missing field": (
        _record_change(lambda r: r.pop("embedding")),
        r"^line 1: embedding: required$",
    ),
    "a trailer count as text": (
        lambda ls: [*ls[:-1], json.dumps({**trailer(ls), "count": "3"})],
        r"^line 4: count: expected an integer",
    ),
    "an unknown kind": (
        _record_change(_set(("versions", 0, "kind"), "rumour")),
        r"^line 1: versions\[0\]\.kind: one of",
    ),
    "versions out of order": (
        _record_change(lambda r: r["versions"].reverse()),
        r"^line 1: versions\[0\]: version 1 expected",
    ),
    "no versions": (_record_change(_set(("versions",), [])), r"^line 1: versions: at least one"),
    "unsorted tags": (
        _record_change(_set(("versions", 0, "tags"), ["ops", "deploy"])),
        r"^line 1: versions\[0\]: not as a store keeps it",
    ),
    "a vector not base64": (
        _record_change(_set(("embedding", "vector"), "not base64!")),
        r"^line 1: embedding\.vector: not base64",
    ),
    "a vector of the wrong size": (
        _record_change(_set(("embedding", "vector"), base64.b64encode(bytes(12)).decode())),
        r"^line 1: embedding\.vector: 3 values, but hashing-test-only/256 makes 256",
    ),
    "a vector of NaN": (
        _record_change(_set(("embedding", "vector"), base64.b64encode(b"\x00\x00\xc0\x7f" * 256).decode())),
        r"^line 1: embedding\.vector: finite numbers only",
    ),
    "an id too long": (_record_change(_set(("id",), "x" * 37)), r"^line 1: id: each value is 1 to 36"),
}


@pytest.mark.parametrize("bad", list(BAD))
async def test_bad_input_is_refused_naming_the_line(
    sb_database: Database, vault: Vault, meaning: Meaning, acme_export: list[str], bad: str
) -> None:
    change, message = BAD[bad]
    before = await rows(sb_database)
    with pytest.raises(InvalidArgumentError, match=message):
        await exchange_of(sb_database, vault, meaning, "globex").import_lines(change(acme_export))
    assert await rows(sb_database) == before


async def test_a_memory_over_this_servers_limits_is_refused(
    sb_database: Database, vault: Vault, meaning: Meaning, acme_export: list[str]
) -> None:
    small = exchange_of(sb_database, vault, meaning, "globex", Limits(max_content_chars=30, max_tags=8))
    with pytest.raises(InvalidArgumentError, match=r"^line 1: versions\[0\]\.content: at most 30 characters"):
        await small.import_lines(acme_export)


async def test_an_import_is_bounded(
    sb_database: Database,
    vault: Vault,
    meaning: Meaning,
    acme_export: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = exchange_of(sb_database, vault, meaning, "globex")
    monkeypatch.setattr(exchange, "MAX_IMPORT_RECORDS", 2)
    with pytest.raises(InvalidArgumentError, match=r"^line 3: more than 2 records in one import"):
        await store.import_lines(acme_export)
    monkeypatch.setattr(exchange, "MAX_IMPORT_BYTES", 100)
    with pytest.raises(InvalidArgumentError, match=r"^line 1: the file is over 100 bytes"):
        await store.import_lines(acme_export)
    assert "globex" not in str(await rows(sb_database))


# --- tenants, cursors, audit --------------------------------------------------------------------


async def test_tenants_never_meet(sb_database: Database, vault: Vault, meaning: Meaning) -> None:
    await fill(sb_database, vault, meaning)
    await memories_of(sb_database, vault, meaning, "globex").store(NewMemory("globex keeps its own plans"))
    acme, globex = (
        exchange_of(sb_database, vault, meaning, "acme"),
        exchange_of(sb_database, vault, meaning, "globex"),
    )
    theirs = await export_lines(globex)
    assert [r["versions"][-1]["content"] for r in records(theirs)] == ["globex keeps its own plans"]
    ours = await export_lines(acme)
    assert "globex" not in "".join(ours)
    acme_rows = {k: v for k, v in (await rows(sb_database)).items() if k.endswith(":acme")}
    await globex.import_lines(ours)
    after = await export_lines(acme)
    assert after[:-1] == ours[:-1]
    assert {k: v for k, v in (await rows(sb_database)).items() if k.endswith(":acme")} == acme_rows
    # a cursor is good for its own tenant only, and cannot be edited
    cursor = (await acme.export(None, 1)).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidArgumentError, match="cursor"):
        await globex.export(cursor, 1)
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    after_id, count, chain, mac = raw["after"].split("~")
    raw["after"] = f"{after_id}~{int(count) + 1}~{chain}~{mac}"
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    with pytest.raises(InvalidArgumentError, match="cursor is not one this server issued"):
        await acme.export(forged, 1)


async def test_every_export_and_import_is_audited(
    sb_database: Database, vault: Vault, meaning: Meaning, acme_export: list[str]
) -> None:
    acme = exchange_of(sb_database, vault, meaning, "acme")
    first = await acme.export(None, 2)
    await acme.export(first.next_cursor, 2)
    globex = exchange_of(sb_database, vault, meaning, "globex")
    report = await globex.import_lines(acme_export)
    with pytest.raises(ImportRefused):
        await globex.import_lines(acme_export[:-1])
    mine = (await audit.page(sb_database, "acme", limit=50, cursor=None)).entries
    exports = [e.detail for e in mine if e.action == "memory.export"]
    assert exports[:2] == [{"returned": 1, "last": True}, {"returned": 2, "last": False}]  # newest first
    theirs = (await audit.page(sb_database, "globex", limit=50, cursor=None)).entries
    assert [e.action for e in theirs] == [
        "memory.import.refused",
        "memory.import.done",
        "memory.import",
        "memory.import",
        "memory.import",
    ]
    assert theirs[0].detail == {"line": None, "check": "truncated"}
    assert theirs[1].detail == {"records": 3, "created": 3, "vectors": 2, "foreign_signature": False}
    assert {e.target for e in theirs[2:]} == {i.id for i in report.items}
    assert {e.actor for e in theirs} == {"globex-importer"}
    assert "deploys" not in str([e.model_dump() for e in mine + theirs])  # ids and counts, never content
    assert (await audit.verify(sb_database, vault)).intact


# --- files --------------------------------------------------------------------------------------


async def test_a_file_round_trip(
    sb_database: Database, vault: Vault, meaning: Meaning, tmp_path: Path, acme_export: list[str]
) -> None:
    path = tmp_path / "acme.jsonl"
    with path.open("w", encoding="utf-8") as out:
        written = await export_all(
            exchange_of(sb_database, vault, meaning, "acme"), lambda s: out.write(s + "\n")
        )
    assert written == 3
    globex = exchange_of(sb_database, vault, meaning, "globex")
    report = await globex.import_file(path)
    assert (report.created, report.vectors) == (3, 2)
    assert without_ids(await export_lines(globex)) == without_ids(acme_export)
    assert (await globex.import_file(path)).created == 0
    path.write_text("\n".join(_edit(acme_export, recompute=True)) + "\n", encoding="utf-8")
    before = await rows(sb_database)
    with pytest.raises(ImportRefused, match="digest"):
        await exchange_of(sb_database, vault, meaning, "initech").import_file(path)
    assert await rows(sb_database) == before
    path.write_bytes(b"\xff\xfe\n")
    with pytest.raises(ImportRefused, match=r"^line 1: not UTF-8"):
        await globex.import_file(path)


async def test_a_file_changed_while_it_is_imported_is_caught(
    sb_database: Database,
    vault: Vault,
    meaning: Meaning,
    tmp_path: Path,
    acme_export: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "acme.jsonl"
    path.write_text("\n".join(acme_export) + "\n", encoding="utf-8")
    monkeypatch.setattr(exchange, "_BATCH", 1)
    write_batch = Exchange._write_batch

    async def then_edit(self: Exchange, batch: list[Any]) -> Any:
        written = await write_batch(self, batch)
        changed = [acme_export[0], *_edit(acme_export[1:], recompute=True)]
        path.write_text("\n".join(changed) + "\n", encoding="utf-8")
        return written

    monkeypatch.setattr(Exchange, "_write_batch", then_edit)
    globex = exchange_of(sb_database, vault, meaning, "globex")
    with pytest.raises(InvalidArgumentError, match="changed while it was imported"):
        await globex.import_file(path)
    assert (await rows(sb_database))["session_buddy_memories:globex"] == 1
