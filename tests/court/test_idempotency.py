"""Two (or eight) lookups of the same process at the same moment start exactly one job."""

from __future__ import annotations

import json
import subprocess
import threading

from sqlalchemy import func, select

from engine.brazil import make_cnj
from engine.db import session_scope
from engine.models import Job, Processo
from engine.models.court import Documento
from tests.court.conftest import lookup
from tests.worker_support import oficina_command, settings_environ


def test_concurrent_lookups_start_one_job(court_settings, simulator, recording_queue):
    simulator.config.latency_ms = 50  # every thread is inside the court call at the same time
    numero = make_cnj(777, 2024, 8, 26, 100)
    barrier = threading.Barrier(8)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            barrier.wait()
            result = lookup(court_settings, numero)
            results.append((result.job.id, result.started))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(started for _, started in results) == 1
    with session_scope(court_settings) as s:
        assert s.scalar(select(func.count(Job.id)).where(Job.kind == "documentos")) == 1
        assert s.scalar(select(func.count(Processo.id))) == 1
        assert s.scalar(select(func.count(Documento.id))) == len(simulator.documents(numero))
    assert len(recording_queue.enqueued) == 1


def test_concurrent_cli_processes_start_one_job(pg_settings, simulator, tmp_path):
    """Separate processes (the CLI), on PostgreSQL: the advisory lock holds across connections."""
    settings = pg_settings.with_overrides(court_api_url=simulator.url, queue_name=f"q{tmp_path.name[-8:]}")
    simulator.config.latency_ms = 1500  # longer than the spread of the three processes' start-up
    numero = make_cnj(778, 2024, 8, 26, 100)
    env = settings_environ(settings)
    procs = [
        subprocess.Popen(
            [*oficina_command(), "processos", "fetch", numero],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1].decode()[-2000:] for o in outputs]
    answers = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    assert len({a["job"]["id"] for a in answers}) == 1
    assert sorted(a["started"] for a in answers) == [False, False, True]
    with session_scope(settings) as s:
        assert s.scalar(select(func.count(Job.id)).where(Job.kind == "documentos")) == 1
