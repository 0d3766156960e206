"""Benchmark of bulk imports (prints figures and ratios; not a test).

In one run, on a scratch PostgreSQL database created for it (and dropped at the end):

1. generates a ``leituras`` CSV of N rows (default 1,000,000; sensors in random order, unique keys);
2. times ``psql \\copy`` of that file into an empty table with the target's primary key (sensor_id, ts)
   and, for reference, into a table without index;
3. times the project's full import (parse, validate, dedupe, stage, merge) of the same file into the empty
   ``leituras`` table, then an upsert of the same file over the now full table, then an upsert of a file
   with every value changed (so every row is rewritten);
   steps 2 and 3 alternate for ``--repeat`` rounds and the medians are reported with the ratios;
4. imports a file of ``--big-rows`` (default 10,000,000) rows with ``oficina import --inline`` in a child
   process and reports that process's peak RSS next to the same figure for the N-row file and for the same
   command doing no work (``oficina import --help``: interpreter and imported modules);
5. XLSX: ``--xlsx-rows`` rows x 5 columns, read by python-calamine alone vs the project's XLSX reading
   (fastexcel + validation) and the full import.

    .venv/bin/python bench/imports.py [--rows 1000000] [--repeat 3] [--big-rows 10000000] [--xlsx-rows 100000]
                                       [--skip-big] [--skip-xlsx] [--pg postgresql+psycopg://postgres@127.0.0.1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from sqlalchemy import text  # noqa: E402

from engine.db import dispose_engines, get_engine  # noqa: E402
from engine.imports import ImportOptions, run_import  # noqa: E402
from engine.migrate import upgrade  # noqa: E402
from engine.security import SYSTEM  # noqa: E402
from engine.settings import Settings, set_settings  # noqa: E402
from tests.databases import throwaway_database  # noqa: E402

SECRET = "bench-secret-key-that-is-long-enough-0123456789"
PSQL = "/usr/bin/psql"
SENSORS = 1000


def make_settings(data_dir: Path, database_url: str) -> Settings:
    settings = Settings.from_environ(
        {
            "OFICINA_ENV": "test",
            "SECRET_KEY": SECRET,
            "OFICINA_DATA_DIR": str(data_dir),
            "LOG_JSON": "false",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": database_url,
        }
    )
    upgrade(settings)
    set_settings(settings)
    return settings


def generate_leituras(
    path: Path, rows: int, *, seed: int = 7, shift: float = 0.0, chunk: int = 2_000_000
) -> None:
    """``sensor,ts,valor,unidade``: SENSORS sensors x rows/SENSORS minutes, shuffled (random sensor order).
    Written in chunks so a 10M-row file does not need the whole frame in memory."""
    rng = np.random.default_rng(seed)
    per = rows // SENSORS
    order = rng.permutation(per * SENSORS)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    with open(path, "wb") as f:
        f.write(b"sensor,ts,valor,unidade\n")
        for first in range(0, len(order), chunk):
            part = order[first : first + chunk]
            frame = pl.DataFrame(
                {
                    "sensor": (part // per + 1).astype(np.int32),
                    "ts": start + (part % per).astype("timedelta64[m]"),
                    "valor": np.round(rng.uniform(-50, 150, len(part)) + shift, 3),
                    "unidade": np.where(part % 3 == 0, "kPa", "C"),
                }
            )
            frame.write_csv(f, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S")


def psql_copy(url: str, path: Path, *, index: bool) -> float:
    """Seconds of ``\\copy`` into a fresh table (with or without the primary key), as psql's \\timing says."""
    table = "bench_copy_pk" if index else "bench_copy_heap"
    key = ", PRIMARY KEY (sensor_id, ts)" if index else ""
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    setup = (
        f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (sensor_id int, ts timestamptz, valor float8, "
        f"unidade text{key});"
    )
    subprocess.run([PSQL, conninfo, "-q", "-v", "ON_ERROR_STOP=1", "-c", setup], check=True)
    script = f"\\timing on\n\\copy {table} FROM '{path}' WITH (FORMAT csv, HEADER true)\n"
    out = subprocess.run(
        [PSQL, conninfo, "-v", "ON_ERROR_STOP=1"], input=script, text=True, capture_output=True, check=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("Time:"))
    seconds = float(line.split()[1]) / 1000
    subprocess.run([PSQL, conninfo, "-q", "-c", f"DROP TABLE {table}"], check=True)
    return seconds


def import_file(settings: Settings, path: Path, mode: str) -> dict:
    options = ImportOptions(
        kind="leituras",
        mode=mode,
        mapping={"sensor": "sensor", "ts": "ts", "valor": "valor", "unidade": "unidade"},
    )
    started = time.perf_counter()
    summary = run_import(
        settings, path=str(path), file_type="csv", filename=path.name, options=options, owner=SYSTEM
    )
    summary["wall"] = time.perf_counter() - started
    return summary


def empty_target(settings: Settings) -> None:
    with get_engine(settings).begin() as conn:
        conn.execute(text("TRUNCATE leituras, sensores RESTART IDENTITY"))
    checkpoint(settings)


def checkpoint(settings: Settings) -> None:
    """Every measured load starts with no dirty buffers to flush (same conditions for psql and us)."""
    with get_engine(settings).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CHECKPOINT"))


# Runs the command given as arguments, then prints "<exit code> <seconds> <peak RSS in KiB>" of that child.
_MEASURE = """
import os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - started, usage.ru_maxrss)
"""


def child_rss(settings_env: dict[str, str], path: Path | None, data_dir: Path) -> tuple[float, int]:
    """(seconds, peak RSS in MB) of ``oficina import --inline`` in a child process; with no path, of
    ``oficina import --help``: the same process with its modules imported and no work done.

    The child is started by a small intermediate Python process, not by this one: on Linux a program's
    ``ru_maxrss`` includes the high-water mark of the memory image its ``exec`` replaced, i.e. of the process
    that started it, and this benchmark is big by then (it imported the N-row file itself and generated the
    10M-row file). Started from here, the import would report this process's peak, not its own."""
    env = {**os.environ, **settings_env}
    exe = Path(sys.executable).parent / "oficina"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]
    arguments = ["--help"] if path is None else [str(path), "--kind", "leituras", "--inline", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command, "import", *arguments],
        env=env,
        cwd=str(data_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    code, seconds, max_rss_kib = done.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"import failed: {done.stderr}")
    return float(seconds), int(max_rss_kib) // 1024


def xlsx_bench(settings: Settings, workdir: Path, rows: int) -> dict[str, float]:
    import openpyxl
    import python_calamine

    from engine.imports.kinds import LEITURAS, resolve_mapping, validate_batch
    from engine.imports.reader import XlsxSource

    path = workdir / "leituras.xlsx"
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Leituras")
    ws.append(["Sensor", "Data/Hora", "Valor", "Unidade", "Observação"])
    rng = np.random.default_rng(3)
    base = np.datetime64("2024-01-01T00:00", "m")
    for i in range(rows):
        ws.append(
            [
                f"S-{rng.integers(1, 500):04d}",
                (base + np.timedelta64(i, "m")).astype(object),
                float(rng.uniform(0, 100)),
                "kPa",
                "ok",
            ]
        )
    wb.save(path)

    def calamine() -> float:
        started = time.perf_counter()
        python_calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
        return time.perf_counter() - started

    def ours_read() -> float:
        started = time.perf_counter()
        source = XlsxSource(path)
        columns = resolve_mapping(
            LEITURAS,
            source.headers,
            {"sensor": "Sensor", "ts": "Data/Hora", "valor": "Valor", "unidade": "Unidade"},
        )
        for batch in source.batches():
            validate_batch(LEITURAS, batch, headers=source.headers, columns=columns, decimal_comma=True)
        return time.perf_counter() - started

    def ours_import() -> float:
        empty_target(settings)
        started = time.perf_counter()
        run_import(
            settings,
            path=str(path),
            file_type="xlsx",
            filename=path.name,
            options=ImportOptions(kind="leituras"),
            owner=SYSTEM,
        )
        return time.perf_counter() - started

    results: dict[str, list[float]] = {"calamine": [], "read": [], "import": []}
    for _ in range(3):
        results["calamine"].append(calamine())
        results["read"].append(ours_read())
        results["import"].append(ours_import())
    return {k: statistics.median(v) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=100_000)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-xlsx", action="store_true")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="oficina-bench-imports-"))
    database = ExitStack()
    url = database.enter_context(throwaway_database("oficina_bench", admin_url=f"{args.pg}/postgres"))
    name = url.rsplit("/", 1)[1]
    try:
        settings = make_settings(workdir / "var", url)
        csv_path = workdir / "leituras.csv"
        changed_path = workdir / "leituras-alteradas.csv"
        t0 = time.perf_counter()
        generate_leituras(csv_path, args.rows)
        generate_leituras(changed_path, args.rows, shift=0.5)
        print(
            f"# {args.rows:,} rows, {csv_path.stat().st_size / 2**20:.1f} MB "
            f"(generated in {time.perf_counter() - t0:.1f} s); PostgreSQL database {name}"
        )

        copy_pk, copy_heap, ours_insert, ours_upsert, ours_changed = [], [], [], [], []
        last: dict[str, dict] = {}
        for round_ in range(1, args.repeat + 1):
            checkpoint(settings)
            copy_pk.append(psql_copy(url, csv_path, index=True))
            checkpoint(settings)
            copy_heap.append(psql_copy(url, csv_path, index=False))
            empty_target(settings)
            last["insert"] = import_file(settings, csv_path, "insert")
            ours_insert.append(last["insert"]["wall"])
            checkpoint(settings)
            last["upsert"] = import_file(settings, csv_path, "upsert")
            ours_upsert.append(last["upsert"]["wall"])
            checkpoint(settings)
            last["changed"] = import_file(settings, changed_path, "upsert")
            ours_changed.append(last["changed"]["wall"])
            print(
                f"round {round_}: \\copy pk {copy_pk[-1]:.2f} s | \\copy no index {copy_heap[-1]:.2f} s | "
                f"import {ours_insert[-1]:.2f} s {last['insert']['timings']} | upsert same file "
                f"{ours_upsert[-1]:.2f} s | upsert changed values {ours_changed[-1]:.2f} s",
                flush=True,
            )
        med = statistics.median
        print()
        print(
            f"psql \\copy into the table with PK (sensor_id, ts): {med(copy_pk):.2f} s "
            f"(median of {args.repeat})"
        )
        print(f"psql \\copy into a table without index:             {med(copy_heap):.2f} s")
        print(
            f"import into the empty target:                      {med(ours_insert):.2f} s  "
            f"ratio {med(ours_insert) / med(copy_pk):.2f} (target <= 1.0); "
            f"{args.rows / med(ours_insert):,.0f} rows/s"
        )
        print(
            f"upsert of the same file over the full table:       {med(ours_upsert):.2f} s  "
            f"ratio {med(ours_upsert) / med(copy_pk):.2f} (target <= 2.0); "
            f"{last['upsert']['rows_updated']} rows rewritten (unchanged rows are skipped)"
        )
        print(
            f"upsert with every value changed:                   {med(ours_changed):.2f} s  "
            f"ratio {med(ours_changed) / med(copy_pk):.2f}; "
            f"{last['changed']['rows_updated']:,} rows rewritten"
        )

        if not args.skip_big:
            env = {
                "OFICINA_ENV": "test",
                "SECRET_KEY": SECRET,
                "OFICINA_DATA_DIR": str(workdir / "var"),
                "LOG_JSON": "false",
                "LOG_LEVEL": "WARNING",
                "DATABASE_URL": url,
            }
            dispose_engines()
            _, idle_rss = child_rss(env, None, workdir)
            empty_target(settings)
            small_s, small_rss = child_rss(env, csv_path, workdir)
            big_path = workdir / "leituras-10m.csv"
            generate_leituras(big_path, args.big_rows, seed=11)
            empty_target(settings)
            big_s, big_rss = child_rss(env, big_path, workdir)
            print(
                f"peak RSS of the importing process: {small_rss} MB for {args.rows:,} rows "
                f"({small_s:.1f} s), "
                f"{big_rss} MB for {args.big_rows:,} rows ({big_path.stat().st_size / 2**20:.0f} MB file, "
                f"{big_s:.1f} s) (target < 300 MB, flat); {idle_rss} MB with the modules imported and no work"
            )
            big_path.unlink()

        if not args.skip_xlsx:
            x = xlsx_bench(settings, workdir, args.xlsx_rows)
            print(
                f"XLSX {args.xlsx_rows:,} x 5: python-calamine alone {x['calamine']:.2f} s | our reading "
                f"(fastexcel + validation) {x['read']:.2f} s, ratio {x['read'] / x['calamine']:.2f} "
                f"(target <= 1.3)"
                f" | full import {x['import']:.2f} s, ratio {x['import'] / x['calamine']:.2f}"
            )
    finally:
        dispose_engines()
        database.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
