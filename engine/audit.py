"""The audit trail: who did what, when, to which entity, with the state before and after."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any

import orjson
import psycopg
from prometheus_client import Histogram
from sqlalchemy import Connection, Engine, Select, Table, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.context import current_request_id
from engine.metrics import REGISTRY as METRICS_REGISTRY
from engine.models import AuditEvent, utcnow
from engine.security import require

BATCH_ROWS = Histogram(
    "oficina_audit_batch_rows", "Audit rows written per group commit (write_committed).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 500), registry=METRICS_REGISTRY,
)


def _row(*, actor: Any, action: str, entity_type: str = "", entity_id: str | int = "",
         before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
         source: str = "") -> dict[str, Any]:
    return {
        "actor_id": getattr(actor, "id", None),
        "actor_label": getattr(actor, "email", str(actor)) if actor is not None else "anônimo",
        "action": action,
        "entity_type": entity_type,
        "entity_id": str(entity_id),
        "before": before,
        "after": after,
        "request_id": current_request_id(),
        "source": source,
        "journal_id": None,
    }


def record(
    session: Session,
    *,
    actor: Any,
    action: str,
    entity_type: str = "",
    entity_id: str | int = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    source: str = "",
) -> AuditEvent:
    """Add an audit row to ``session`` (committed with the change it describes)."""
    event = AuditEvent(**_row(actor=actor, action=action, entity_type=entity_type, entity_id=entity_id,
                              before=before, after=after, source=source))
    session.add(event)
    return event


def insert_event(session: Session, **event: Any) -> None:
    """The row ``record`` adds (``event``: its keywords), written at once with a Core INSERT in the caller's
    transaction: for hot paths where the unit-of-work flush costs more than the work it audits (draft saves)."""
    session.execute(insert(AuditEvent), [_row(**event)])


Entry = list[tuple[Table, str]]  # one caller's rows, as their JSON objects, committed together


def write_committed(session: Session, *, together: Sequence[tuple[Table, dict[str, Any]]] = (),
                    **event: Any) -> None:
    """Audit a change that was not made in ``session``'s database (a draft kept in Redis): the row is
    committed in its own transaction before this returns (or, inside ``deferred_commits``, before the
    block's owner answers), in one statement with the rows other threads are writing at the same moment (group
    commit), so a busy server pays one round trip for many events.

    ``together``: rows of other tables (a draft's durable version) committed in the same transaction as this
    audit row, all or none; they carry every column of their table but its generated key, ``created_at``
    included.

    SQLite has one writer at a time, and the caller may hold it: there the rows go into ``session``'s
    transaction, as ``insert_event`` does."""
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        for table, extra in together:
            session.execute(insert(table), [extra])
        insert_event(session, **event)
        return
    row = _row(**event)
    row["created_at"] = utcnow()
    rows = [*together, (AuditEvent.__table__, row)]
    _write_grouped(bind.engine, [(table, _row_json(table, extra)) for table, extra in rows])


class GroupWriter:
    """A thread that inserts queued audit rows for one database, as many per transaction as are waiting
    (up to ``batch``). Each caller waits for the commit of the batch that holds its row and gets its error
    when the batch fails. The thread ends after ``idle`` seconds without work (a new one starts on demand),
    so disposed engines are not kept alive."""

    def __init__(self, engine: Engine, *, batch: int = 500, idle: float | None = None) -> None:
        self.engine = engine
        self.batch = batch
        self.idle = WRITER_IDLE_SECONDS if idle is None else idle
        self.queue: queue.SimpleQueue[tuple[Entry, Future[None]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="audit-writer", daemon=True).start()

    def _run(self) -> None:
        conn: Connection | None = None
        while True:
            try:
                pending = [self.queue.get(timeout=self.idle)]
            except queue.Empty:
                with _writers_lock:  # nobody can enqueue while we check and leave
                    if self.queue.empty():
                        _writers.pop((os.getpid(), self.engine), None)
                        if conn is not None:
                            conn.close()
                        return
                continue
            while len(pending) < self.batch:
                try:
                    pending.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            conn, error = self._commit(conn, pending)
            if error is None:
                BATCH_ROWS.observe(len(pending))
                for _, done in pending:
                    done.set_result(None)
            elif len(pending) > 1 and _refused(error):
                # One caller's bad row (a user deleted meanwhile, a value too long) must not fail the others
                # of its batch, which was rolled back: each is written alone, and only what fails on its own
                # reports an error. Anything else that fails meanwhile fails the rest at once.
                for i, entry in enumerate(pending):
                    conn, error = self._commit(conn, [entry])
                    if error is None:
                        BATCH_ROWS.observe(1)
                        entry[1].set_result(None)
                        continue
                    entry[1].set_exception(error)
                    if not _refused(error):
                        for _, done in pending[i + 1:]:
                            done.set_exception(error)
                        break
            else:
                # A caller alone in its batch, or not a refusal: a lost connection (whose batch may or may not
                # have been committed: writing it again could double it), a timeout, the database down. Every
                # caller gets the error.
                for _, done in pending:
                    done.set_exception(error)

    def _commit(self, conn: Connection | None,
                pending: list[tuple[Entry, Future[None]]]) -> tuple[Connection | None, BaseException | None]:
        """Write the entries of ``pending`` in one transaction: (the connection to keep, None) or, after a
        failure, (the connection to keep, the error): None after anything but a refused row."""
        try:
            # The connection is kept between batches (no pool check-out and ping each time); in
            # autocommit, a batch is one statement, atomic on its own and its only round trip.
            if conn is None:
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            _insert_batch(conn, [entry for entry, _ in pending])
        except BaseException as exc:  # the callers get the error; the writer goes on
            if conn is not None and _refused(exc):
                return conn, exc  # rolled back, and the connection is idle again
            if conn is not None:
                conn.invalidate()
                conn.close()
            return None, exc
        return conn, None


#: What the database raises when it refuses a row (bad data, a broken constraint), the transaction rolled back.
REFUSED = (psycopg.DataError, psycopg.IntegrityError, sa_exc.DataError, sa_exc.IntegrityError)


def _refused(error: BaseException) -> bool:
    """The database refused a row (bad data, a broken constraint) and rolled its transaction back."""
    return isinstance(error, REFUSED)


@functools.cache
def _columns(table: Table) -> tuple[str, ...]:
    """The columns a batch fills: all of ``table``'s but its generated key."""
    return tuple(c.name for c in table.columns if c is not table.autoincrement_column)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@functools.cache
def _insert_statement(tables: tuple[Table, ...]) -> str:
    """One statement inserting the rows of each of ``tables`` from one JSON array parameter per table (in
    order): ``json_populate_recordset`` reads the array as rows of the table's own type, so every value is
    converted and checked (length, range, foreign keys) as a plain INSERT would. Several tables are
    data-modifying CTEs of the one statement, so a batch is one prepared statement and, even in autocommit, all
    or none."""
    inserts = []
    for table in tables:
        columns = ", ".join(_quoted(c) for c in _columns(table))
        inserts.append(f"INSERT INTO {_quoted(table.name)} ({columns}) SELECT {columns} "
                       f"FROM json_populate_recordset(NULL::{_quoted(table.name)}, %s::json)")
    *first, last = inserts
    return "".join(f"{'WITH' if i == 0 else ','} w{i} AS ({sql}) " for i, sql in enumerate(first)) + last


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} não cabe numa linha de auditoria")


def _row_json(table: Table, row: dict[str, Any]) -> str:
    """``row`` as the JSON object its batch sends, encoded by its caller, so that a value JSON cannot hold (NaN,
    an unknown type) fails that caller alone. Rows must carry every column of ``_columns``: a missing one would
    be written as NULL."""
    missing = [c for c in _columns(table) if c not in row]
    if missing:
        raise ValueError(f"Linha de {table.name} sem as colunas {', '.join(missing)}.")
    return json.dumps(row, default=_json_default, allow_nan=False, separators=(",", ":"))


def _insert_batch(conn: Connection, entries: list[Entry]) -> None:
    """Insert the rows of ``entries`` with one statement (``_insert_statement``): a third of the CPU of a
    ``COPY`` per table, which costs two round trips through the driver's protocol machinery whatever the batch
    size (SQLite never gets here)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    tables: dict[Table, list[str]] = {}
    for entry in entries:
        for table, encoded in entry:
            tables.setdefault(table, []).append(encoded)
    raw.execute(_insert_statement(tuple(tables)), [f"[{','.join(rows)}]" for rows in tables.values()],
                prepare=True)


WRITER_IDLE_SECONDS = 30.0
_writers: dict[tuple[int, Engine], GroupWriter] = {}
_writers_lock = threading.Lock()
WRITE_TIMEOUT_SECONDS = 30.0


_deferred: ContextVar[list[Future[None]] | None] = ContextVar("audit_deferred", default=None)


@contextmanager
def deferred_commits(into: list[Future[None]] | None = None) -> Iterator[list[Future[None]]]:
    """Inside this block ``write_committed`` queues its row and returns at once; the futures of those
    commits are collected in the list it yields. Whoever opens the block must wait for all of them before
    telling anyone the change was made: the API does so on its event loop, so the worker thread is free
    while the batch commits. ``into``: the list to fill (a new one by default)."""
    waits: list[Future[None]] = [] if into is None else into
    token = _deferred.set(waits)
    try:
        yield waits
    finally:
        _deferred.reset(token)


def _write_grouped(engine: Engine, entry: Entry) -> None:
    done: Future[None] = Future()
    ident = (os.getpid(), engine)  # a forked worker starts its own thread
    with _writers_lock:
        writer = _writers.get(ident)
        if writer is None:
            writer = _writers[ident] = GroupWriter(engine)
        writer.queue.put((entry, done))
    waits = _deferred.get()
    if waits is not None:
        waits.append(done)
        return
    done.result(WRITE_TIMEOUT_SECONDS)


# Journaled rows ----------------------------------------------------------------------------------------
#
# A change kept outside the database (a draft in Redis) can carry its audit row into the same atomic write (the
# store's script appends it to a journal, a Redis stream), so the row exists exactly when the change does and
# the caller waits for no database commit. Drainers move journaled rows into ``audit_events``; each row carries a
# ``journal_id`` of its own, unique in the table, so a drain repeated after a crash or run by two processes at
# once writes every row once. Readers of the trail (``list_events``) drain first: they see every row journaled
# before they asked.

log = logging.getLogger("oficina.audit")


def _new_journal_ids() -> None:
    global _journal_prefix, _journal_count
    _journal_prefix, _journal_count = os.urandom(8).hex(), itertools.count(1)


_new_journal_ids()
os.register_at_fork(after_in_child=_new_journal_ids)  # a forked worker never repeats its parent's ids


def journal_row(*, journal_id: str | None = None, **event: Any) -> str:
    """The JSON of the audit row ``record`` would add (``event``: its keywords), stamped now and with
    ``journal_id`` (by default a new one: 64 random bits of this process, then a counter, unique without a
    system call each): what a journal keeps until it is drained with ``insert_journaled``."""
    row = _row(**event)
    row["created_at"] = utcnow()
    row["journal_id"] = journal_id or f"{_journal_prefix}{next(_journal_count):x}"
    if _plain(row["before"]) and _plain(row["after"]):
        try:  # orjson writes these rows as the standard library does (datetimes as isoformat), 5x faster
            return orjson.dumps(row, option=orjson.OPT_PASSTHROUGH_SUBCLASS).decode()
        except TypeError:
            pass
    return _row_json(AuditEvent.__table__, row)


_PLAIN = (str, int, bool, type(None))


def _plain(state: dict[str, Any] | None) -> bool:
    """``state`` holds only texts, integers, booleans, nulls and finite floats (exact types), which orjson writes
    as the standard library does; anything else (NaN, nested values, dates, subclasses) goes through the standard
    library and its refusals."""
    return state is None or all(
        type(v) in _PLAIN or (type(v) is float and math.isfinite(v)) for v in state.values())


def _decoded(encoded: str) -> dict[str, Any]:
    row = json.loads(encoded)
    row["created_at"] = datetime.fromisoformat(row["created_at"])
    return row


def insert_journaled(engine: Engine, rows: Sequence[str]) -> int:
    """Commit journaled rows (``journal_row``'s JSON) in one statement, skipping those already written.
    Returns how many were new."""
    if not rows:
        return 0
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            raw = conn.connection.driver_connection
            assert raw is not None
            statement = _insert_statement((AuditEvent.__table__,)) + " ON CONFLICT (journal_id) DO NOTHING"
            written = raw.execute(statement, [f"[{','.join(rows)}]"], prepare=True).rowcount
            raw.commit()
            return written
        statement = sqlite_insert(AuditEvent).on_conflict_do_nothing(index_elements=["journal_id"])
        written = conn.execute(statement, [_decoded(r) for r in rows]).rowcount
        conn.commit()
        return written


JournalSource = Callable[[Engine], int]
_journal_sources: list[JournalSource] = []


def add_journal_source(drain: JournalSource) -> None:
    """Register ``drain(engine)``: moves the rows journaled for ``engine``'s database into it and returns how
    many (the drafts module registers the draft store's journal). ``list_events`` runs every source first."""
    if drain not in _journal_sources:
        _journal_sources.append(drain)


def flush_journals(engine: Engine) -> int:
    """Drain every journal source for ``engine``'s database; one that cannot be drained now (Redis down) is
    logged and skipped: the trail is then shown without its rows, which stay journaled."""
    total = 0
    for drain in list(_journal_sources):
        try:
            total += drain(engine)
        except Exception:
            log.warning("audit journal not drained", exc_info=True)
    return total


def _filtered(query: Select, *, action: str | None, entity_type: str | None, actor_id: int | None,
              since: datetime | None, until: datetime | None, search: str | None) -> Select:
    if action:
        query = query.where(AuditEvent.action == action)
    if entity_type:
        query = query.where(AuditEvent.entity_type == entity_type)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    if until is not None:
        query = query.where(AuditEvent.created_at < until)
    if search:
        like = f"%{search}%"
        query = query.where(AuditEvent.entity_id.ilike(like) | AuditEvent.actor_label.ilike(like))
    return query


def list_events(
    session: Session,
    *,
    actor: Any,
    action: str | None = None,
    entity_type: str | None = None,
    actor_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[AuditEvent], int]:
    """A page of audit events, newest first, and the total that match."""
    require(actor, "audit.view")
    flush_journals(session.get_bind().engine)
    filters = dict(action=action, entity_type=entity_type, actor_id=actor_id, since=since, until=until,
                   search=search)
    total = session.scalar(_filtered(select(func.count(AuditEvent.id)), **filters)) or 0
    rows = session.scalars(
        # By the time of the event: a journaled row gets its id when it is drained, after rows written since.
        _filtered(select(AuditEvent), **filters).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .offset(offset).limit(limit)
    ).all()
    return list(rows), total


def distinct_actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
