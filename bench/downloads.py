"""Benchmark of court document downloads (prints figures and ratios; not a test).

1. Throughput: a process with N documents served by the simulator with L ms of latency per request,
   downloaded by the real ``documentos`` job (SQLite, local blob storage) with concurrency C. The ideal
   is C / L documents per second; the target is at least 80 % of it. The bare client (no database, no
   storage) is measured too, to show where the time goes.
2. Memory: one big document (default 200 MB) downloaded and stored by the job in a separate process,
   whose peak RSS (``ru_maxrss``) is reported against the 150 MB target.

    .venv/bin/python bench/downloads.py [--docs 200] [--latency-ms 50] [--batch 5] [--big-mb 200]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import queue as queue_port  # noqa: E402
from engine.brazil import make_cnj  # noqa: E402
from engine.court import CourtClient  # noqa: E402
from engine.court.simulator import demo_token  # noqa: E402
from engine.db import session_scope  # noqa: E402
from engine.documents import DownloadOptions, build_status, lookup_processo  # noqa: E402
from engine.migrate import upgrade  # noqa: E402
from engine.security import SYSTEM  # noqa: E402
from engine.settings import Settings, set_settings  # noqa: E402

SECRET = "bench-secret-key-that-is-long-enough-0123456789"


def make_settings(data_dir: Path, court_url: str, database_url: str = "") -> Settings:
    settings = Settings.from_environ(
        {
            "OFICINA_ENV": "test",
            "SECRET_KEY": SECRET,
            "OFICINA_DATA_DIR": str(data_dir),
            "COURT_API_URL": court_url,
            "LOG_JSON": "false",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": database_url,
        }
    )
    upgrade(settings)
    set_settings(settings)
    return settings


def run_job(settings: Settings, numero: str, opts: DownloadOptions) -> tuple[float, dict]:
    queue_port.install(queue_port.InlineQueue(settings))
    started = time.perf_counter()
    with session_scope(settings) as s:
        lookup_processo(s, actor=SYSTEM, numero=numero, options=opts, settings=settings)
    elapsed = time.perf_counter() - started  # the inline queue ran the job at commit
    with session_scope(settings) as s:
        status = build_status(s, numero=numero, settings=settings)
    return elapsed, status["counters"]


def bare_client(url: str, numero: str, concurrency: int) -> tuple[float, int]:
    with CourtClient(url, demo_token(), max_connections=concurrency * 2) as client:
        docs = client.get_processo(numero)["documentos"]

        def fetch(doc: dict) -> int:
            with client.open_document(numero, doc["id"]) as stream:
                return sum(len(chunk) for chunk in stream.iter_bytes())

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            total = sum(pool.map(fetch, docs))
        return time.perf_counter() - started, total


class SimulatorProcess:
    """The simulator in its own process (``oficina court-simulator``), so it does not share our GIL."""

    def __init__(self, *args: str) -> None:
        import socket

        import httpx

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "engine.cli", "court-simulator", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def throughput(args: argparse.Namespace) -> None:
    sim = SimulatorProcess(
        "--latency-ms",
        str(args.latency_ms),
        "--documents",
        str(args.docs),
        "--document-size",
        str(args.doc_kb * 1024),
    )
    url = sim.url
    ideal = args.batch / (args.latency_ms / 1000)
    print(
        f"Throughput: {args.docs} documents of {args.doc_kb} KiB, latency {args.latency_ms} ms, "
        f"concurrency {args.batch}; ideal {ideal:.1f} docs/s"
    )
    elapsed, size = bare_client(url, make_cnj(1, 2024, 8, 26, 100), args.batch)
    rate = args.docs / elapsed
    print(
        f"  bare client (no DB, no storage): {elapsed:6.2f} s  {rate:6.1f} docs/s  "
        f"{rate / ideal:6.1%} of ideal"
    )
    # Time the job in a warmed-up worker, not a cold process. A worker imports every handler module once,
    # at start-up (``child`` below does the same); left to ``run_job`` that lands inside the first timing:
    # ~1 s of importing unrelated modules (polars for the imports handler). Those imports also leave the
    # garbage collector owing a full (generation 2) pass, which then fires inside the job's first
    # queries: a ~130 ms pause that a long-running worker paid once, long before. Both are per-process
    # start-up costs, not the download job's throughput, so pay them here.
    import gc

    from engine.jobs import load_handlers

    load_handlers()
    gc.collect()
    targets = [("SQLite", "")] + ([("PostgreSQL", args.database_url)] if args.database_url else [])
    for label, database_url in targets:
        with tempfile.TemporaryDirectory() as tmp:
            settings = make_settings(Path(tmp), url, database_url)
            numero = make_cnj(int(time.time()) % 9_000_000, 2024, 8, 26, 100)
            # The lookup itself costs one metadata request (one latency) before the job starts.
            elapsed, counters = run_job(settings, numero, DownloadOptions(batch_size=args.batch))
            rate = args.docs / elapsed
            print(
                f"  full job ({label}, local storage): {elapsed:6.2f} s  {rate:6.1f} docs/s  "
                f"{rate / ideal:6.1%} of ideal  (target ≥ 80%)  "
                f"available={counters['available']}/{counters['total']}"
            )
    sim.stop()


def memory(args: argparse.Namespace) -> None:
    size = args.big_mb * 1024 * 1024
    sim = SimulatorProcess("--documents", "1", "--document-size", str(size))
    url = sim.url
    numero = make_cnj(3, 2024, 8, 26, 100)
    print(
        f"Memory: one document of {args.big_mb} MB (the simulator hashes it on the first request)", flush=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, __file__, "--child", tmp, url, numero])
        _, status, usage = os.wait4(proc.pid, 0)
        peak_mb = usage.ru_maxrss / 1024
        stored = sum(p.stat().st_size for p in Path(tmp, "blobs", "processos").rglob("*") if p.is_file())
    print(
        f"  worker process exit={os.waitstatus_to_exitcode(status)}  stored={stored / 1e6:.1f} MB  "
        f"peak RSS {peak_mb:.1f} MB  (target < 150 MB; ratio {peak_mb / 150:.0%})"
    )
    sim.stop()


def child(data_dir: str, url: str, numero: str) -> None:
    from engine.jobs import load_handlers

    settings = make_settings(Path(data_dir), url)
    load_handlers()  # what a worker imports before its first job
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elapsed, counters = run_job(settings, numero, DownloadOptions(batch_size=5))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"  child: peak RSS before the job (imports of every handler module) {baseline:.1f} MB, after "
        f"{peak:.1f} MB: the download added {peak - baseline:.1f} MB; download+store {elapsed:.1f} s; "
        f"available={counters['available']}/{counters['total']}",
        flush=True,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--doc-kb", type=int, default=32)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--database-url", default="", help="also run the job on this (PostgreSQL) database")
    args = parser.parse_args()
    throughput(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
