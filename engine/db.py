"""Database engines and sessions.

``session_scope()`` is the one way to open a session: one per user action or per task. It commits when
the block ends without error and rolls back otherwise; services never commit behind their caller's back
unless their name says so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from engine.settings import Settings, get_settings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


MAX_ROW_ID = 2**31 - 1  # ids are INTEGER columns


def is_row_id(value: object) -> bool:
    """Whether ``value`` can be a row's id at all. A larger one, sent by a client, would make the database
    raise (PostgreSQL: integer out of range; SQLite: OverflowError) instead of finding nothing."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ROW_ID


def make_engine(url: str) -> Engine:
    """A new engine for ``url``, with SQLite tuned for concurrent readers and one writer."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _sqlite_savepoint(conn, _name):  # noqa: ANN001
            # pysqlite opens a transaction only before INSERT/UPDATE/DELETE. A SAVEPOINT sent outside one
            # becomes the outermost transaction and its RELEASE commits, so a session rolled back later
            # would keep those rows. Open the real transaction first. (Reads stay outside transactions
            # until the first write, as before: a read snapshot held open would make a later write fail
            # at once with "database is locked" instead of waiting for the busy timeout.)
            dbapi_conn = conn.connection.dbapi_connection
            if not dbapi_conn.in_transaction:
                dbapi_conn.execute("BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def get_engine(settings: Settings | None = None) -> Engine:
    """The shared engine for the settings' database URL (created once per process and URL)."""
    settings = settings or get_settings()
    url = settings.resolved_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                settings.data_dir.mkdir(parents=True, exist_ok=True)
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


# Keyed by the engine itself: an ``id()`` key is reused by a new engine once a disposed one is collected, and
# sessions would silently open on the old database. ``dispose_engines`` forgets them.
_factories: dict[Engine, sessionmaker[Session]] = {}


@contextmanager
def session_scope(settings: Settings | None = None, *, engine: Engine | None = None) -> Iterator[Session]:
    """Open a session, commit on success, roll back on error, always close."""
    engine = engine or get_engine(settings)
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories[engine] = sessionmaker(engine, expire_on_commit=False)
    session = factory()
    try:
        yield session
        if session.in_transaction():  # a session nobody used has nothing to commit (cheap API calls)
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
