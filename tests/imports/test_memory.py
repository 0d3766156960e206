"""Bounded memory while importing: rows are held as at most one run, the in-memory sort keeps the last
occurrence of each key whichever path it takes, and polars' allocator setting reaches every import process."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from engine.imports import allocator, reader, service
from engine.imports.kinds import CLIENTES, LEITURAS
from engine.settings import Settings
from tests.imports.conftest import Importer, leituras_rows, write

ROOT = Path(__file__).resolve().parents[2]


def staged_frame(rows: list[tuple[int, int, datetime, float]]) -> pl.DataFrame:
    """Rows in the leituras staging shape: (line, sensor_id, ts, valor); unidade is code 1."""
    return pl.DataFrame(
        {
            "line": [r[0] for r in rows],
            "sensor_id": [r[1] for r in rows],
            "ts": [r[2] for r in rows],
            "valor": [r[3] for r in rows],
            "unidade": [1] * len(rows),
        },
        schema={
            "line": pl.Int32,
            "sensor_id": pl.Int32,
            "ts": pl.Datetime("us", "UTC"),
            "valor": pl.Float64,
            "unidade": pl.Int32,
        },
    )


T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "sensors, start",
    [
        ((3, 1, 2), T0),  # ids and instants fit one int64 key: the numpy path
        ((-3, -1, -2), T0),  # SQLite's provisional ids are negative
        ((2**31 - 1, 1, 2**31 - 2), datetime(1, 1, 2, tzinfo=UTC)),  # too wide for one int64: polars sort
    ],
)
def test_sorting_a_run_keeps_the_last_occurrence_of_each_key_in_key_order(
    sensors: tuple[int, int, int], start: datetime
) -> None:
    a, b, c = sensors
    late = datetime(9000, 1, 1, tzinfo=UTC) if start.year == 1 else T0 + timedelta(days=1)
    first = staged_frame([(2, a, late, 1.0), (3, b, start, 2.0), (4, a, late, 3.0)])
    second = staged_frame([(5, c, start, 4.0), (6, b, start, 5.0), (7, a, start, 6.0), (8, a, late, 7.0)])
    frames = [first, second]
    result = service._sort_and_dedupe(LEITURAS, frames)
    assert frames == []  # the run gave its batches up
    assert result.columns == [c.name for c in LEITURAS.stage]
    got = list(zip(result["sensor_id"], result["ts"], result["line"], result["valor"], strict=True))
    expected = sorted(
        [(a, start, 7, 6.0), (a, late, 8, 7.0), (b, start, 6, 5.0), (c, start, 5, 4.0)],
        key=lambda r: (r[0], r[1]),
    )
    assert got == expected


def test_sorting_a_run_with_a_text_key_keeps_the_last_occurrence() -> None:
    frame = pl.DataFrame(
        {"line": [2, 3, 4, 5], "cnpj": ["b", "a", "b", "a"], "razao_social": ["1", "2", "3", "4"]},
        schema={"line": pl.Int32, "cnpj": pl.String, "razao_social": pl.String},
    )
    result = service._sort_and_dedupe(CLIENTES, [frame.head(2), frame.tail(2)])
    assert result.rows() == [(5, "a", "4"), (4, "b", "3")]


def test_a_file_bigger_than_one_run_is_staged_in_bounded_sorted_runs(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    monkeypatch.setattr(reader, "CHUNK_BYTES", 2048)
    monkeypatch.setattr(service, "RUN_BUDGET_BYTES", 6000)
    monkeypatch.setattr(service, "SPILL_RUN_BYTES", 3000)
    batches: list[int] = []  # estimated size of each validated batch
    runs: list[tuple[int, pl.DataFrame]] = []  # (bytes of the batches it joined, the sorted run)
    real_add, real_sort = service._Run.add, service._sort_and_dedupe

    def add(self: service._Run, frame: pl.DataFrame) -> None:
        batches.append(frame.estimated_size())
        real_add(self, frame)
        assert self.size <= service.RUN_BUDGET_BYTES  # never more than one run held

    def sort_and_dedupe(kind: object, frames: list[pl.DataFrame]) -> pl.DataFrame:
        size = sum(f.estimated_size() for f in frames)
        run = real_sort(kind, frames)  # type: ignore[arg-type]
        runs.append((size, run.clone()))
        return run

    monkeypatch.setattr(service._Run, "add", add)
    monkeypatch.setattr(service, "_sort_and_dedupe", sort_and_dedupe)
    rows = [f"S-{i % 7};{1 + i % 27:02d}/01/2024 10:{i % 3:02d};{i}" for i in range(3000)]
    summary = do_import(write(tmp_path, "grande.csv", "Sensor;Data/Hora;Valor\n" + "\n".join(rows) + "\n"))

    assert sum(batches) > 2 * service.RUN_BUDGET_BYTES and len(runs) > 3
    for size, run in runs:
        assert size <= max(service.SPILL_RUN_BYTES, max(batches))
        keys = run.select("sensor_id", "ts")
        assert keys.is_unique().all()  # deduplicated within the run...
        assert keys.equals(keys.sort("sensor_id", "ts"))  # ...and sorted by key
    last: dict[tuple[str, str], float] = {}
    for i, r in enumerate(rows):
        code, when, _ = r.split(";")
        last[(code, when)] = float(i)
    assert summary["rows_read"] == 3000
    assert summary["rows_merged"] == len(last)
    assert summary["duplicates"] == 3000 - len(last)
    stored = sorted(valor for _, _, valor, _ in leituras_rows(settings))
    assert stored == sorted(last.values())  # the last occurrence of each key won, across runs too


# polars' allocator ----------------------------------------------------------------------------------------


def test_polars_default_inherited_from_a_parent_gives_way_to_the_import_setting() -> None:
    inherited = "dirty_decay_ms:500,muzzy_decay_ms:1000"  # what a parent that imported polars hands down
    assert allocator.malloc_conf(inherited) == allocator.DECAY
    assert allocator.malloc_conf("") == allocator.DECAY
    assert allocator.malloc_conf(f"{inherited},thp:always") == f"thp:always,{allocator.DECAY}"
    assert allocator.malloc_conf(f"{inherited},{allocator.DECAY}") == f"{inherited},{allocator.DECAY}"


def test_an_operator_decay_setting_wins() -> None:
    assert allocator.malloc_conf("dirty_decay_ms:2000") == "dirty_decay_ms:2000"
    mine = "dirty_decay_ms:500,muzzy_decay_ms:1000,muzzy_decay_ms:50"
    assert allocator.malloc_conf(mine) == mine


def test_an_import_process_started_by_a_polars_process_gets_the_decay_setting() -> None:
    # What the child of a process that imported polars (before engine.imports) inherits: polars' default.
    env = {**os.environ, "_RJEM_MALLOC_CONF": "dirty_decay_ms:500,muzzy_decay_ms:1000"}
    script = "import os, engine.imports, polars; print(os.environ['_RJEM_MALLOC_CONF'])"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out.endswith(allocator.DECAY)  # what polars hands jemalloc: the last value of each option wins
