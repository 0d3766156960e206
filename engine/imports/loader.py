"""The database side of an import: staging table, sensor lookup, and the set-based merge into the target.

One connection, one transaction: rows are staged (PostgreSQL: ``COPY ... FROM STDIN`` into an UNLOGGED
table created inside the transaction; SQLite: batched inserts into a TEMP table, which takes no lock on the
main database), then merged with a few set-based statements, and committed together with the upload's
status and the audit row. Anything that goes wrong before the commit rolls everything back, so a failed or
cancelled import leaves the target exactly as it was.

PostgreSQL specifics that make the merge fast:
* staged rows arrive sorted by key and deduplicated when the file fitted in one in-memory run, so the
  insert walks the primary-key index in order and no DISTINCT is needed;
* COPY uses the binary format when every staged column has a fixed width (text columns with few distinct
  values, like ``unidade``, travel as dictionary codes), else CSV;
* the target is locked in SHARE ROW EXCLUSIVE mode for the merge only (readers go on; other writers wait),
  which lets new keys be inserted by an anti-join instead of a per-row ``ON CONFLICT`` check;
* upserts only touch rows whose values changed (``IS DISTINCT FROM``), so re-importing a file writes nothing;
* ``SET LOCAL work_mem`` sized to the staged rows keeps sorts and hash joins in memory.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from engine.db import get_engine
from engine.imports.kinds import ImportKind
from engine.models import utcnow
from engine.settings import Settings

log = logging.getLogger(__name__)

MODES = ("insert", "upsert", "replace")
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
COPY_SLICE_ROWS = 65_536
SQLITE_BATCH_ROWS = 50_000
_PG_BINARY_TYPES = {"int4": ">i4", "float8": ">f8", "timestamptz": ">i8"}


@dataclass
class MergeCounts:
    distinct: int = 0
    inserted: int = 0
    updated: int = 0

    def as_dict(self, staged: int) -> dict[str, int]:
        unchanged_or_kept = self.distinct - self.inserted - self.updated
        return {
            "duplicates": staged - self.distinct,
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_merged": self.inserted + self.updated,
            "rows_unchanged": unchanged_or_kept,
        }


class Loader:
    """Base class: ``begin``, ``sensor_ids``, ``stage`` (any number of runs), ``merge``, ``commit`` or
    ``rollback``, ``close``. ``interrupt`` may be called from another thread to stop a running statement."""

    dialect = ""

    def __init__(self, settings: Settings, kind: ImportKind, *, mode: str, owner_id: int | None) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.settings = settings
        self.kind = kind
        self.mode = mode
        self.owner_id = owner_id
        self.stage_table = f"import_stage_{uuid.uuid4().hex[:12]}"
        self.conn: Connection | None = None
        self.staged_rows = 0
        self.runs = 0
        self.sensors_created = 0
        self._sensor_cache: dict[str, int] = {}
        self._dictionaries: dict[str, dict[str, int]] = {c.name: {} for c in kind.stage if c.dictionary}
        self._provisional: dict[str, int] = {}

    # lifecycle
    def begin(self) -> None:
        self.conn = get_engine(self.settings).connect()
        self.conn.begin()
        self._create_stage()

    def commit(self) -> None:
        assert self.conn is not None
        self.conn.commit()

    def rollback(self) -> None:
        if self.conn is not None and self.conn.in_transaction():
            self.conn.rollback()

    def close(self) -> None:
        if self.conn is None:
            return
        try:
            self.rollback()
            if self.dialect == "sqlite":  # TEMP tables outlive transactions on a pooled connection
                self.drop_stage()
                self.conn.commit()
        except Exception:
            log.warning("could not clean up the staging table %s", self.stage_table, exc_info=True)
            self.conn.invalidate()
        finally:
            self.conn.close()
            self.conn = None

    def session(self) -> Session:
        """An ORM session on the import's connection and transaction (for the audit row, the upload...)."""
        return Session(bind=self.conn, join_transaction_mode="create_savepoint")

    def interrupt(self) -> None:
        raise NotImplementedError

    # staging
    def _create_stage(self) -> None:
        raise NotImplementedError

    def stage(self, frame: pl.DataFrame) -> None:
        raise NotImplementedError

    def encode_dictionaries(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Text columns declared ``dictionary`` become 1-based codes of a per-import dictionary."""
        return frame

    # sensors (the leituras kind)
    def sensor_ids(self, codes: list[str]) -> dict[str, int]:
        missing = [c for c in codes if c not in self._sensor_cache]
        if missing:
            self._insert_sensors(missing)
            for start in range(0, len(missing), 500):
                part = missing[start : start + 500]
                rows = self._select_sensors(part)
                self._sensor_cache.update(rows)
        return {c: self._sensor_cache[c] for c in codes}

    def _insert_sensors(self, codes: list[str]) -> None:
        raise NotImplementedError

    def _select_sensors(self, codes: list[str]) -> dict[str, int]:
        raise NotImplementedError

    # merging
    def _params(self) -> dict[str, Any]:
        now = utcnow()
        return {"now": now, "owner_id": self.owner_id, "empty_object": "{}", "empty_list": "[]"}

    def _column_expr(self, name: str, alias: str = "s") -> str:
        return f"{alias}.{name}"

    def _distinct(self, a: str, b: str) -> str:
        raise NotImplementedError

    def _dedupe(self) -> tuple[str, int]:
        raise NotImplementedError

    def _lock_target(self) -> None:
        return None

    def _prepare_merge(self) -> None:
        return None

    def merge(self, *, mapped: set[str]) -> MergeCounts:
        """Merge the staged rows into the target according to the mode; returns the counts."""
        assert self.conn is not None
        kind = self.kind
        self._prepare_merge()
        source, distinct = self._dedupe()
        self._lock_target()
        params = self._params()
        key_match = " AND ".join(f"t.{k} = s.{k}" for k in kind.key)
        counts = MergeCounts(distinct=distinct)
        if self.mode in ("upsert", "replace"):
            columns = [c for c in kind.data_columns if self.mode == "replace" or c in mapped]
            if columns:
                sets = [f"{c} = {self._column_expr(c)}" for c in columns]
                sets += [f"{c} = {expr}" for c, expr in kind.update_extra.items()]
                changed = " OR ".join(self._distinct(f"t.{c}", self._column_expr(c)) for c in columns)
                sql = (
                    f"UPDATE {kind.table} AS t SET {', '.join(sets)} FROM {source} AS s "
                    f"WHERE {key_match} AND ({changed})"
                )
                counts.updated = self.conn.execute(text(self._fix_update(sql)), params).rowcount
        insert_cols = [*kind.key, *kind.data_columns, *kind.insert_extra]
        select_cols = [
            *(f"s.{k}" for k in kind.key),
            *(self._column_expr(c) for c in kind.data_columns),
            *(self._cast_extra(c, e) for c, e in kind.insert_extra.items()),
        ]
        order = ", ".join(f"s.{k}" for k in kind.key)
        sql = (
            f"INSERT INTO {kind.table} ({', '.join(insert_cols)}) SELECT {', '.join(select_cols)} "
            f"FROM {source} AS s WHERE NOT EXISTS (SELECT 1 FROM {kind.table} AS t WHERE {key_match}) "
            f"ORDER BY {order}"
        )
        counts.inserted = self.conn.execute(text(sql), params).rowcount
        return counts

    def _fix_update(self, sql: str) -> str:
        return sql

    def _cast_extra(self, column: str, expr: str) -> str:
        return expr

    def drop_stage(self) -> None:
        return None


class PostgresLoader(Loader):
    dialect = "postgresql"

    def _raw(self) -> Any:
        assert self.conn is not None
        return self.conn.connection.driver_connection

    def interrupt(self) -> None:
        raw = self._raw()
        cancel = getattr(raw, "cancel_safe", None) or raw.cancel
        cancel()

    def _create_stage(self) -> None:
        assert self.conn is not None
        cols = ", ".join(f"{c.name} {'int4' if c.dictionary else c.type}" for c in self.kind.stage)
        # UNLOGGED and created inside the transaction: no WAL for staged rows, gone on rollback.
        self.conn.execute(
            text(f"CREATE UNLOGGED TABLE {self.stage_table} ({cols}) WITH (autovacuum_enabled = false)")
        )

    def encode_dictionaries(self, frame: pl.DataFrame) -> pl.DataFrame:
        for name, dictionary in self._dictionaries.items():
            for value in frame[name].unique().to_list():
                if value not in dictionary:
                    dictionary[value] = len(dictionary) + 1
            mapping = pl.DataFrame(
                {name: list(dictionary), "__code": list(dictionary.values())},
                schema={name: pl.String, "__code": pl.Int32},
            )
            frame = (
                frame.join(mapping, on=name, how="left", maintain_order="left")
                .drop(name)
                .rename({"__code": name})
            )
        return frame.select([c.name for c in self.kind.stage])

    def _binary(self) -> bool:
        return all(c.dictionary or c.type in _PG_BINARY_TYPES for c in self.kind.stage)

    def stage(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        raw = self._raw()
        columns = [c.name for c in self.kind.stage]
        with raw.cursor() as cur:
            if self._binary():
                with cur.copy(
                    f"COPY {self.stage_table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
                    for start in range(0, frame.height, COPY_SLICE_ROWS):
                        cp.write(self._binary_rows(frame.slice(start, COPY_SLICE_ROWS)))
                    cp.write(b"\xff\xff")
            else:
                texts = [c.name for c in self.kind.stage if c.type == "text"]
                force = f", FORCE_NOT_NULL ({', '.join(texts)})" if texts else ""
                with cur.copy(
                    f"COPY {self.stage_table} ({', '.join(columns)}) FROM STDIN (FORMAT CSV{force})"
                ) as cp:
                    for start in range(0, frame.height, COPY_SLICE_ROWS):
                        part = frame.slice(start, COPY_SLICE_ROWS).select(columns)
                        cp.write(part.write_csv(include_header=False, quote_style="necessary").encode())
        self.staged_rows += frame.height
        self.runs += 1

    def _binary_rows(self, frame: pl.DataFrame) -> bytes:
        fields: list[tuple[str, str]] = [("count", ">i2")]
        for c in self.kind.stage:
            fields += [
                (f"{c.name}__len", ">i4"),
                (c.name, ">i4" if c.dictionary else _PG_BINARY_TYPES[c.type]),
            ]
        rows = np.empty(frame.height, dtype=np.dtype(fields))
        rows["count"] = len(self.kind.stage)
        for c in self.kind.stage:
            series = frame[c.name]
            if c.type == "timestamptz" and not c.dictionary:
                data = series.dt.epoch("us").to_numpy() - PG_EPOCH_US
            else:
                data = series.to_numpy()
            rows[c.name] = data
            rows[f"{c.name}__len"] = rows.dtype.fields[c.name][0].itemsize
        return rows.tobytes()

    def _insert_sensors(self, codes: list[str]) -> None:
        assert self.conn is not None
        result = self.conn.execute(
            text(
                "INSERT INTO sensores (codigo, nome, created_at) SELECT c, '', :now "
                "FROM unnest(CAST(:codes AS text[])) "
                "AS c ON CONFLICT (codigo) DO NOTHING"
            ),
            {"codes": codes, "now": utcnow()},
        )
        self.sensors_created += result.rowcount

    def _select_sensors(self, codes: list[str]) -> dict[str, int]:
        assert self.conn is not None
        rows = self.conn.execute(
            text("SELECT codigo, id FROM sensores WHERE codigo = ANY(CAST(:codes AS text[]))"),
            {"codes": codes},
        )
        return {codigo: sid for codigo, sid in rows}

    def _prepare_merge(self) -> None:
        assert self.conn is not None
        row_bytes = 64 + 40 * len(self.kind.stage)
        megabytes = min(1024, max(64, self.staged_rows * row_bytes * 2 // 2**20))
        self.conn.execute(text(f"SET LOCAL work_mem = '{int(megabytes)}MB'"))
        self.conn.execute(text(f"ANALYZE {self.stage_table}"))

    def _dedupe(self) -> tuple[str, int]:
        assert self.conn is not None
        if self.runs <= 1:
            return self.stage_table, self.staged_rows  # deduplicated and sorted in memory already
        key = ", ".join(self.kind.key)
        deduped = f"{self.stage_table}_d"
        result = self.conn.execute(
            text(
                f"CREATE UNLOGGED TABLE {deduped} WITH (autovacuum_enabled = false) AS "
                f"SELECT DISTINCT ON ({key}) * FROM {self.stage_table} ORDER BY {key}, line DESC"
            )
        )
        self.conn.execute(text(f"ANALYZE {deduped}"))
        return deduped, result.rowcount

    def drop_stage(self) -> None:
        # Created inside the transaction: a rollback removes it, a commit would keep it.
        assert self.conn is not None
        self.conn.execute(text(f"DROP TABLE IF EXISTS {self.stage_table}, {self.stage_table}_d"))

    def _lock_target(self) -> None:
        assert self.conn is not None
        self.conn.execute(text(f"LOCK TABLE {self.kind.table} IN SHARE ROW EXCLUSIVE MODE"))

    def _column_expr(self, name: str, alias: str = "s") -> str:
        if name in self._dictionaries:
            return f"(CAST(:dict_{name} AS text[]))[{alias}.{name}]"
        return f"{alias}.{name}"

    def _params(self) -> dict[str, Any]:
        params = super()._params()
        for name, dictionary in self._dictionaries.items():
            params[f"dict_{name}"] = list(dictionary)
        return params

    def _cast_extra(self, column: str, expr: str) -> str:
        if expr in (":empty_object", ":empty_list"):
            return f"CAST({expr} AS jsonb)"
        return expr

    def _distinct(self, a: str, b: str) -> str:
        return f"{a} IS DISTINCT FROM {b}"


class SqliteLoader(Loader):
    dialect = "sqlite"

    def interrupt(self) -> None:
        assert self.conn is not None
        self.conn.connection.driver_connection.interrupt()

    def _create_stage(self) -> None:
        assert self.conn is not None
        types = {"int4": "INTEGER", "float8": "REAL", "timestamptz": "TEXT", "text": "TEXT"}
        cols = ", ".join(f"{c.name} {types[c.type]}" for c in self.kind.stage)
        # A TEMP table lives in SQLite's temp database: staging takes no lock on the main database file.
        self.conn.execute(text(f"CREATE TEMP TABLE {self.stage_table} ({cols})"))

    def stage(self, frame: pl.DataFrame) -> None:
        assert self.conn is not None
        if frame.height == 0:
            return
        columns = [c.name for c in self.kind.stage]
        exprs = []
        for c in self.kind.stage:
            if c.type == "timestamptz":  # the text SQLAlchemy stores for UTCDateTime on SQLite
                exprs.append(pl.col(c.name).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%6f"))
            else:
                exprs.append(pl.col(c.name))
        rows = frame.select(exprs)
        placeholders = ", ".join("?" for _ in columns)
        raw = self.conn.connection.driver_connection
        sql = f"INSERT INTO {self.stage_table} ({', '.join(columns)}) VALUES ({placeholders})"
        for start in range(0, rows.height, SQLITE_BATCH_ROWS):
            raw.executemany(sql, rows.slice(start, SQLITE_BATCH_ROWS).iter_rows())
        self.staged_rows += frame.height
        self.runs += 1

    # Creating sensors would take SQLite's write lock for the whole staging (and block the job's progress
    # writes): unknown codes get provisional negative ids, made real in the merge transaction.
    def _insert_sensors(self, codes: list[str]) -> None:
        return None

    def _select_sensors(self, codes: list[str]) -> dict[str, int]:
        assert self.conn is not None
        marks = ", ".join("?" for _ in codes)
        raw = self.conn.connection.driver_connection
        found = {
            codigo: sid
            for codigo, sid in raw.execute(
                f"SELECT codigo, id FROM sensores WHERE codigo IN ({marks})", codes
            )
        }
        for code in codes:
            if code not in found:
                found[code] = self._provisional[code] = -(len(self._provisional) + 1)
        return found

    def _prepare_merge(self) -> None:
        if not self._provisional:
            return
        raw = self.conn.connection.driver_connection  # type: ignore[union-attr]
        now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
        before = raw.total_changes
        raw.executemany(
            "INSERT OR IGNORE INTO sensores (codigo, nome, created_at) VALUES (?, '', ?)",
            [(c, now) for c in self._provisional],
        )
        self.sensors_created += raw.total_changes - before
        mapping = f"{self.stage_table}_s"
        raw.execute(f"CREATE TEMP TABLE {mapping} (provisional INTEGER PRIMARY KEY, id INTEGER)")
        codes = list(self._provisional)
        for start in range(0, len(codes), 500):
            part = codes[start : start + 500]
            marks = ", ".join("?" for _ in part)
            rows = raw.execute(f"SELECT codigo, id FROM sensores WHERE codigo IN ({marks})", part).fetchall()
            raw.executemany(
                f"INSERT INTO {mapping} VALUES (?, ?)", [(self._provisional[c], i) for c, i in rows]
            )
        raw.execute(
            f"UPDATE {self.stage_table} SET sensor_id = m.id FROM {mapping} AS m "
            f"WHERE {self.stage_table}.sensor_id = m.provisional"
        )

    def _dedupe(self) -> tuple[str, int]:
        assert self.conn is not None
        if self.runs <= 1:
            return self.stage_table, self.staged_rows
        key = ", ".join(self.kind.key)
        cols = ", ".join(c.name for c in self.kind.stage)
        deduped = f"{self.stage_table}_d"
        self.conn.execute(
            text(
                f"CREATE TEMP TABLE {deduped} AS SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER "
                f"(PARTITION BY {key} ORDER BY line DESC) AS rn FROM {self.stage_table}) "
                f"WHERE rn = 1 ORDER BY {key}"
            )
        )
        distinct = self.conn.execute(text(f"SELECT count(*) FROM {deduped}")).scalar_one()
        return deduped, int(distinct)

    def _params(self) -> dict[str, Any]:
        params = super()._params()
        params["now"] = params["now"].strftime("%Y-%m-%d %H:%M:%S.%f")
        return params

    def _distinct(self, a: str, b: str) -> str:
        return f"{a} IS NOT {b}"

    def drop_stage(self) -> None:
        if self.conn is None:
            return
        for suffix in ("", "_d", "_s"):
            self.conn.execute(text(f"DROP TABLE IF EXISTS temp.{self.stage_table}{suffix}"))


def make_loader(settings: Settings, kind: ImportKind, *, mode: str, owner_id: int | None) -> Loader:
    cls = PostgresLoader if settings.is_postgres else SqliteLoader
    return cls(settings, kind, mode=mode, owner_id=owner_id)


class CancelWatcher(threading.Thread):
    """While a long statement runs, polls ``should_cancel`` and interrupts the statement when it says so."""

    def __init__(self, loader: Loader, should_cancel: Any, interval: float = 0.5) -> None:
        super().__init__(name="import-cancel-watcher", daemon=True)
        self.loader = loader
        self.should_cancel = should_cancel
        self.interval = interval
        self.stopped = threading.Event()
        self.fired = False

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if self.should_cancel():
                    self.fired = True
                    self.loader.interrupt()
                    return
            except Exception:  # a failed poll must not kill the import
                log.warning("cancel poll failed", exc_info=True)

    def __enter__(self) -> CancelWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.join(timeout=5)


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, ensure_ascii=False)
