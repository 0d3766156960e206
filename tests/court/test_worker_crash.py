"""A real Huey consumer killed with SIGKILL in the middle of a download: the sweep re-enqueues the job, a
new consumer finishes it, finished documents are not downloaded again and no stored object is rewritten."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.brazil import make_cnj
from engine.db import session_scope
from engine.documents import DownloadOptions, storage_key
from engine.jobs import sweep_stale_jobs
from engine.models import Job, utcnow
from engine.models.court import Documento
from tests.court.conftest import lookup
from tests.worker_support import WorkerPool, wait_for, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("court-worker")]


def test_killed_worker_resumes_without_downloading_twice(pg_settings, redis_url, simulator, tmp_path):
    simulator.config.documents_per_process = 10
    simulator.config.document_size = 256 * 1024
    simulator.config.slow_body_ms = 120
    numero = make_cnj(31337, 2024, 8, 26, 100)
    with WorkerPool(tmp_path / "workers") as pool:
        settings = pool.queue_settings(pg_settings, redis_url=redis_url, court_api_url=simulator.url)
        first = pool.start(settings)
        job = lookup(
            settings, numero, options=DownloadOptions(batch_size=2, request_retries=1, backoff_base=0.05)
        ).job

        def available() -> list[Documento]:
            with session_scope(settings) as s:
                rows = list(s.scalars(select(Documento).where(Documento.status == "available")))
                s.expunge_all()
                return rows if len(rows) >= 3 else []

        wait_for(available, timeout=60, message="three documents available", workers=[first])
        first.kill()
        done_before = {d.external_id: d for d in available()}
        assert len(done_before) < 10, "the job should still have been running"
        files = {
            ext: (settings.blob_dir / storage_key(numero, ext, d.nome)) for ext, d in done_before.items()
        }
        stamps = {ext: (p.stat().st_ino, p.stat().st_mtime_ns) for ext, p in files.items()}
        requests_before = {ext: simulator.count(f"/documentos/{ext}/binario") for ext in done_before}
        assert set(requests_before.values()) == {1}

        with session_scope(settings) as s:
            assert s.get(Job, job.id).status == "running"
        swept = sweep_stale_jobs(
            settings=settings, now=utcnow() + timedelta(seconds=settings.job_stale_seconds + 5)
        )
        assert job.id in swept["requeued"]
        second = pool.start(settings)
        finished = wait_for_job(settings, job.id, "succeeded", timeout=90, worker=second)

    assert finished.attempts == 2 and finished.progress == 100
    with session_scope(settings) as s:
        rows = list(s.scalars(select(Documento)))
    assert len(rows) == 10 and {d.status for d in rows} == {"available"}
    for ext in done_before:
        assert simulator.count(f"/documentos/{ext}/binario") == 1, f"document {ext} was downloaded again"
        stat = files[ext].stat()
        assert (stat.st_ino, stat.st_mtime_ns) == stamps[ext], f"object of {ext} was written again"
    for d in rows:
        assert (settings.blob_dir / d.storage_key).stat().st_size == 256 * 1024
