"""audit.write_committed: an audit row for a change kept outside the database (drafts in Redis) is committed
before the call returns, many callers share one statement, rows written together (a draft's version) commit with it or
not at all, a refused row fails only its own caller, a lost connection fails its whole batch once, SQLite stays
in-session."""

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
    assert batches - batches_before < 40  # several rows per statement


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


def _user(settings: Settings) -> int:
    from engine import accounts
    from engine.security import SYSTEM

    with session_scope(settings) as s:
        user, _ = accounts.create_user(s, actor=SYSTEM, email="versoes@oficina.test", role="staff",
                                       password="senha-de-teste-123")
        return user.id


def _version(user_id: int, text_: str) -> dict:
    from engine.models import utcnow

    return {"user_id": user_id, "form_slug": "clientes", "object_id": "c1",
            "payload": {"data": {"razao_social": text_}, "step": 1}, "hash": "h" * 64, "reason": "step",
            "created_at": utcnow()}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_rows_written_together_are_committed_with_the_audit_row_or_not_at_all(kind: str,
                                                                                request: pytest.FixtureRequest) -> None:
    """A draft's durable version goes with its save's audit row: both, or (a failing row) neither."""
    from engine.models.drafts import DraftVersion

    settings = request.getfixturevalue("sqlite_settings" if kind == "sqlite" else "pg_settings")
    user_id = _user(settings)
    with session_scope(settings) as s:
        audit.write_committed(s, together=[(DraftVersion.__table__, _version(user_id, "Ação & Cia"))], actor=Actor(),
                              action="t.together", entity_id="ok")
    with session_scope(settings) as s:
        (version,) = s.scalars(select(DraftVersion)).all()
        assert (version.user_id, version.reason, version.payload) == (
            user_id, "step", {"data": {"razao_social": "Ação & Cia"}, "step": 1})
        assert version.created_at.tzinfo is not None
    assert [r.entity_id for r in _rows(settings, "t.together")] == ["ok"]
    with pytest.raises(Exception, match="foreign key|FOREIGN KEY"):
        with session_scope(settings) as s:
            audit.write_committed(s, together=[(DraftVersion.__table__, _version(user_id + 1000, "Órfã"))],
                                  actor=Actor(), action="t.together", entity_id="orphan")
    if kind == "postgresql":  # (SQLite does not bound the length of a text column)
        # The version is good and the audit row after it is not: the version is not kept either.
        with pytest.raises(Exception, match="value too long|character varying"):
            with session_scope(settings) as s:
                audit.write_committed(s, together=[(DraftVersion.__table__, _version(user_id, "Sem auditoria"))],
                                      actor=Actor(), action="t.together", entity_id="x" * 500)
    assert [r.entity_id for r in _rows(settings, "t.together")] == ["ok"]
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(DraftVersion)) == 1


def test_a_row_json_cannot_hold_fails_its_own_caller_before_it_is_queued(pg_settings: Settings) -> None:
    """Each caller encodes its own rows: NaN, an unknown type or a missing column fails that caller alone, before
    its batch (where it would fail or, for a missing column, be written as NULL), and writes nothing."""
    from datetime import date

    from engine.models.drafts import DraftVersion

    user_id = _user(pg_settings)
    not_a_number = dict(_version(user_id, "NaN"), payload={"data": {"valor": float("nan")}, "step": 1})
    incomplete = {k: v for k, v in _version(user_id, "Sem hash").items() if k != "hash"}
    for together, after, error in (([(DraftVersion.__table__, not_a_number)], None, "Out of range float"),
                                   ([(DraftVersion.__table__, incomplete)], None, "sem as colunas hash"),
                                   ((), {"x": object()}, "object não cabe")):
        with pytest.raises((TypeError, ValueError), match=error):
            with session_scope(pg_settings) as s:
                audit.write_committed(s, together=together, actor=Actor(), action="t.json", entity_id="ruim",
                                      after=after)
    with session_scope(pg_settings) as s:  # the writer goes on; what JSON can hold arrives unchanged
        audit.write_committed(s, actor=Actor(), action="t.json", entity_id="bom",
                              after={"grande": 2**70, "dia": date(2026, 12, 3), "texto": "ação\t\u2028😀"})
    assert [(r.entity_id, r.after) for r in _rows(pg_settings, "t.json")] == [
        ("bom", {"grande": 2**70, "dia": "2026-12-03", "texto": "ação\t\u2028😀"})]
    with session_scope(pg_settings) as s:
        assert s.scalar(select(func.count()).select_from(DraftVersion)) == 0


def _one_batch(settings: Settings, monkeypatch: pytest.MonkeyPatch, names: list[str], on_batch=None,
               together=None) -> tuple[dict[str, BaseException | None], audit.GroupWriter]:
    """Callers writing ``t.isolated`` rows with ``names`` as entity ids (and ``together(name)`` with each),
    all queued while the writer is held on a first batch, so that they reach it as one batch
    (``on_batch(entries)`` runs before each batch after that): each caller's outcome (None or its error),
    and the writer."""
    import os

    gate, holding = threading.Event(), threading.Event()
    insert_batch = audit._insert_batch

    def held(conn, entries):
        if any('"action":"t.gate"' in encoded for entry in entries for _, encoded in entry):
            holding.set()
            assert gate.wait(20)
        elif on_batch is not None:
            on_batch(entries)
        return insert_batch(conn, entries)

    monkeypatch.setattr(audit, "_insert_batch", held)
    outcomes: dict[str, BaseException | None] = {}

    def write(entity_id: str) -> None:
        try:
            with session_scope(settings) as s:
                audit.write_committed(s, together=together(entity_id) if together else (), actor=Actor(),
                                      action="t.isolated", entity_id=entity_id)
            outcomes[entity_id] = None
        except Exception as exc:
            outcomes[entity_id] = exc

    def hold_the_writer() -> None:
        with session_scope(settings) as s:
            audit.write_committed(s, actor=Actor(), action="t.gate", entity_id="gate")

    first = threading.Thread(target=hold_the_writer)
    first.start()
    assert holding.wait(10)  # the writer has taken its first batch and waits in it
    writer = audit._writers[(os.getpid(), get_engine(settings))]
    deadline = time.monotonic() + 10
    threads = [threading.Thread(target=write, args=(name,)) for name in names]
    for t in threads:
        t.start()
    while writer.queue.qsize() < len(names) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.queue.qsize() == len(names)  # all of them wait for one batch
    gate.set()
    for t in [first, *threads]:
        t.join(20)
    assert sorted(outcomes) == sorted(names)  # every caller got its answer
    return outcomes, writer


def test_a_bad_row_in_a_batch_fails_only_its_own_caller(pg_settings: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Six callers reach the writer as one batch, which fails on one row too long; each is then written
    alone: the five good ones commit and return, the bad one gets the error."""
    names = ["bom-1", "bom-2", "x" * 500, "bom-3", "bom-4", "bom-5"]
    outcomes, _ = _one_batch(pg_settings, monkeypatch, names)
    assert sorted(name for name, error in outcomes.items() if error is None) == [
        "bom-1", "bom-2", "bom-3", "bom-4", "bom-5"]
    assert outcomes["x" * 500] is not None
    assert sorted(r.entity_id for r in _rows(pg_settings, "t.isolated")) == [
        "bom-1", "bom-2", "bom-3", "bom-4", "bom-5"]


def test_a_bad_version_in_a_batch_fails_only_its_own_save(pg_settings: Settings,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Saves with versions (two tables, one transaction per batch): one version whose user is gone makes the
    batch fail; the others are written alone, each version with its audit row, and the orphan has neither."""
    from engine.models.drafts import DraftVersion

    user_id = _user(pg_settings)
    names = ["v-1", "v-2", "orfa", "v-3"]
    outcomes, _ = _one_batch(pg_settings, monkeypatch, names, together=lambda name: [
        (DraftVersion.__table__, _version(user_id + 1000 if name == "orfa" else user_id, name))])
    assert [name for name in names if outcomes[name] is not None] == ["orfa"]
    assert sorted(r.entity_id for r in _rows(pg_settings, "t.isolated")) == ["v-1", "v-2", "v-3"]
    with session_scope(pg_settings) as s:
        kept = s.scalars(select(DraftVersion)).all()
    assert sorted(v.payload["data"]["razao_social"] for v in kept) == ["v-1", "v-2", "v-3"]


def test_a_lost_connection_fails_its_batch_and_writes_nothing_twice(pg_settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose connection is lost may or may not have been committed: its callers get the error, and
    nothing is written again (no second attempt, no reconnect); the writer works again afterwards."""
    import psycopg

    attempts: list[int] = []

    def lost(entries):
        attempts.append(len(entries))
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    names = [f"perdido-{i}" for i in range(6)]
    outcomes, _ = _one_batch(pg_settings, monkeypatch, names, on_batch=lost)
    assert all(isinstance(outcomes[name], psycopg.OperationalError) for name in names)
    assert attempts == [6]
    monkeypatch.undo()
    with session_scope(pg_settings) as s:
        audit.write_committed(s, actor=Actor(), action="t.isolated", entity_id="de-volta")
    assert [r.entity_id for r in _rows(pg_settings, "t.isolated")] == ["de-volta"]


def test_a_connection_lost_while_retrying_fails_the_rest_at_once(pg_settings: Settings,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch is refused for one bad row, and the first caller's retry loses the connection: the callers
    not tried yet get that error at once."""
    import psycopg

    attempts: list[int] = []

    def lost_on_retry(entries):
        attempts.append(len(entries))
        if len(attempts) == 2:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    names = ["primeiro", "x" * 500, "terceiro", "quarto"]
    outcomes, _ = _one_batch(pg_settings, monkeypatch, names, on_batch=lost_on_retry)
    assert attempts == [4, 1]
    assert all(isinstance(outcomes[name], psycopg.OperationalError) for name in names if name != "x" * 500)
    assert _rows(pg_settings, "t.isolated") == []
