"""Backups: dump to blob storage with a checksum, restore into an empty database and compare every row,
refuse tampered dumps, retention, permissions, the backup job and the CLI -- on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select, text

from engine import accounts, backups, jobs
from engine.cli import main as cli_main
from engine.db import session_scope
from engine.errors import ExternalServiceError, IntegrityError, PermissionDenied, ValidationFailed
from engine.models import AuditEvent, Backup, Cliente, Job
from engine.queue import RecordingQueue
from engine.security import SYSTEM
from engine.settings import Settings
from engine.storage import LocalBlobStorage, get_storage
from tests.databases import PG_ADMIN_URL, throwaway_database


def seed(settings: Settings) -> dict[str, int]:
    """Users, a token, jobs with items, a cliente with JSON, and the audit rows all of that writes."""
    with session_scope(settings) as s:
        admin, _ = accounts.create_user(s, actor=SYSTEM, email="admin@oficina.test", role="admin",
                                        password="senha-admin-1", name="Ana Admin")
        viewer, _ = accounts.create_user(s, actor=SYSTEM, email="vera@oficina.test", role="viewer",
                                         password="senha-viewer-1", name="Vera Ção")
        accounts.create_token(s, actor=SYSTEM, user_id=admin.id, name="script")
        job = jobs.create_job(s, kind="import", owner=admin, params={"arquivo": "leituras.csv", "linhas": 3})
        job.status, job.progress, job.counters = "succeeded", 100, {"ok": 2, "falhas": 1}
        s.flush()
        s.execute(text("INSERT INTO job_items (job_id, key, label, status, attempts, error, updated_at) "
                       "VALUES (:j, 'linha-3', 'Linha 3', 'failed', 1, 'CNPJ inválido', CURRENT_TIMESTAMP)"),
                  {"j": job.id})
        s.add(Cliente(cnpj="11222333000181", razao_social="Oficina Ltda.", endereco={"cep": "01001-000",
                      "cidade": "São Paulo"}, contatos=[{"nome": "Zé", "fone": "+55 11 9999-0000"}]))
        return {"admin": admin.id, "viewer": viewer.id}


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    engine = create_engine(url)
    try:
        tables = sorted(inspect(engine).get_table_names())
        out = {}
        with engine.connect() as conn:
            for table in tables:
                rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
                out[table] = sorted((tuple(r) for r in rows), key=repr)
        return out
    finally:
        engine.dispose()


@contextmanager
def scratch_database(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """An EMPTY database of the same kind as ``settings`` (a second PostgreSQL database, dropped after)."""
    if not settings.is_postgres:
        yield f"sqlite:///{tmp_path / f'scratch-{uuid.uuid4().hex[:6]}.sqlite3'}"
        return
    with throwaway_database("oficina_restore") as url:
        yield url


def backup_file(settings: Settings, backup: Backup) -> Path:
    storage = get_storage(settings)
    assert isinstance(storage, LocalBlobStorage)
    return storage.root / backup.storage_key


def test_round_trip_into_an_empty_database(settings: Settings, tmp_path: Path,
                                           recording_queue: RecordingQueue) -> None:
    seed(settings)
    before = snapshot(settings.resolved_database_url)
    assert len(before["users"]) == 2 and len(before["audit_events"]) >= 4 and len(before["job_items"]) == 1
    backup = backups.create_backup(actor=SYSTEM, settings=settings)
    dialect = "postgresql" if settings.is_postgres else "sqlite"
    assert backup.dialect == dialect and backup.storage_key.startswith("backups/")
    assert backup.storage_key.endswith(f"-{dialect}.dump") and backup.status == "succeeded"
    info = get_storage(settings).stat(backup.storage_key)
    assert info is not None and (info.size, info.sha256) == (backup.size_bytes, backup.sha256)
    sidecar = get_storage(settings).get_bytes(backup.storage_key + ".sha256").decode()
    assert sidecar.split()[0] == backup.sha256

    with scratch_database(settings, tmp_path) as target:
        result = backups.restore_backup(actor=SYSTEM, settings=settings, backup_id=backup.id,
                                        target_url=target)
        assert result.sha256 == backup.sha256 and result.size == backup.size_bytes
        after = snapshot(target)
    assert after.keys() == before.keys()
    for table, rows in before.items():
        assert after[table] == rows, table
    # The app database went on: it now records the backup itself, made after the dump.
    with session_scope(settings) as s:
        assert [b.id for b in backups.list_backups(s, actor=SYSTEM)] == [backup.id]
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "backup.create")) is not None


def test_tampered_backup_is_refused_and_target_untouched(settings: Settings, tmp_path: Path) -> None:
    seed(settings)
    backup = backups.create_backup(actor=SYSTEM, settings=settings)
    path = backup_file(settings, backup)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with scratch_database(settings, tmp_path) as target:
        engine = create_engine(target)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE marcador (id INTEGER PRIMARY KEY, nota TEXT)"))
            conn.execute(text("INSERT INTO marcador VALUES (1, 'intacto')"))
        engine.dispose()
        with pytest.raises(IntegrityError, match="checksum não confere") as exc:
            backups.restore_backup(actor=SYSTEM, settings=settings, backup_id=backup.id, target_url=target)
        assert exc.value.expected == backup.sha256 and exc.value.actual != backup.sha256
        assert snapshot(target) == {"marcador": [(1, "intacto")]}
    # In place too: the app database keeps everything.
    before = snapshot(settings.resolved_database_url)
    with pytest.raises(IntegrityError):
        backups.restore_backup(actor=SYSTEM, settings=settings, backup_id=backup.id)
    assert snapshot(settings.resolved_database_url) == before


def test_restore_by_key_checks_the_sidecar_checksum(sqlite_settings: Settings, tmp_path: Path) -> None:
    settings = sqlite_settings
    seed(settings)
    backup = backups.create_backup(actor=SYSTEM, settings=settings)
    storage = get_storage(settings)
    target = f"sqlite:///{tmp_path / 'por-chave.sqlite3'}"
    # Disaster recovery: no row to trust, only the dump and its .sha256 in storage.
    result = backups.restore_backup(actor=SYSTEM, settings=settings, key=backup.storage_key,
                                    target_url=target)
    assert result.sha256 == backup.sha256
    assert len(snapshot(target)["users"]) == 2
    with pytest.raises(ValidationFailed, match="sqlite e o destino é postgresql"):
        backups.restore_backup(actor=SYSTEM, settings=settings, backup_id=backup.id,
                               target_url="postgresql+psycopg://postgres@127.0.0.1:5432/nunca_usado")
    storage.put_bytes(backup.storage_key + ".sha256", b"0" * 64 + b"  x.dump\n")
    with pytest.raises(IntegrityError, match="diverge"):
        backups.restore_backup(actor=SYSTEM, settings=settings, key=backup.storage_key, target_url=target)


def test_restore_in_place_keeps_the_list_of_backups(settings: Settings) -> None:
    seed(settings)
    first = backups.create_backup(actor=SYSTEM, settings=settings)
    with session_scope(settings) as s:
        accounts.create_user(s, actor=SYSTEM, email="depois@oficina.test", role="staff",
                             password="senha-123456")
    second = backups.create_backup(actor=SYSTEM, settings=settings)

    result = backups.restore_backup(actor=SYSTEM, settings=settings, backup_id=first.id)
    assert result.preserved_backup_rows == 2  # neither row was in the first dump
    with session_scope(settings) as s:
        assert accounts.get_user_by_email(s, email="depois@oficina.test") is None
        listed = {b.storage_key: b for b in backups.list_backups(s, actor=SYSTEM)}
        assert set(listed) == {first.storage_key, second.storage_key}
        assert listed[second.storage_key].sha256 == second.sha256
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "backup.restore")) is not None
        newer_id = listed[second.storage_key].id
    # ...so the newer backup can still be restored, by its (possibly new) id.
    backups.restore_backup(actor=SYSTEM, settings=settings, backup_id=newer_id)
    with session_scope(settings) as s:
        assert accounts.get_user_by_email(s, email="depois@oficina.test") is not None
        assert len(backups.list_backups(s, actor=SYSTEM)) == 2


def test_retention_keeps_the_newest(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.with_overrides(backup_keep=2)
    made = [backups.create_backup(actor=SYSTEM, settings=settings) for _ in range(4)]
    storage = get_storage(settings)
    with session_scope(settings) as s:
        kept = [b.storage_key for b in backups.list_backups(s, actor=SYSTEM)]
    assert kept == [made[3].storage_key, made[2].storage_key]
    for old in made[:2]:
        assert storage.stat(old.storage_key) is None and storage.stat(old.storage_key + ".sha256") is None
    assert sorted(backups.iter_keys(settings)) == sorted(kept)
    assert backups.apply_retention(settings=settings, keep=0) == [made[2].storage_key]  # never below one
    assert list(backups.iter_keys(settings)) == [made[3].storage_key]


@pytest.mark.parametrize("role", ["viewer", "staff", "analyst"])
def test_only_admins_may_back_up_or_restore(sqlite_settings: Settings, recording_queue: RecordingQueue,
                                            role: str) -> None:
    with session_scope(sqlite_settings) as s:
        user, _ = accounts.create_user(s, actor=SYSTEM, email=f"{role}@oficina.test", role=role,
                                       password="senha-123456")
        with pytest.raises(PermissionDenied, match="backups.create"):
            backups.start_backup(s, actor=user)
        with pytest.raises(PermissionDenied):
            backups.create_backup(actor=user, settings=sqlite_settings)
        with pytest.raises(PermissionDenied):
            backups.restore_backup(actor=user, settings=sqlite_settings, backup_id=1)
        with pytest.raises(PermissionDenied):
            backups.list_backups(s, actor=user)
    assert recording_queue.enqueued == []
    assert list(backups.iter_keys(sqlite_settings)) == []


def test_admin_starts_one_backup_job_at_a_time(sqlite_settings: Settings, recording_queue: RecordingQueue
                                               ) -> None:
    with session_scope(sqlite_settings) as s:
        admin, _ = accounts.create_user(s, actor=SYSTEM, email="chefe@oficina.test", role="admin",
                                        password="senha-123456")
        job = backups.start_backup(s, actor=admin)
        again = backups.start_backup(s, actor=admin)
        assert again.id == job.id and job.kind == "backup" and job.dedupe_key == "backup"
        assert job.owner_id == admin.id
    assert recording_queue.enqueued == [(job.id, 0)]


def test_backup_job_reports_progress_and_succeeds(settings: Settings, inline_queue) -> None:  # noqa: ANN001
    ids = seed(settings)
    with session_scope(settings) as s:
        admin = accounts.get_user(s, user_id=ids["admin"])
        job_id = backups.start_backup(s, actor=admin).id
    # The inline queue ran it when the session committed.
    assert inline_queue.ran[-1] == job_id
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.progress) == ("succeeded", 100), job.error
        backup = s.scalar(select(Backup).where(Backup.job_id == job_id))
        assert backup is not None and backup.created_by_id == ids["admin"]
        assert job.result["key"] == backup.storage_key and job.result["sha256"] == backup.sha256
        assert job.counters["bytes_uploaded"] == job.counters["bytes_total"] == backup.size_bytes
        assert job.message.startswith("Backup concluído")
    # Delivered twice (the sweep after a lost worker): the second run returns the same backup.
    ctx = jobs.JobContext(job_id, kind="backup", params={}, attempt=2, settings=settings,
                          owner_id=ids["admin"])
    assert backups.backup_job(ctx)["id"] == backup.id
    with session_scope(settings) as s:
        assert len(backups.list_backups(s, actor=SYSTEM)) == 1


def test_dump_failure_stores_nothing(pg_settings: Settings) -> None:
    broken = pg_settings.with_overrides(database_url=PG_ADMIN_URL.rsplit("/", 1)[0] + "/banco_que_nao_existe")
    with pytest.raises(ExternalServiceError, match="pg_dump falhou") as exc:
        backups.create_backup(actor=SYSTEM, settings=broken)
    assert "\n" not in exc.value.message and "banco_que_nao_existe" in exc.value.message
    assert list(backups.iter_keys(broken)) == []
    with session_scope(pg_settings) as s:
        assert backups.list_backups(s, actor=SYSTEM) == []


def test_libpq_target_keeps_the_password_off_the_command_line() -> None:
    url, env = backups.libpq_target("postgresql+psycopg://app:s3cr%40t@db.interno:6543/oficina?sslmode=require")
    assert url == "postgresql://app@db.interno:6543/oficina?sslmode=require"
    assert env["PGPASSWORD"] == "s3cr@t"


def test_cli_backup_list_and_restore(sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    seed(sqlite_settings)
    assert cli_main(["backup"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("Backup 1 criado: backups/") and "sha256" in out.out
    assert "Gerando o dump" in out.err
    assert cli_main(["backups", "--json"]) == 0
    assert '"id": 1' in capsys.readouterr().out
    assert cli_main(["restore", "1"]) == 1  # no terminal, no --yes: refuse
    assert "--yes" in capsys.readouterr().err
    assert cli_main(["restore", "999", "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("erro: Backup 999 não encontrado") and err.count("\n") == 1
    with session_scope(sqlite_settings) as s:
        accounts.create_user(s, actor=SYSTEM, email="tarde@oficina.test", role="viewer",
                             password="senha-123456")
    assert cli_main(["restore", "1", "--yes"]) == 0
    assert "sha256 verificado" in capsys.readouterr().out
    with session_scope(sqlite_settings) as s:
        assert accounts.get_user_by_email(s, email="tarde@oficina.test") is None
        assert [b.id for b in backups.list_backups(s, actor=SYSTEM)] != []
