"""audit.write_committed: an audit row for a change kept outside the database (drafts in Redis) is committed
before the call returns, many callers share one COPY, failures reach every waiter, SQLite stays in-session."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, func, select, text

from engine import audit
from engine.db import get_engine, session_scope
from engine.models import AuditEvent
from engine.settings import Settings


class Actor:
    id = None
    email = "robo@example.com"


def _rows(settings: Settings, action: str) -> list[AuditEvent]:
    with session_scope(settings) as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_the_row_is_committed_before_the_call_returns_and_reads_like_insert_event(pg_settings: Settings) -> None:
    with session_scope(pg_settings) as s:
        audit.write_committed(s, actor=Actor(), action="t.grouped", entity_type="draft", entity_id="1:f:o",
                              after={"version": 3, "nome": "João"}, source="api")
        audit.insert_event(s, actor=Actor(), action="t.inline", entity_type="draft", entity_id="1:f:o",
                           after={"version": 3, "nome": "João"}, source="api")
        # Visible to another connection already, while this session's transaction is still open.
        with get_engine(pg_settings).connect() as other:
            assert other.scalar(text("SELECT count(*) FROM audit_events WHERE action = 't.grouped'")) == 1
            assert other.scalar(text("SELECT count(*) FROM audit_events WHERE action = 't.inline'")) == 0
    (grouped,) = _rows(pg_settings, "t.grouped")
    (inline,) = _rows(pg_settings, "t.inline")
    for column in ("actor_id", "actor_label", "entity_type", "entity_id", "before", "after", "request_id",
                   "source"):
        assert getattr(grouped, column) == getattr(inline, column), column
    assert abs((inline.created_at - grouped.created_at).total_seconds()) < 5
    assert grouped.created_at.tzinfo is not None


def _batches() -> tuple[float, float]:
    """(batches, rows) written by group commits so far in this process."""
    samples = {s.name: s.value for metric in audit.BATCH_ROWS.collect() for s in metric.samples}
    return samples["oficina_audit_batch_rows_count"], samples["oficina_audit_batch_rows_sum"]


def test_concurrent_callers_share_batches(pg_settings: Settings) -> None:
    started = threading.Barrier(40)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            started.wait()
            with session_scope(pg_settings) as s:
                audit.write_committed(s, actor=Actor(), action="t.batch", entity_id=str(i), after={"i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    batches_before, rows_before = _batches()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    rows = _rows(pg_settings, "t.batch")
    assert sorted(int(r.entity_id) for r in rows) == list(range(40))
    assert sorted(r.after["i"] for r in rows) == list(range(40))
    batches, written = _batches()
    assert written - rows_before == 40
    assert batches - batches_before < 40  # several rows per COPY


def test_a_failing_batch_fails_its_callers_and_the_writer_goes_on(pg_settings: Settings) -> None:
    with session_scope(pg_settings) as s:
        with pytest.raises(Exception, match="entity_id|value too long|character varying"):
            audit.write_committed(s, actor=Actor(), action="t.fail", entity_id="x" * 500)
        audit.write_committed(s, actor=Actor(), action="t.after", entity_id="ok")
    assert _rows(pg_settings, "t.fail") == []
    assert [r.entity_id for r in _rows(pg_settings, "t.after")] == ["ok"]


def test_the_writer_reconnects_after_its_connection_is_killed(pg_settings: Settings) -> None:
    with session_scope(pg_settings) as s:
        audit.write_committed(s, actor=Actor(), action="t.kill", entity_id="1")
    with get_engine(pg_settings).begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND pid <> pg_backend_pid()"))
    with session_scope(pg_settings) as s:
        try:
            audit.write_committed(s, actor=Actor(), action="t.kill", entity_id="2")
        except Exception:  # the batch on the dead connection fails and says so; the next one works
            audit.write_committed(s, actor=Actor(), action="t.kill", entity_id="2")
    assert [r.entity_id for r in _rows(pg_settings, "t.kill")] == ["1", "2"]


def test_an_idle_writer_thread_ends_and_a_new_one_starts_on_demand(pg_settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "WRITER_IDLE_SECONDS", 0.2)
    engine = create_engine(pg_settings.resolved_database_url)  # a writer of its own
    try:
        with session_scope(engine=engine) as s:
            audit.write_committed(s, actor=Actor(), action="t.idle", entity_id="1")
        assert any(key[1] is engine for key in audit._writers)
        deadline = time.monotonic() + 5
        while any(key[1] is engine for key in audit._writers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(key[1] is engine for key in audit._writers)
        with session_scope(engine=engine) as s:
            audit.write_committed(s, actor=Actor(), action="t.idle", entity_id="2")
        assert [r.entity_id for r in _rows(pg_settings, "t.idle")] == ["1", "2"]
    finally:
        engine.dispose()


def test_sqlite_writes_in_the_callers_transaction(sqlite_settings: Settings) -> None:
    with pytest.raises(RuntimeError), session_scope(sqlite_settings) as s:
        audit.write_committed(s, actor=Actor(), action="t.sqlite", entity_id="1")
        raise RuntimeError("rolled back with the caller")
    assert _rows(sqlite_settings, "t.sqlite") == []
    with session_scope(sqlite_settings) as s:
        audit.write_committed(s, actor=Actor(), action="t.sqlite", entity_id="2")
        assert s.scalar(select(func.count()).select_from(AuditEvent)) >= 1
    assert [r.entity_id for r in _rows(sqlite_settings, "t.sqlite")] == ["2"]
