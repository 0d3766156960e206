"""Throwaway PostgreSQL databases for the test suite and the benchmarks: created empty on the server named by
``TEST_PG_ADMIN_URL`` (a URL of an existing database, used only to create and drop), dropped after, together
with any connection still open to them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def throwaway_database(prefix: str = "oficina_test", *, admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new empty database ``{prefix}_{random}``; yields its URL and drops it when the block ends."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
