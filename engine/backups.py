"""Database backups: a consistent dump of the whole database to blob storage, with a checksum, a retention
count, and a restore that verifies the checksum before it touches anything.

* PostgreSQL: ``pg_dump --format=custom`` (one consistent snapshot, taken by pg_dump itself) and
  ``pg_restore --clean --if-exists --no-owner --single-transaction`` (all or nothing).
* SQLite: the SQLite online backup API, which copies a consistent image while the app keeps writing, in
  both directions.

A dump goes to ``backups/{timestamp}-{dialect}.dump`` with its SHA-256 next to it (``.sha256``, the
``sha256sum`` format) and in a ``Backup`` row. The row is written after the dump, so a backup never
contains a half-finished record of itself. The dump runs outside any session of the caller: nothing holds a
transaction open while the database is being read.

Entry points: ``start_backup`` (a job, from the dashboard or the daily schedule), ``create_backup`` (inline:
``oficina backup``), ``restore_backup`` (``oficina restore``, an operator action), ``list_backups``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from engine import audit
from engine.db import get_engine, session_scope
from engine.errors import (
    ConfigurationError,
    EngineError,
    ExternalServiceError,
    IntegrityError,
    NotFound,
    ValidationFailed,
)
from engine.jobs import JobContext, create_job, job_handler
from engine.models import ACTIVE_STATUSES, Backup, Job, User, utcnow
from engine.security import SYSTEM, require
from engine.settings import Settings, get_settings
from engine.storage import BlobStorage, get_storage

PREFIX = "backups/"
DIALECTS = ("postgresql", "sqlite")
PERMISSION = "backups.create"
VIEW_PERMISSION = "backups.view"
POLL_SECONDS = 0.5
DOWNLOAD_LINK_SECONDS = 600


class Progress(Protocol):
    """What a backup reports to (``JobContext`` is one; the CLI prints)."""

    def progress(self, percent: float | None = None, *, message: str | None = None,
                 counters: dict[str, Any] | None = None, force: bool = False) -> None: ...

    def check_cancelled(self) -> None: ...


class _Silent:
    def progress(self, percent: float | None = None, *, message: str | None = None,
                 counters: dict[str, Any] | None = None, force: bool = False) -> None:
        return None

    def check_cancelled(self) -> None:
        return None


@dataclass(frozen=True)
class RestoreResult:
    backup_key: str
    dialect: str
    sha256: str
    size: int
    target: str
    preserved_backup_rows: int


# Helpers ---------------------------------------------------------------------------------------------

def dialect_of(url: str) -> str:
    if url.startswith("postgresql"):
        return "postgresql"
    if url.startswith("sqlite"):
        return "sqlite"
    raise ConfigurationError(f"Backup não suporta este banco: {make_url(url).drivername}.",
                             variable="DATABASE_URL")


def libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL for pg_dump/pg_restore (``postgresql+psycopg://`` -> ``postgresql://``) and the
    environment to run them in. The password travels in ``PGPASSWORD``, never on the command line."""
    parsed = make_url(url)
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "15")
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = URL.create("postgresql", username=parsed.username, host=parsed.host, port=parsed.port,
                       database=parsed.database, query=parsed.query)
    return plain.render_as_string(hide_password=False), env


def _describe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ConfigurationError("Banco SQLite em memória não tem backup.", variable="DATABASE_URL")
    return Path(database)


def _tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        raise ConfigurationError(f"{name} não encontrado: instale o pacote postgresql-client.", tool=name)
    return path


def _work_dir(settings: Settings) -> tempfile.TemporaryDirectory[str]:
    """Scratch space for dumps on the data dir's disk (not /tmp, which may be small or in memory)."""
    base = settings.data_dir / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="backup-", dir=base)


def _run_tool(args: list[str], *, env: dict[str, str], log_path: Path, what: str,
              watch: Path | None = None, report: Progress | None = None) -> None:
    """Run pg_dump/pg_restore, polling for cancellation (and the size of ``watch``) while it works."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log)
        try:
            while True:
                try:
                    proc.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if report is not None:
                    report.check_cancelled()
                    if watch is not None and watch.exists():
                        written = watch.stat().st_size
                        report.progress(None, message=f"Gerando o dump: {_human(written)}",
                                        counters={"bytes_dumped": written})
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        detail = " | ".join(lines[-3:]) or f"código {proc.returncode}"
        raise ExternalServiceError(f"{what} falhou: {detail}", tool=Path(args[0]).name,
                                   returncode=proc.returncode)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}".replace(".", ",")
        value /= 1024
    return f"{size} B"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _CountingReader:
    """Wraps a file to report upload progress by bytes read."""

    def __init__(self, f: Any, total: int, report: Progress, start: float, span: float) -> None:
        self.f, self.total, self.report, self.start, self.span = f, total, report, start, span
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.done += len(data)
        share = self.done / self.total if self.total else 1
        self.report.progress(self.start + self.span * share,
                             message=f"Enviando: {_human(self.done)} de {_human(self.total)}",
                             counters={"bytes_uploaded": self.done, "bytes_total": self.total})
        return data


# Dumping -----------------------------------------------------------------------------------------------

def _dump_postgresql(url: str, target: Path, report: Progress) -> None:
    libpq_url, env = libpq_target(url)
    _run_tool([_tool("pg_dump"), "--format=custom", "--no-password", f"--file={target}",
               f"--dbname={libpq_url}"],
              env=env, log_path=target.with_suffix(".log"), what="pg_dump", watch=target, report=report)


def _dump_sqlite(url: str, target: Path) -> None:
    source_path = _sqlite_path(url)
    if not source_path.is_file():
        raise NotFound(f"Banco SQLite {source_path} não encontrado.", entity="database", key=str(source_path))
    source = sqlite3.connect(source_path, timeout=30)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # one step: a consistent image while writers go on (WAL)
        copy.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
        check = copy.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise IntegrityError(f"A cópia do banco SQLite falhou na verificação: {check}.")
    except sqlite3.Error as exc:
        raise ExternalServiceError(f"Backup do SQLite falhou: {exc}.") from exc
    finally:
        copy.close()
        source.close()


def _new_key(dialect: str, storage: BlobStorage) -> str:
    now = utcnow()
    key = f"{PREFIX}{now:%Y%m%dT%H%M%S}.{now:%f}Z-{dialect}.dump"
    if storage.exists(key):  # two backups in the same microsecond: never overwrite one
        key = f"{PREFIX}{now:%Y%m%dT%H%M%S}.{now:%f}Z-{os.getpid()}-{dialect}.dump"
    return key


def _run_backup(*, settings: Settings, actor: Any, report: Progress, job_id: int | None = None) -> Backup:
    url = settings.resolved_database_url
    dialect = dialect_of(url)
    storage = get_storage(settings)
    key = _new_key(dialect, storage)
    with _work_dir(settings) as work:
        dump = Path(work) / "database.dump"
        report.progress(2, message="Gerando o dump do banco de dados", force=True)
        started = time.monotonic()
        if dialect == "postgresql":
            _dump_postgresql(url, dump, report)
        else:
            _dump_sqlite(url, dump)
        size = dump.stat().st_size
        report.progress(40, message=f"Dump pronto ({_human(size)}); enviando ao armazenamento",
                        counters={"bytes_dumped": size, "dump_seconds": round(time.monotonic() - started, 2)},
                        force=True)
        report.check_cancelled()
        with open(dump, "rb") as f:
            info = storage.put(key, _CountingReader(f, size, report, 40, 50),  # type: ignore[arg-type]
                               content_type="application/octet-stream")
    try:
        storage.put_bytes(key + ".sha256", f"{info.sha256}  {key.rsplit('/', 1)[-1]}\n".encode(),
                          content_type="text/plain")
        with session_scope(settings) as s:
            backup = Backup(created_by_id=getattr(actor, "id", None), dialect=dialect, storage_key=key,
                            size_bytes=info.size, sha256=info.sha256 or "", status="succeeded", job_id=job_id)
            s.add(backup)
            s.flush()
            audit.record(s, actor=actor, action="backup.create", entity_type="backup", entity_id=backup.id,
                         after={"key": key, "size": info.size, "sha256": info.sha256, "dialect": dialect},
                         source="job" if job_id else "cli")
    except BaseException:
        # Without its row the blob would be an orphan retention never sees.
        for orphan in (key, key + ".sha256"):
            with contextlib.suppress(EngineError):
                storage.delete(orphan)
        raise
    report.progress(92, message="Aplicando a retenção", force=True)
    removed = apply_retention(settings=settings)
    report.progress(99, message=f"Backup concluído: {_human(info.size)}",
                    counters={"backups_removed": len(removed)}, force=True)
    return backup


def create_backup(*, actor: Any, settings: Settings | None = None, report: Progress | None = None) -> Backup:
    """Dump the whole database to blob storage now, record it, apply retention, and return the row.

    Opens its own short sessions (the dump itself holds none). Requires ``backups.create``."""
    require(actor, PERMISSION)
    return _run_backup(settings=settings or get_settings(), actor=actor, report=report or _Silent())


def apply_retention(*, settings: Settings, keep: int | None = None) -> list[str]:
    """Keep the ``keep`` (default ``BACKUP_KEEP``, at least 1) newest backups; delete older rows and blobs.
    Returns the deleted keys."""
    keep = max(1, settings.backup_keep if keep is None else keep)
    with session_scope(settings) as s:
        rows = s.scalars(select(Backup).order_by(Backup.created_at.desc(), Backup.id.desc())).all()
        doomed = list(rows[keep:])
        keys = [row.storage_key for row in doomed]
        for row in doomed:
            audit.record(s, actor=SYSTEM, action="backup.expire", entity_type="backup", entity_id=row.id,
                         before={"key": row.storage_key, "created_at": row.created_at.isoformat()})
            s.delete(row)
    storage = get_storage(settings)
    for key in keys:  # rows first: a blob left behind by a failed delete harms nothing
        for blob in (key, key + ".sha256"):
            with contextlib.suppress(EngineError):
                storage.delete(blob)
    return keys


# Services for the dashboard, the API and the CLI ------------------------------------------------------------

def start_backup(session: Session, *, actor: Any) -> Job:
    """Queue a backup job (or return the one already queued or running)."""
    require(actor, PERMISSION)
    return create_job(session, kind="backup", owner=actor, params={}, dedupe_key="backup")


def list_backups(session: Session, *, actor: Any, limit: int = 100) -> list[Backup]:
    """Backups, newest first."""
    require(actor, VIEW_PERMISSION)
    return list(session.scalars(select(Backup).order_by(Backup.created_at.desc(), Backup.id.desc())
                                .limit(limit)))


def get_backup(session: Session, *, actor: Any, backup_id: int) -> Backup | None:
    require(actor, VIEW_PERMISSION)
    return session.get(Backup, backup_id)


def backup_download_url(session: Session, *, actor: Any, backup_id: int,
                        settings: Settings | None = None) -> str:
    """A short-lived link to download a dump (it holds every record, password hashes included)."""
    require(actor, "backups.download")
    backup = session.get(Backup, backup_id)
    if backup is None:
        raise NotFound(f"Backup {backup_id} não encontrado.", entity="backup", key=backup_id)
    audit.record(session, actor=actor, action="backup.download", entity_type="backup", entity_id=backup.id)
    return get_storage(settings or get_settings()).signed_url(
        backup.storage_key, expires_in=DOWNLOAD_LINK_SECONDS, filename=backup.storage_key.rsplit("/", 1)[-1])


def summary(backup: Backup) -> dict[str, Any]:
    return {"id": backup.id, "key": backup.storage_key, "dialect": backup.dialect, "size": backup.size_bytes,
            "sha256": backup.sha256, "status": backup.status, "job_id": backup.job_id,
            "created_at": backup.created_at.isoformat() if backup.created_at else None}


@job_handler("backup", label="Backup do banco de dados", permission=PERMISSION)
def backup_job(ctx: JobContext) -> dict[str, Any]:
    """The ``backup`` job: dump, upload with byte progress, retention. Safe to run twice: a re-delivered
    job whose backup already exists returns it."""
    with ctx.session() as s:
        done = s.scalar(select(Backup).where(Backup.job_id == ctx.job_id).limit(1))
        if done is not None:
            return summary(done)
        owner = s.get(User, ctx.owner_id) if ctx.owner_id is not None else None
    return summary(_run_backup(settings=ctx.settings, actor=owner or SYSTEM, report=ctx, job_id=ctx.job_id))


# Restoring ---------------------------------------------------------------------------------------------

def _catalog(settings: Settings) -> list[dict[str, Any]]:
    """The Backup rows of a database, if it has any (a fresh or broken database has none)."""
    try:
        with session_scope(settings) as s:
            return [{"created_at": b.created_at, "created_by_id": b.created_by_id, "dialect": b.dialect,
                     "storage_key": b.storage_key, "size_bytes": b.size_bytes, "sha256": b.sha256,
                     "status": b.status, "job_id": b.job_id} for b in s.scalars(select(Backup))]
    except SQLAlchemyError:
        return []


def _resolve(settings: Settings, storage: BlobStorage, backup_id: int | None, key: str | None
             ) -> dict[str, Any]:
    """Which blob to restore and the checksum it must have (from the row, else the ``.sha256`` beside it)."""
    catalog = _catalog(settings)
    if backup_id is not None:
        with contextlib.suppress(SQLAlchemyError), session_scope(settings) as s:
            row = s.get(Backup, backup_id)
            if row is not None:
                key = row.storage_key
        if key is None:
            raise NotFound(f"Backup {backup_id} não encontrado. Use `oficina backups` para ver a lista.",
                           entity="backup", key=backup_id)
    if not key:
        raise ValidationFailed("Informe o id do backup ou a chave dele no armazenamento.")
    if storage.stat(key) is None:
        raise NotFound(f"O arquivo do backup {key} não está no armazenamento ({storage.describe()}).",
                       entity="backup", key=key)
    entry = next((row for row in catalog if row["storage_key"] == key), None)
    expected = entry["sha256"] if entry else None
    companion: str | None = None
    with contextlib.suppress(NotFound):
        companion = (storage.get_bytes(key + ".sha256").decode("ascii", "replace").split() or [""])[0]
    if expected and companion and expected != companion:
        raise IntegrityError(f"O checksum registrado do backup {key} diverge do arquivo .sha256: recusado.",
                             key=key)
    expected = expected or companion
    if not expected:
        raise IntegrityError(f"O backup {key} não tem checksum registrado: restauração recusada.", key=key)
    dialect = entry["dialect"] if entry else next((d for d in DIALECTS if key.endswith(f"-{d}.dump")), "")
    return {"key": key, "sha256": expected, "dialect": dialect,
            "size": entry["size_bytes"] if entry else None}


def _download_verified(storage: BlobStorage, chosen: dict[str, Any], target: Path) -> int:
    digest = hashlib.sha256()
    size = 0
    with storage.open(chosen["key"]) as reader, open(target, "wb") as out:
        for chunk in iter(lambda: reader.read(1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if digest.hexdigest() != chosen["sha256"] or (chosen["size"] is not None and size != chosen["size"]):
        raise IntegrityError(
            f"O backup {chosen['key']} está corrompido ou foi alterado (checksum não confere): restauração "
            "recusada; o banco de dados não foi tocado.", key=chosen["key"], expected=chosen["sha256"],
            actual=digest.hexdigest())
    return size


def _restore_sqlite(dump: Path, url: str) -> None:
    target_path = _sqlite_path(url)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(dump)
    try:
        check = source.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise IntegrityError(f"O dump SQLite não passou na verificação: {check}.")
        target = sqlite3.connect(target_path, timeout=30)
        try:
            source.backup(target)  # replaces the whole database in one transaction
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise ExternalServiceError(f"Restauração do SQLite falhou: {exc}.") from exc
    finally:
        source.close()


def _restore_postgresql(dump: Path, url: str) -> None:
    libpq_url, env = libpq_target(url)
    _run_tool([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
               "--single-transaction", "--exit-on-error", "--no-password", f"--dbname={libpq_url}",
               str(dump)],
              env=env, log_path=dump.with_suffix(".log"), what="pg_restore")


def _reconcile_catalog(settings: Settings, before: list[dict[str, Any]], restored_key: str, actor: Any
                       ) -> int:
    """After restoring the app's own database, bring back the Backup rows it had (so the later backups can
    still be found and restored) and close the job that was producing the restored dump."""
    added = 0
    with session_scope(settings) as s:
        present = set(s.scalars(select(Backup.storage_key)))
        users = set(s.scalars(select(User.id)))
        jobs = set(s.scalars(select(Job.id)))
        for row in before:
            if row["storage_key"] in present:
                continue
            values = dict(row)
            values["created_by_id"] = values["created_by_id"] if values["created_by_id"] in users else None
            values["job_id"] = values["job_id"] if values["job_id"] in jobs else None
            s.add(Backup(**values))
            added += 1
        origin = next((row for row in before if row["storage_key"] == restored_key), None)
        if origin and origin["job_id"] in jobs:
            s.execute(update(Job).where(Job.id == origin["job_id"], Job.status.in_(ACTIVE_STATUSES))
                      .values(status="succeeded", progress=100, finished_at=utcnow(),
                              message="Backup concluído (registro restaurado a partir dele)."))
        audit.record(s, actor=actor, action="backup.restore", entity_type="backup", entity_id=restored_key,
                     source="cli")
    return added


def restore_backup(*, actor: Any, settings: Settings | None = None, backup_id: int | None = None,
                   key: str | None = None, target_url: str | None = None) -> RestoreResult:
    """Replace the contents of the database (the app's, or ``target_url``) with a backup.

    The dump is downloaded and its SHA-256 compared with the recorded one first; on any mismatch
    ``IntegrityError`` is raised and the target is not touched. Then ``pg_restore --clean --if-exists
    --no-owner --single-transaction`` (PostgreSQL) or the SQLite backup API replaces everything at once,
    pending migrations are applied, and (for the app's own database) the list of backups is kept."""
    require(actor, "backups.restore")
    settings = settings or get_settings()
    url = target_url or settings.resolved_database_url
    own_database = url == settings.resolved_database_url
    target_dialect = dialect_of(url)
    storage = get_storage(settings)
    chosen = _resolve(settings, storage, backup_id, key)
    if chosen["dialect"] and chosen["dialect"] != target_dialect:
        raise ValidationFailed(f"O backup {chosen['key']} é de {chosen['dialect']} e o destino é "
                               f"{target_dialect}: use um banco do mesmo tipo.", key=chosen["key"])
    target_settings = settings.with_overrides(database_url=url)
    before = _catalog(target_settings) if own_database else []
    with _work_dir(settings) as work:
        dump = Path(work) / "restore.dump"
        size = _download_verified(storage, chosen, dump)
        get_engine(target_settings).dispose()  # no pooled connection keeps the old database open
        if target_dialect == "postgresql":
            _restore_postgresql(dump, url)
        else:
            _restore_sqlite(dump, url)
    get_engine(target_settings).dispose()
    from engine.migrate import upgrade  # alembic is heavy; only restores need it

    try:
        upgrade(target_settings)
    except Exception as exc:  # the data is back; say clearly what is left to do
        raise ConfigurationError(f"Backup restaurado, mas as migrações falharam ({exc}); "
                                 "rode `oficina db upgrade`.", variable="DATABASE_URL") from exc
    preserved = _reconcile_catalog(target_settings, before, chosen["key"], actor) if own_database else 0
    if not own_database:
        get_engine(target_settings).dispose()
    return RestoreResult(backup_key=chosen["key"], dialect=target_dialect, sha256=chosen["sha256"], size=size,
                         target=_describe_url(url), preserved_backup_rows=preserved)


# CLI ---------------------------------------------------------------------------------------------------

class _ConsoleProgress:
    """Progress for `oficina backup`: one line on stderr per step."""

    def __init__(self) -> None:
        self._last = ""

    def progress(self, percent: float | None = None, *, message: str | None = None,
                 counters: dict[str, Any] | None = None, force: bool = False) -> None:
        if force and message and message != self._last:
            self._last = message
            prefix = f"{int(percent):>3}% " if percent is not None else ""
            print(f"{prefix}{message}", file=sys.stderr, flush=True)

    def check_cancelled(self) -> None:
        return None


def cmd_backup(args: argparse.Namespace) -> int:
    backup = create_backup(actor=SYSTEM, settings=get_settings(), report=_ConsoleProgress())
    data = summary(backup)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(f"Backup {data['id']} criado: {data['key']}  {data['size']} bytes  sha256 {data['sha256']}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    settings = get_settings()
    backup_id, key = (int(args.backup), None) if args.backup.isdigit() else (None, args.backup)
    target = _describe_url(args.target_url or settings.resolved_database_url)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ValidationFailed("A restauração substitui todos os dados: confirme com --yes.")
        answer = input(f"Isto substitui TODOS os dados de {target} pelo backup {args.backup}. "
                       "Digite 'sim' para continuar: ")
        if answer.strip().lower() != "sim":
            print("Restauração cancelada.")
            return 1
    result = restore_backup(actor=SYSTEM, settings=settings, backup_id=backup_id, key=key,
                            target_url=args.target_url)
    print(f"Backup {result.backup_key} ({result.size} bytes, sha256 verificado) restaurado em "
          f"{result.target}.")
    if result.preserved_backup_rows:
        print(f"{result.preserved_backup_rows} registro(s) de backup que não estavam no dump foram mantidos "
              "na lista.")
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    if args.storage:
        keys = list(iter_keys(get_settings()))
        for key in keys:
            print(key)
        print(f"{len(keys)} dump(s) no armazenamento")
        return 0
    with session_scope() as s:
        rows = [summary(b) for b in list_backups(s, actor=SYSTEM)]
    for row in rows:
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"{row['id']:>5}  {row['created_at'][:19]}  {row['dialect']:<10} {row['size']:>12}  "
                  f"{row['key']}")
    if not args.json:
        print(f"{len(rows)} backup(s)")
    return 0


def iter_keys(settings: Settings) -> Iterator[str]:
    """Every dump stored under ``backups/`` (also ones without a row, e.g. after losing the database)."""
    for info in get_storage(settings).list(PREFIX):
        if info.key.endswith(".dump"):
            yield info.key
