"""What the composition root puts together: services with the ops they get from outside.

Only `mahavishnu.cli` imports this module (an import-linter contract says so): it is where a
service (which imports only the platform) meets ops (which serve every service and import
none). `create_mahavishnu` has the `(settings, metrics) -> Service` shape `run_service` takes;
`mahavishnu_ops` is what `backup` and `readiness` need to know of Mahavishnu beyond the platform.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.ops.backup.attach import attach_backups
from mahavishnu.ops.readiness import FAIL, OK, WARN, Check, ReadinessContext, Status
from mahavishnu.ops.service_ops import ServiceOps
from mahavishnu.orchestrator.manifest import validate_manifest
from mahavishnu.orchestrator.service import create_service
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.app import Service
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.observability import Metrics
from mahavishnu.session_buddy.settings import SessionBuddySettings

__all__ = ["akosha_ops", "create_mahavishnu", "mahavishnu_ops", "session_buddy_ops"]


def create_mahavishnu(settings: MahavishnuSettings, metrics: Metrics) -> Service:
    """Mahavishnu as served: its own tools, plus the admin backup tools and gauges over its database."""
    db = Database.from_settings(settings, create=True)  # serving owns the data: a first start makes it
    service = create_service(settings, metrics, db=db)
    return attach_backups(service, settings, db, metrics, files=_backup_files(settings))


def mahavishnu_ops(settings: MahavishnuSettings) -> ServiceOps:
    """Mahavishnu's part in ops: its manifest goes into every archive and is checked for readiness."""
    return ServiceOps(
        settings=settings,
        backup_files=_backup_files(settings),
        readiness_checks=[("manifest", 6, _manifest_check(settings))],
    )


def _backup_files(settings: MahavishnuSettings) -> dict[str, Path]:
    return {"repos.yaml": settings.repos_file}


def _manifest_check(settings: MahavishnuSettings) -> Check:
    """The repository manifest is valid and every folder it names exists (over `settings`, typed
    as Mahavishnu's: the context's are the platform's)."""

    async def check(_: ReadinessContext) -> tuple[Status, str, str]:
        return await _manifest(settings)

    return check


async def _manifest(settings: MahavishnuSettings) -> tuple[Status, str, str]:
    path = settings.repos_file
    if not path.is_file():
        return FAIL, f"no repository manifest at {path}", "run: mahavishnu repos init ~/Projects"
    manifest, problems = validate_manifest(
        path.read_text(errors="replace"),
        str(path),
        allowed_roots=settings.allowed_roots,
        roles=settings.roles,
    )
    if manifest is None:
        return (
            FAIL,
            f"{len(problems)} problem(s), first: {problems[0]}",
            f"run: mahavishnu repos validate {path}",
        )
    missing = [r.name for r in manifest.repos if not await anyio.Path(r.path).is_dir()]
    if missing:
        return (
            WARN,
            f"{len(missing)} repository folder(s) missing: {', '.join(missing[:5])}",
            "clone them or edit the manifest",
        )
    return OK, f"{len(manifest.repos)} repositories, every path present", ""


def session_buddy_ops(settings: SessionBuddySettings) -> ServiceOps:
    """Session-Buddy's part in ops: its key and its model are checked for readiness (its data is
    sealed in the database, so an archive of the database is all it needs)."""
    return ServiceOps(
        settings=settings,
        readiness_checks=[
            ("encryption_key", 8, _encryption_key_check(settings)),
            ("embedding_model", 4, _embedding_model_check(settings.embedding_model)),
            ("search_index", 4, _search_index_check(settings)),
        ],
    )


def _encryption_key_check(settings: SessionBuddySettings) -> Check:
    async def check(_: ReadinessContext) -> tuple[Status, str, str]:
        from mahavishnu.platform.crypto import KeyRing

        if settings.encryption_key is None:
            status = FAIL if settings.env == "production" else WARN
            return status, "no SESSION_ENCRYPTION_KEY: development keeps a key in the data folder", _KEYGEN
        try:
            ring = KeyRing.parse(settings.encryption_key, setting="SESSION_ENCRYPTION_KEY")
        except ConfigurationError as exc:
            return FAIL, exc.message, _KEYGEN
        older = len(ring.key_ids) - 1
        if older:
            return (
                WARN,
                f"{older} older key(s) kept for rotation",
                "drop them once rotate_encryption_key says 0 remaining",
            )
        return OK, f"one 256-bit key (id {ring.current_key_id})", ""

    return check


_KEYGEN = "set SESSION_ENCRYPTION_KEY to the output of: mahavishnu memories keygen"
_BACKLOG_WARN = 10_000
"""Memories waiting for a vector beyond which readiness warns: search by meaning lags writes."""


def _search_index_check(settings: SessionBuddySettings) -> Check:
    async def check(context: ReadinessContext) -> tuple[Status, str, str]:
        from mahavishnu.platform.search.embeddings import MODELS
        from mahavishnu.session_buddy.consistency import index_report

        model = MODELS.get(settings.embedding_model.strip().lower())
        report = await index_report(context.db, model.model_id if model else settings.embedding_model)
        if report.mismatched:
            return (
                FAIL,
                f"{report.mismatched} of {report.live} memories have keyword index rows that do not "
                "match their content",
                "restore from a verified backup, or re-import an export of the tenant",
            )
        backlog = f"{report.unembedded} of {report.live} memories wait for a vector"
        if report.unembedded > _BACKLOG_WARN:
            return WARN, backlog, "give the workers time, or raise WORKER_COUNT"
        return OK, f"keyword index matches {report.live} memories; {backlog}", ""

    return check


def _embedding_model_check(name: str) -> Check:
    async def check(_: ReadinessContext) -> tuple[Status, str, str]:
        from mahavishnu.platform.search.embeddings import MODELS

        model = MODELS.get(name.strip().lower())
        if model is None:
            return (
                FAIL,
                f"unknown EMBEDDING_MODEL {name!r}",
                f"use one of: {', '.join(MODELS)}",
            )
        try:
            await anyio.to_thread.run_sync(model.onnx.locate)
            await anyio.to_thread.run_sync(model.tokenizer.locate)
        except ConfigurationError as exc:
            return FAIL, exc.message, "reinstall with: python3 dev.py serve (it installs the pinned model)"
        return OK, f"{model.model_id} present and checked", ""

    return check


def akosha_ops(settings: AkoshaSettings) -> ServiceOps:
    """Akosha's part in ops: the token senders push with, the key its store is sealed under, the
    model search by meaning needs and the index's consistency with the store are checked for
    readiness. Its data, vectors included, is sealed in the database and every index tier is
    rebuilt from it (cold segments too, when missing): an archive of the database is all."""
    return ServiceOps(
        settings=settings,
        readiness_checks=[
            ("ingest_token", 8, _akosha_token_check(settings)),
            ("encryption_key", 8, _akosha_key_check(settings)),
            ("embedding_model", 4, _embedding_model_check(settings.embedding_model)),
            ("search_index", 4, _akosha_index_check(settings)),
        ],
    )


_AKOSHA_SENDER_ADVICE = (
    "set AKOSHA_API_TOKEN (Akosha's and every Session-Buddy's) to the output of: "
    "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
)
_AKOSHA_KEYGEN = (
    "set AKOSHA_ENCRYPTION_KEY to the output of: "
    "python3 -c 'from mahavishnu.platform.crypto import generate_key; print(generate_key())'"
)


def _akosha_token_check(settings: AkoshaSettings) -> Check:
    async def check(_: ReadinessContext) -> tuple[Status, str, str]:
        from mahavishnu.platform.settings import MIN_SECRET_BYTES

        if settings.api_token is None:
            status = FAIL if settings.env == "production" else WARN
            return (
                status,
                "no AKOSHA_API_TOKEN: only admin tokens may push (anyone, with auth off)",
                _AKOSHA_SENDER_ADVICE,
            )
        if len(settings.api_token.get_secret_value().encode()) < MIN_SECRET_BYTES:
            return FAIL, f"AKOSHA_API_TOKEN is shorter than {MIN_SECRET_BYTES} bytes", _AKOSHA_SENDER_ADVICE
        return OK, f"AKOSHA_API_TOKEN set ({MIN_SECRET_BYTES} bytes or more)", ""

    return check


def _akosha_index_check(settings: AkoshaSettings) -> Check:
    async def check(context: ReadinessContext) -> tuple[Status, str, str]:
        from mahavishnu.akosha.consistency import index_report
        from mahavishnu.akosha.keys import key_ring
        from mahavishnu.platform.search.embeddings import MODELS

        model = MODELS.get(settings.embedding_model.strip().lower())
        try:
            ring = key_ring(settings)
        except ConfigurationError as exc:
            return FAIL, exc.message, _AKOSHA_KEYGEN
        report = await index_report(
            context.db,
            ring,
            model_id=model.model_id if model else settings.embedding_model,
            cold_folder=settings.effective_cold_dir,
        )
        if report.orphaned:
            return (
                FAIL,
                f"{report.orphaned} stored vector(s) outlived their deleted records",
                "restore from a verified backup; report it: a tombstone must purge its vector",
            )
        if report.unreadable_segments:
            return (
                WARN,
                f"{report.unreadable_segments} of {report.cold_segments} cold segment file(s) do not "
                "open under the key ring",
                "check AKOSHA_ENCRYPTION_KEY; a restart rebuilds them from the store",
            )
        backlog = f"{report.unembedded} of {report.live} records wait for a vector"
        if report.unembedded > _BACKLOG_WARN:
            return WARN, backlog, "give the index time to embed them"
        return (
            OK,
            f"{report.embedded} records have their vector, {report.cold_segments} cold "
            f"segment(s) open; {backlog}",
            "",
        )

    return check


def _akosha_key_check(settings: AkoshaSettings) -> Check:
    async def check(_: ReadinessContext) -> tuple[Status, str, str]:
        from mahavishnu.platform.crypto import KeyRing

        if settings.encryption_key is None:
            status = FAIL if settings.env == "production" else WARN
            return (
                status,
                "no AKOSHA_ENCRYPTION_KEY: development keeps a key in the data folder",
                _AKOSHA_KEYGEN,
            )
        try:
            ring = KeyRing.parse(settings.encryption_key, setting="AKOSHA_ENCRYPTION_KEY")
        except ConfigurationError as exc:
            return FAIL, exc.message, _AKOSHA_KEYGEN
        return OK, f"{len(ring.key_ids)} 256-bit key(s), current id {ring.current_key_id}", ""

    return check
