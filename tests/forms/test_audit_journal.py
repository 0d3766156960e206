"""The audit journal of Redis-kept drafts: a save's audit row is written by the save's own script into a Redis
stream and drained into ``audit_events`` once, whatever fails in between. On PostgreSQL and SQLite."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import delete, select

from engine import audit, draft_stores, drafts
from engine.db import get_engine, session_scope
from engine.errors import Conflict, LimitExceeded
from engine.models import AuditEvent, User
from engine.settings import Settings
from tests.forms.conftest import make_settings, redis_client
from tests.forms.test_drafts import save

pytestmark = pytest.mark.xdist_group("forms-journal")

COMBINATIONS = [("postgresql", "redis"), ("sqlite", "redis")]


@pytest.fixture(params=COMBINATIONS, ids=[f"{d}-{s}" for d, s in COMBINATIONS])
def combination(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No background drain during the test: what the journal holds stays there until the test drains it."""
    monkeypatch.setattr(drafts, "JOURNAL_DRAIN_SECONDS", 3600.0)


def saves_in_db(settings: Settings) -> list[AuditEvent]:
    with session_scope(settings) as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == "draft.save").order_by(AuditEvent.id))
        return list(rows)


def journaled(store: Any) -> list[dict[str, Any]]:
    """The rows in the journal (each entry: the row's HMAC, 64 hex characters, then the row)."""
    return [json.loads(entry[64:]) for _, entry in store.journal_read(100) if entry]


def test_a_save_journals_its_row_with_the_draft_and_a_drain_writes_it_once(draft_settings, users, store,
                                                                           quiet, monkeypatch):
    author = users["autor"]
    save(draft_settings, author, {"razao_social": "Um"}, version=0)  # the first: a durable version is due
    assert store.journal_length() == 0 and [e.after["version"] for e in saves_in_db(draft_settings)] == [1]

    save(draft_settings, author, {"razao_social": "Dois"}, version=1)
    assert store.journal_length() == 1 and len(saves_in_db(draft_settings)) == 1
    (row,) = journaled(store)
    assert row["action"] == "draft.save" and row["actor_id"] == author.id
    assert row["actor_label"] == author.email and row["entity_id"] == f"{author.id}:clientes:novo-1"
    assert row["after"] == {"version": 2, "step": 0, "size": row["after"]["size"], "source": "api"}
    assert len(row["journal_id"]) <= 32 and row["created_at"]

    # Refused saves journal nothing: a stale version, then the rate limit.
    with pytest.raises(Conflict):
        save(draft_settings, author, {"razao_social": "Velha"}, version=1)
    with pytest.raises(LimitExceeded):
        save(make_settings(draft_settings, checkpoint_rate_limit_per_minute=2), author, {"razao_social": "Três"},
             version=2)
    assert store.journal_length() == 1

    # A drain that dies after its insert, before it removes the rows from the journal: the next writes nothing
    # twice.
    removing = store.journal_remove

    def crash(ids):
        raise ConnectionError("killed between the insert and the removal")

    monkeypatch.setattr(store, "journal_remove", crash)
    with pytest.raises(ConnectionError):
        drafts.drain_audit_journal(draft_settings)
    assert store.journal_length() == 1 and len(saves_in_db(draft_settings)) == 2
    monkeypatch.setattr(store, "journal_remove", removing)
    assert drafts.drain_audit_journal(draft_settings) == 1
    assert store.journal_length() == 0
    rows = saves_in_db(draft_settings)
    assert [e.after["version"] for e in rows] == [1, 2]
    drained = rows[1]
    assert drained.journal_id == row["journal_id"] and drained.actor_id == author.id
    assert drained.created_at.isoformat() == row["created_at"] and rows[0].journal_id is None
    assert audit.insert_journaled(get_engine(draft_settings), [json.dumps(row)]) == 0  # written once


def test_the_trail_drains_the_journal_before_it_is_read(draft_settings, users, store, quiet):
    author = users["autor"]
    save(draft_settings, author, {"razao_social": "Um"}, version=0)
    save(draft_settings, author, {"razao_social": "Dois"}, version=1)
    assert store.journal_length() == 1
    with session_scope(draft_settings) as s:
        events, total = audit.list_events(s, actor=users["admin"], action="draft.save")
        assert total == 2 and sorted(e.after["version"] for e in events) == [1, 2]
    assert store.journal_length() == 0


def test_the_journal_keeps_its_rows_while_the_database_fails(draft_settings, users, store, monkeypatch):
    """The save is answered (the draft and its row are in Redis); the drainer thread keeps trying and writes
    the row once the database works again."""
    from sqlalchemy.exc import OperationalError

    monkeypatch.setattr(drafts, "JOURNAL_DRAIN_SECONDS", 0.02)
    author = users["autor"]
    save(draft_settings, author, {"razao_social": "Um"}, version=0)
    insert = audit.insert_journaled
    failures: list[int] = []

    def down(engine, rows):
        failures.append(len(rows))
        raise OperationalError("INSERT", {}, ConnectionRefusedError("database down"))

    monkeypatch.setattr(audit, "insert_journaled", down)
    state = save(draft_settings, author, {"razao_social": "Durante a queda"}, version=1)
    assert state.version == 2
    deadline = time.monotonic() + 5
    while not failures and time.monotonic() < deadline:
        time.sleep(0.02)
    assert failures and store.journal_length() == 1 and len(saves_in_db(draft_settings)) == 1
    monkeypatch.setattr(audit, "insert_journaled", insert)
    deadline = time.monotonic() + 10  # the thread backs off while it fails: at most a few seconds here
    while len(saves_in_db(draft_settings)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e.after["version"] for e in saves_in_db(draft_settings)] == [1, 2]
    assert store.journal_length() == 0


def test_a_row_the_database_refuses_alone_is_set_aside_and_the_others_are_written(draft_settings, users, store,
                                                                                  quiet):
    author, other = users["autor"], users["outro"]
    for user in (author, other):
        save(draft_settings, user, {"razao_social": "Um"}, version=0)
        save(draft_settings, user, {"razao_social": "Dois"}, version=1)
    client = redis_client(store)
    ((_, entry),) = store.journal_read(100)[-1:]
    forged = entry.decode().replace(f'"actor_id":{other.id}', f'"actor_id":{author.id}')
    assert forged != entry
    client.xadd(store.journal_key, {"r": forged})  # tampered: another author, the signature left as it was
    # Signed, but no row the table can hold (a bug, another release): refused by the database alone.
    not_a_row = '{"not": "an audit row"'
    client.xadd(store.journal_key, {"r": signed(draft_settings, not_a_row)})
    with session_scope(draft_settings) as s:  # an author leaves before the drain
        s.execute(delete(User).where(User.id == other.id))
    assert drafts.drain_audit_journal(draft_settings) == 4
    assert store.journal_length() == 0
    journaled_rows = [e for e in saves_in_db(draft_settings) if e.journal_id]
    assert sorted(((e.actor_id or 0), e.actor_label) for e in journaled_rows) == sorted(
        [(author.id, author.email), (0, other.email)])
    refused = client.hgetall(store.journal_refused_key)
    assert sorted(refused.values()) == sorted([forged, signed(draft_settings, not_a_row)])
    with session_scope(draft_settings) as s:
        reasons = [e.after["reason"] for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "audit.journal_refused").order_by(AuditEvent.id))]
    assert reasons == ["assinatura inválida", "recusada pelo banco de dados"]


def test_a_full_journal_makes_saves_audit_in_the_database_before_they_answer(draft_settings, users, store,
                                                                           quiet, monkeypatch):
    monkeypatch.setattr(draft_stores, "JOURNAL_MAX_ROWS", 1)
    author = users["autor"]
    save(draft_settings, author, {"razao_social": "Um"}, version=0)
    save(draft_settings, author, {"razao_social": "Dois"}, version=1)
    assert store.journal_length() == 1
    save(draft_settings, author, {"razao_social": "Três"}, version=2)
    assert store.journal_length() == 1
    assert [e.after["version"] for e in saves_in_db(draft_settings)] == [1, 3]


def test_the_periodic_sweep_drains_what_a_stopped_process_left(draft_settings, users, store, quiet):
    author = users["autor"]
    save(draft_settings, author, {"razao_social": "Um"}, version=0)
    save(draft_settings, author, {"razao_social": "Dois"}, version=1)
    with session_scope(draft_settings) as s:
        counts = drafts.sweep_expired(s, settings=draft_settings)
    assert counts["audit_journal"] == 1 and store.journal_length() == 0
    assert [e.after["version"] for e in saves_in_db(draft_settings)] == [1, 2]


def test_an_idle_drainer_ends_and_the_next_save_starts_another(draft_settings, users, store, monkeypatch):
    monkeypatch.setattr(drafts, "JOURNAL_DRAIN_SECONDS", 0.02)
    monkeypatch.setattr(drafts, "JOURNAL_IDLE_SECONDS", 0.1)
    author = users["autor"]
    ident = drafts._drainer_key(draft_settings)

    def wait_for(condition) -> bool:
        deadline = time.monotonic() + 5
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        return condition()

    save(draft_settings, author, {"razao_social": "Um"}, version=0)
    save(draft_settings, author, {"razao_social": "Dois"}, version=1)
    first = drafts._drainers.get(ident)
    assert first is not None
    assert wait_for(lambda: len(saves_in_db(draft_settings)) == 2)
    assert wait_for(lambda: ident not in drafts._drainers)
    save(draft_settings, author, {"razao_social": "Três"}, version=2)
    second = drafts._drainers.get(ident)
    assert second is not None and second is not first
    assert wait_for(lambda: len(saves_in_db(draft_settings)) == 3)


def test_a_script_that_exits_at_once_leaves_nothing_in_the_journal(draft_settings, users, store):
    import subprocess
    import sys

    author = users["autor"]
    script = f"""
from engine import drafts
from engine.db import session_scope
from engine.models import User
from engine.settings import Settings, set_settings

drafts.JOURNAL_DRAIN_SECONDS = 3600.0  # no drain but the one at exit
settings = Settings.from_environ()
set_settings(settings)
with session_scope(settings) as s:
    author = s.get(User, {author.id})
    s.expunge(author)
for version, text in enumerate(["Um", "Dois"]):
    with session_scope(settings) as s:
        drafts.save_draft(s, actor=author, form_slug="clientes", object_id="script", version=version,
                          payload={{"data": {{"razao_social": text}}, "step": 0}}, settings=settings)
print(drafts.get_store(settings).journal_length())
"""
    env = {
        "OFICINA_ENV": "test", "SECRET_KEY": draft_settings.secret_key,
        "DATABASE_URL": draft_settings.resolved_database_url, "REDIS_URL": draft_settings.redis_url,
        "QUEUE_NAME": draft_settings.queue_name, "CHECKPOINT_STORAGE": "redis",
        "OFICINA_DATA_DIR": str(draft_settings.data_dir), "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"  # journaled when the script ended
    assert store.journal_length() == 0
    assert [e.after["version"] for e in saves_in_db(draft_settings)] == [1, 2]


def bytes_client(settings: Settings) -> Any:
    """A client of the same Redis that writes and reads bytes as they are (what a tampering hand would use)."""
    import redis

    return redis.Redis.from_url(settings.redis_url)


def signed(settings: Settings, row: str) -> str:
    """A journal entry as a save writes it (``drafts._journal_entry``), for a row written by hand."""
    return drafts.sign(settings.secret_key, row.encode(), purpose=drafts.JOURNAL_PURPOSE) + row


def test_entries_no_drain_can_read_are_set_aside_once_and_never_stop_the_others(draft_settings, users, store,
                                                                              quiet, monkeypatch):
    """An entry without the row field, one whose "signature" is not text, bytes that are not UTF-8: each is
    moved aside once, with one event, even when drains fail meanwhile; the rows after them are written, and
    the drafts sweep goes on."""
    from sqlalchemy.exc import OperationalError

    author = users["autor"]
    save(draft_settings, author, {"razao_social": "Um"}, version=0)
    raw = bytes_client(draft_settings)
    raw.xadd(store.journal_key, {b"x": b"sem campo r"})
    raw.xadd(store.journal_key, {b"r": "ç".encode() * 40 + b"{}"})
    raw.xadd(store.journal_key, {b"r": b"\xff\xfe" * 40})
    save(draft_settings, author, {"razao_social": "Dois"}, version=1)
    assert store.journal_length() == 4
    insert = audit.insert_journaled

    def down(engine, rows):
        raise OperationalError("INSERT", {}, ConnectionRefusedError("database down"))

    monkeypatch.setattr(audit, "insert_journaled", down)
    for _ in range(3):
        with pytest.raises(OperationalError):
            drafts.drain_audit_journal(draft_settings)
    with session_scope(draft_settings) as s:  # the sweep goes on without the journal
        assert drafts.sweep_expired(s, settings=draft_settings)["audit_journal"] == 0
    assert store.journal_length() == 4
    monkeypatch.setattr(audit, "insert_journaled", insert)
    assert drafts.drain_audit_journal(draft_settings) == 4
    assert store.journal_length() == 0
    assert [e.after["version"] for e in saves_in_db(draft_settings)] == [1, 2]
    assert len(raw.hgetall(store.journal_refused_key)) == 3
    with session_scope(draft_settings) as s:
        refused = s.scalars(select(AuditEvent).where(AuditEvent.action == "audit.journal_refused")).all()
    assert len(refused) == 3 and {e.after["reason"] for e in refused} == {"assinatura inválida"}


def test_a_reader_drains_what_other_processes_journaled_and_sees_events_in_time_order(draft_settings, users,
                                                                                    store, quiet):
    author = users["autor"]
    save(draft_settings, author, {"razao_social": "Um"}, version=0)  # written before the answer
    save(draft_settings, author, {"razao_social": "Dois"}, version=1)  # journaled
    save(draft_settings, author, {"razao_social": "Três"}, version=2, step=1)  # a step: written at once
    drafts.stop_drainers()  # as in a process that never saved: nothing of its own to drain
    row = audit.journal_row(actor=author, action="draft.load", entity_type="draft", entity_id="outro-processo")
    bytes_client(draft_settings).xadd(store.journal_key, {b"r": signed(draft_settings, row).encode()})
    with session_scope(draft_settings) as s:
        events, total = audit.list_events(s, actor=users["admin"], entity_type="draft")
    assert store.journal_length() == 0
    assert [(e.action, (e.after or {}).get("version")) for e in events] == [
        ("draft.load", None), ("draft.save", 3), ("draft.save", 2), ("draft.save", 1)]


def test_one_drain_at_a_time_writes_each_row_once_without_gaps(draft_settings, users, store, quiet):
    import threading

    author = users["autor"]
    rows = [audit.journal_row(actor=author, action="draft.save", entity_type="draft", entity_id=f"d{i}",
                              after={"version": i}) for i in range(60)]
    raw = bytes_client(draft_settings)
    for row in rows:
        raw.xadd(store.journal_key, {b"r": signed(draft_settings, row).encode()})
    lease = store.journal_lease(5)
    assert lease is not None
    started = time.monotonic()
    assert drafts.drain_audit_journal(draft_settings, wait=0.3) == 0  # another holds it: left to that one
    assert time.monotonic() - started >= 0.3 and store.journal_length() == 60
    store.journal_release(lease)
    moved: list[int] = []
    threads = [threading.Thread(target=lambda: moved.append(drafts.drain_audit_journal(draft_settings, wait=5)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(moved) == 60 and store.journal_length() == 0
    written = [e for e in saves_in_db(draft_settings) if e.journal_id]
    assert sorted(e.after["version"] for e in written) == list(range(60))
    ids = sorted(e.id for e in written)
    assert ids == list(range(ids[0], ids[0] + 60))  # no insert was repeated (each would take an id)


def test_a_journal_row_is_refused_what_a_database_row_is_refused():
    # The fast encoder would write NaN as null and dates as it likes: such rows go through the standard
    # library, which refuses what no audit row may hold.
    from datetime import UTC, datetime

    row = json.loads(audit.journal_row(actor=None, action="x", after={"version": 1, "texto": "ação"}))
    assert row["after"] == {"version": 1, "texto": "ação"} and datetime.fromisoformat(row["created_at"]).tzinfo
    for bad in ({"n": float("nan")}, {"n": [float("nan")]}, {"n": (1, float("inf"))}, {"n": {"m": float("nan")}}):
        with pytest.raises(ValueError):
            audit.journal_row(actor=None, action="x", after=bad)
    with pytest.raises(TypeError):
        audit.journal_row(actor=None, action="x", after={"quando": datetime.now(UTC).time()})
