"""The audit trail: who did what, when, to which entity, with the state before and after."""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from prometheus_client import Histogram
from sqlalchemy import Connection, Engine, Select, func, insert, select
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


def write_committed(session: Session, **event: Any) -> None:
    """Audit a change that was not made in ``session``'s database (a draft kept in Redis): the row is
    committed in its own transaction before this returns (or, inside ``deferred_commits``, before the
    block's owner answers), in one COPY with the rows other threads are writing at the same moment (group
    commit), so a busy server pays one round trip for many events.

    SQLite has one writer at a time, and the caller may hold it: there the row goes into ``session``'s
    transaction, as ``insert_event`` does."""
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        insert_event(session, **event)
        return
    row = _row(**event)
    row["created_at"] = utcnow()
    _write_grouped(bind.engine, row)


class GroupWriter:
    """A thread that inserts queued audit rows for one database, as many per transaction as are waiting
    (up to ``batch``). Each caller waits for the commit of the batch that holds its row and gets its error
    when the batch fails. The thread ends after ``idle`` seconds without work (a new one starts on demand),
    so disposed engines are not kept alive."""

    def __init__(self, engine: Engine, *, batch: int = 500, idle: float | None = None) -> None:
        self.engine = engine
        self.batch = batch
        self.idle = WRITER_IDLE_SECONDS if idle is None else idle
        self.queue: queue.SimpleQueue[tuple[dict[str, Any], Future[None]]] = queue.SimpleQueue()
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
            try:
                # The connection is kept between batches (no pool check-out and ping each time); in
                # autocommit, the batch's one COPY is atomic on its own and its only round trip.
                if conn is None:
                    conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                _copy_rows(conn, [row for row, _ in pending])
            except BaseException as exc:  # every waiter gets the error; the writer goes on
                if conn is not None:
                    conn.invalidate()
                    conn.close()
                    conn = None
                for _, done in pending:
                    done.set_exception(exc)
            else:
                BATCH_ROWS.observe(len(pending))
                for _, done in pending:
                    done.set_result(None)


_COPY_COLUMNS = ("created_at", "actor_id", "actor_label", "action", "entity_type", "entity_id", "before",
                 "after", "request_id", "source")


def _copy_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert audit rows with one PostgreSQL ``COPY`` (a fifth of the CPU of a multi-row INSERT built by
    SQLAlchemy; SQLite never gets here). JSON columns get the text SQLAlchemy would have sent."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY audit_events ({', '.join(_COPY_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([
                row["created_at"], row["actor_id"], row["actor_label"], row["action"], row["entity_type"],
                row["entity_id"], None if row["before"] is None else json.dumps(row["before"]),
                None if row["after"] is None else json.dumps(row["after"]), row["request_id"], row["source"],
            ])


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


def _write_grouped(engine: Engine, row: dict[str, Any]) -> None:
    done: Future[None] = Future()
    ident = (os.getpid(), engine)  # a forked worker starts its own thread
    with _writers_lock:
        writer = _writers.get(ident)
        if writer is None:
            writer = _writers[ident] = GroupWriter(engine)
        writer.queue.put((row, done))
    waits = _deferred.get()
    if waits is not None:
        waits.append(done)
        return
    done.result(WRITE_TIMEOUT_SECONDS)


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
    filters = dict(action=action, entity_type=entity_type, actor_id=actor_id, since=since, until=until,
                   search=search)
    total = session.scalar(_filtered(select(func.count(AuditEvent.id)), **filters)) or 0
    rows = session.scalars(
        _filtered(select(AuditEvent), **filters).order_by(AuditEvent.id.desc()).offset(offset).limit(limit)
    ).all()
    return list(rows), total


def distinct_actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
