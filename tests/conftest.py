"""Shared fixtures: settings over a temporary data dir, a throwaway PostgreSQL database per test session,
Redis, and a migrated database of each kind.

PostgreSQL and Redis must be reachable: a missing service fails the run (it never skips), so CI cannot
go green without the real services. Each test session creates its own PostgreSQL database, so several
runs can share one server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from engine import queue as queue_port
from engine.db import dispose_engines, get_engine
from engine.migrate import upgrade
from engine.models import Base
from engine.settings import Settings, set_settings
from tests.databases import PG_ADMIN_URL, throwaway_database

# The running server, worker and Chromium of the browser tests (fixtures ``oficina`` and ``browser``).
pytest_plugins = ["tests.stack"]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


def base_environ(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {"OFICINA_ENV": "test", "SECRET_KEY": TEST_SECRET, "OFICINA_DATA_DIR": str(data_dir),
           "LOG_JSON": "false"}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated, dropped at the end."""
    database = throwaway_database("oficina_test")
    try:
        url = database.__enter__()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL}: {exc}", pytrace=False)
    try:
        upgrade(Settings.from_environ(base_environ(Path("/tmp"), DATABASE_URL=url)))
        yield url
        dispose_engines()
    finally:
        database.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"Redis is required at {REDIS_URL}: {exc}", pytrace=False)
    return REDIS_URL


def _truncate_all(url: str) -> None:
    engine = get_engine(Settings.from_environ(base_environ(Path("/tmp"), DATABASE_URL=url)))
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings.from_environ(base_environ(tmp_path / "var"))
    upgrade(settings)
    set_settings(settings)
    yield settings
    set_settings(None)


@pytest.fixture
def pg_settings(tmp_path: Path, pg_url: str) -> Iterator[Settings]:
    _truncate_all(pg_url)
    settings = Settings.from_environ(base_environ(tmp_path / "var", DATABASE_URL=pg_url))
    set_settings(settings)
    yield settings
    set_settings(None)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Migrated settings on each database kind (tests using it run twice)."""
    name = "sqlite_settings" if request.param == "sqlite" else "pg_settings"
    return request.getfixturevalue(name)


@pytest.fixture
def inline_queue(settings: Settings) -> Iterator[queue_port.InlineQueue]:
    q = queue_port.InlineQueue(settings)
    queue_port.install(q)
    yield q
    queue_port.install(None)


@pytest.fixture
def recording_queue() -> Iterator[queue_port.RecordingQueue]:
    q = queue_port.RecordingQueue()
    queue_port.install(q)
    yield q
    queue_port.install(None)
