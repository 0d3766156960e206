"""The jobs backbone with real Huey consumers (`oficina worker` subprocesses).

RedisHuey + PostgreSQL and the embedded default (SqliteHuey + SQLite) run the same lifecycle; killed,
interrupted and failing consumers leave Job rows true; several consumers share one Redis queue.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from engine import queue as queue_port
from engine.db import get_engine, session_scope
from engine.jobs import (
    cancel_job,
    create_job,
    retry_job,
    start_diagnostic,
    sweep_stale_jobs,
)
from engine.models import Job, utcnow
from engine.security import SYSTEM
from engine.settings import Settings
from jobs import periodic
from jobs.app import get_huey
from jobs.queue import HueyQueue
from jobs.signals import INTERRUPTED_MESSAGE
from tests.stack import free_port
from tests.worker_support import (
    WorkerPool,
    job_snapshot,
    oficina_command,
    settings_environ,
    wait_for,
    wait_for_job,
)

ONE_WORKER = ("--workers", "1", "--no-periodic")


@pytest.fixture
def workers(tmp_path: Path):
    with WorkerPool(tmp_path / "workers") as pool:
        yield pool


@pytest.fixture(params=["redis+postgresql", "sqlite"])
def backend(request: pytest.FixtureRequest, workers: WorkerPool) -> Settings:
    """A queue of the test's own on each deployment kind: RedisHuey + PostgreSQL, SqliteHuey + SQLite."""
    if request.param == "sqlite":
        return workers.queue_settings(request.getfixturevalue("sqlite_settings"))
    return workers.queue_settings(request.getfixturevalue("pg_settings"),
                                  redis_url=request.getfixturevalue("redis_url"))


@pytest.fixture
def redis_pg(pg_settings: Settings, redis_url: str, workers: WorkerPool) -> Settings:
    return workers.queue_settings(pg_settings, redis_url=redis_url)


def diagnostic(settings: Settings, *, steps: int, step_seconds: float) -> int:
    with session_scope(settings) as s:
        return start_diagnostic(s, actor=SYSTEM, steps=steps, step_seconds=step_seconds).id


def done_keys(job: Job) -> set[str]:
    return {item.key for item in job.items if item.status == "done"}


def items_done(settings: Settings, job_id: int, at_least: int) -> Job | None:
    job = job_snapshot(settings, job_id)
    return job if len(done_keys(job)) >= at_least else None


def runs_logged(*workers) -> int:  # noqa: ANN002
    return sum(len(w.log_lines("(diagnostico) started")) for w in workers)


# Lifecycle ---------------------------------------------------------------------------------------------

def test_job_goes_queued_running_succeeded_with_heartbeat(backend: Settings, workers: WorkerPool) -> None:
    job_id = diagnostic(backend, steps=1, step_seconds=3)
    assert job_snapshot(backend, job_id).status == "queued"

    worker = workers.start(backend)
    running = wait_for_job(backend, job_id, "running", worker=worker, timeout=20)
    assert running.attempts == 1 and running.started_at is not None
    assert f":{worker.pid}:" in running.worker and running.task_id

    # During the 3 s step only the heartbeat writes the row (the message stays the one written at the
    # start of the step): it must move on its own.
    beats_during_step: set[datetime] = set()

    def finished() -> bool:
        job = job_snapshot(backend, job_id)
        if job.status == "running" and job.message == "0 de 1 passos":
            beats_during_step.add(job.heartbeat_at)
        return job.status == "succeeded"

    wait_for(finished, timeout=20, message="the job to finish", workers=[worker])
    assert len(beats_during_step) >= 2, beats_during_step

    job = wait_for_job(backend, job_id, "succeeded", worker=worker, timeout=20)
    assert job.progress == 100 and job.attempts == 1
    assert job.counters == {"feitos": 1, "total": 1}
    assert [(i.key, i.status, i.attempts) for i in job.items] == [("passo-001", "done", 1)]
    assert job.result["tentativa"] == 1 and job.result["pulados"] == 0
    assert job.started_at <= job.finished_at and job.error == "" and job.traceback == ""
    assert worker.stop() == 0
    records = [json.loads(line) for line in worker.log().splitlines()]  # structured logs, one per line
    assert {"worker ready", "worker stopped"} <= {r["msg"] for r in records}
    assert any(r.get("job_id") == job_id and r.get("status") == "succeeded" for r in records)


def test_process_workers_run_jobs(redis_pg: Settings, workers: WorkerPool) -> None:
    worker = workers.start(redis_pg, args=("--workers", "2", "--worker-type", "process", "--no-periodic"))
    ids = [diagnostic(redis_pg, steps=2, step_seconds=0.1) for _ in range(3)]
    for job_id in ids:
        job = wait_for_job(redis_pg, job_id, "succeeded", worker=worker)
        assert job.attempts == 1 and job.progress == 100
        assert f":{worker.pid}:" not in job.worker  # ran in a forked child, not the consumer itself
    # SIGTERM reaches the child as an interrupt: the job goes back to the queue from there.
    long_id = diagnostic(redis_pg, steps=20, step_seconds=0.3)
    wait_for(lambda: items_done(redis_pg, long_id, 1), timeout=20, workers=[worker])
    worker.terminate()
    assert worker.wait(20) == 0
    released = job_snapshot(redis_pg, long_id)
    assert released.status == "queued" and released.message == INTERRUPTED_MESSAGE, (
        released.status, released.message, released.error, worker.log()[-4000:])
    assert HueyQueue(redis_pg).size() == 1


def test_sigterm_to_a_process_child_alone_hands_its_job_back_and_the_child_goes_on(
        redis_pg: Settings, workers: WorkerPool) -> None:
    worker = workers.start(redis_pg, args=("--workers", "1", "--worker-type", "process", "--no-periodic"))
    job_id = diagnostic(redis_pg, steps=8, step_seconds=0.3)
    running = wait_for(lambda: items_done(redis_pg, job_id, 2), timeout=20, workers=[worker])
    child = int(running.worker.split(":")[1])
    assert child != worker.pid
    os.kill(child, signal.SIGTERM)  # Huey interrupts that child's task; the consumer keeps running
    # The one child runs the job again: the interrupt was for the first run, not for every later one.
    job = wait_for_job(redis_pg, job_id, "succeeded", worker=worker, timeout=30)
    assert job.attempts == 2 and f":{child}:" in job.worker
    assert job.result["pulados"] >= 2  # what the first run finished was not redone
    assert worker.log_lines(f"job {job_id} released back to the queue") and worker.alive
    assert worker.stop() == 0


# Killed, interrupted, stopped ------------------------------------------------------------------------

def test_killed_worker_job_is_requeued_by_the_sweep_and_finishes_once(backend: Settings,
                                                                      workers: WorkerPool) -> None:
    settings = backend.with_overrides(job_stale_seconds=4)
    first = workers.start(settings, args=ONE_WORKER)
    job_id = diagnostic(settings, steps=5, step_seconds=0.3)
    wait_for(lambda: items_done(settings, job_id, 2), timeout=20, message="two items done", workers=[first])

    first.kill()
    before = job_snapshot(settings, job_id)
    assert before.status == "running" and before.attempts == 1
    done_before = {i.key: i.updated_at for i in before.items if i.status == "done"}
    assert len(done_before) >= 2
    assert sweep_stale_jobs(settings=settings)["requeued"] == []  # the heartbeat is still fresh

    second = workers.start(settings, args=ONE_WORKER)
    wait_for(lambda: job_id in sweep_stale_jobs(settings=settings)["requeued"], timeout=15, interval=0.25,
             message="the sweep to see the stale heartbeat", workers=[second])
    job = wait_for_job(settings, job_id, "succeeded", worker=second)

    assert job.attempts == 2 and job.progress == 100
    assert job.result == {"passos": 5, "pulados": len(done_before), "tentativa": 2,
                          "worker": job.result["worker"]}
    assert f":{second.pid}:" in job.result["worker"]
    assert all(item.status == "done" for item in job.items) and len(job.items) == 5
    for item in job.items:
        if item.key in done_before:  # finished by the killed worker: not redone
            assert item.attempts == 1 and item.updated_at == done_before[item.key]
    assert runs_logged(first) == 1 and runs_logged(second) == 1
    assert second.log_lines(f"job {job_id} (diagnostico) succeeded") and not first.log_lines("succeeded")


def test_sigterm_hands_the_running_job_back_to_the_queue(backend: Settings, workers: WorkerPool) -> None:
    first = workers.start(backend, args=ONE_WORKER)
    job_id = diagnostic(backend, steps=8, step_seconds=0.3)
    wait_for(lambda: items_done(backend, job_id, 2), timeout=20, message="two items done", workers=[first])

    first.terminate()  # Huey's immediate shutdown: SIGNAL_INTERRUPTED for the task in flight
    assert first.wait(20) == 0
    released = job_snapshot(backend, job_id)
    assert released.status == "queued" and released.message == INTERRUPTED_MESSAGE
    assert released.attempts == 1
    assert HueyQueue(backend).size() == 1  # re-enqueued, no sweep needed
    done_before = {i.key: i.updated_at for i in released.items if i.status == "done"}

    second = workers.start(backend, args=ONE_WORKER)
    job = wait_for_job(backend, job_id, "succeeded", worker=second)
    assert job.attempts == 2 and job.result["pulados"] == len(done_before)
    assert all(i.attempts == 1 and i.updated_at == done_before[i.key] for i in job.items if i.key in done_before)


def test_ctrl_c_lets_the_running_job_finish(redis_pg: Settings, workers: WorkerPool) -> None:
    worker = workers.start(redis_pg, args=ONE_WORKER)
    job_id = diagnostic(redis_pg, steps=3, step_seconds=0.3)
    wait_for(lambda: items_done(redis_pg, job_id, 1), timeout=20, workers=[worker])
    worker.interrupt()
    assert worker.wait(20) == 0
    job = job_snapshot(redis_pg, job_id)
    assert job.status == "succeeded" and job.attempts == 1
    assert worker.log_lines("Shutting down gracefully") and worker.log_lines("worker stopped")


def test_ctrl_c_past_the_shutdown_timeout_hands_the_job_back(redis_pg: Settings, workers: WorkerPool) -> None:
    worker = workers.start(redis_pg, args=(*ONE_WORKER, "--shutdown-timeout", "0.5"))
    job_id = diagnostic(redis_pg, steps=30, step_seconds=0.3)
    wait_for(lambda: items_done(redis_pg, job_id, 1), timeout=20, workers=[worker])
    worker.interrupt()
    assert worker.wait(20) == 0
    job = job_snapshot(redis_pg, job_id)
    assert job.status == "queued" and job.message == INTERRUPTED_MESSAGE
    assert HueyQueue(redis_pg).size() == 1


# Failures the handler never sees -------------------------------------------------------------------

def test_error_escaping_run_job_marks_the_job_failed(backend: Settings, workers: WorkerPool) -> None:
    """The database refuses the final write (as if it went away at that moment): the exception escapes
    run_job, Huey emits SIGNAL_ERROR and the signal handler records the failure with its traceback."""
    job_id = diagnostic(backend, steps=2, step_seconds=0)
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    engine = get_engine(backend)
    with engine.begin() as conn:
        if backend.is_postgres:
            conn.execute(text(f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                              f"RAISE EXCEPTION 'banco recusou a escrita final'; END $$ LANGUAGE plpgsql"))
            conn.execute(text(f"CREATE TRIGGER {name} BEFORE UPDATE ON jobs FOR EACH ROW WHEN "
                              f"(NEW.id = {job_id} AND NEW.status = 'succeeded') EXECUTE FUNCTION {name}()"))
        else:
            conn.execute(text(f"CREATE TRIGGER {name} BEFORE UPDATE ON jobs WHEN NEW.id = {job_id} AND "
                              f"NEW.status = 'succeeded' BEGIN SELECT RAISE(ABORT, "
                              f"'banco recusou a escrita final'); END"))
    try:
        worker = workers.start(backend)
        job = wait_for_job(backend, job_id, "failed", worker=worker)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER {name}" + (" ON jobs" if backend.is_postgres else "")))
            if backend.is_postgres:
                conn.execute(text(f"DROP FUNCTION {name}()"))
    assert "banco recusou a escrita final" in job.error
    assert "banco recusou a escrita final" in job.traceback and "run_job" in job.traceback
    assert job.finished_at is not None and job.attempts == 1
    # The handler logs once its commit is through, which this test may see first.
    wait_for(lambda: worker.log_lines(f"job {job_id} failed outside its handler"), timeout=10, workers=[worker])


# Duplicates, cancel, retry, several consumers ------------------------------------------------------

def test_cancel_and_retry_with_a_real_consumer(redis_pg: Settings, workers: WorkerPool) -> None:
    queued_id = diagnostic(redis_pg, steps=2, step_seconds=0)
    with session_scope(redis_pg) as s:
        assert cancel_job(s, actor=SYSTEM, job_id=queued_id).status == "cancelled"  # not started: at once

    worker = workers.start(redis_pg)
    running_id = diagnostic(redis_pg, steps=40, step_seconds=0.2)
    wait_for(lambda: items_done(redis_pg, running_id, 1), timeout=20, workers=[worker])
    with session_scope(redis_pg) as s:
        job = cancel_job(s, actor=SYSTEM, job_id=running_id)
        assert job.status == "running" and job.cancel_requested
    cancelled = wait_for_job(redis_pg, running_id, "cancelled", worker=worker, timeout=10)
    assert 1 <= len(done_keys(cancelled)) < 40 and cancelled.finished_at is not None

    # The message of the job cancelled while queued was delivered and ignored.
    wait_for(lambda: HueyQueue(redis_pg).size() == 0, timeout=10, workers=[worker])
    wait_for(lambda: worker.log_lines(f"job {queued_id} not claimed"), timeout=10, workers=[worker])
    assert job_snapshot(redis_pg, queued_id).attempts == 0

    with session_scope(redis_pg) as s:
        retry_id = retry_job(s, actor=SYSTEM, job_id=queued_id).id
    retried = wait_for_job(redis_pg, retry_id, "succeeded", worker=worker)
    assert retried.retry_of_id == queued_id and retried.attempts == 1 and retried.params == {
        "steps": 2, "step_seconds": 0.0}


def test_two_consumers_share_a_redis_queue_and_each_job_runs_once(redis_pg: Settings,
                                                                    workers: WorkerPool) -> None:
    a = workers.start(redis_pg, args=("--workers", "2"))
    b = workers.start(redis_pg, args=("--workers", "2", "--no-periodic"))
    ids = [diagnostic(redis_pg, steps=2, step_seconds=0.3) for _ in range(8)]
    HueyQueue(redis_pg).enqueue(ids[0])  # a duplicate delivery of the first job
    jobs = [wait_for_job(redis_pg, job_id, "succeeded", workers=[a, b]) for job_id in ids]
    wait_for(lambda: a.log_lines(f"job {ids[0]} not claimed") or b.log_lines(f"job {ids[0]} not claimed"),
             timeout=10, message="the duplicate to be delivered and skipped", workers=[a, b])
    assert all(job.attempts == 1 for job in jobs)
    assert all(item.attempts == 1 for job in jobs for item in job.items)
    assert runs_logged(a, b) == 8
    pids = {job.worker.split(":")[1] for job in jobs}
    assert pids == {str(a.pid), str(b.pid)}
    assert a.stop() == 0 and b.stop() == 0


# Starting --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("broken", ["redis", "database", "tables"])
def test_worker_refuses_to_start_without_its_services(broken: str, pg_settings: Settings, redis_url: str,
                                                      tmp_path: Path) -> None:
    port = free_port()  # bound, never listening: connections are refused
    settings = pg_settings.with_overrides(redis_url=redis_url, queue_name=f"t{uuid.uuid4().hex[:12]}")
    expected = {"redis": "Fila indisponível", "database": "Banco de dados indisponível",
                "tables": "rode `oficina db upgrade`"}[broken]
    if broken == "redis":
        settings = settings.with_overrides(redis_url=f"redis://127.0.0.1:{port}/0")
    elif broken == "database":
        settings = settings.with_overrides(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
    else:  # an empty SQLite database nobody migrated
        settings = settings.with_overrides(database_url="", data_dir=tmp_path / "empty")
    done = subprocess.run([*oficina_command(), "worker"], env=settings_environ(settings), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("erro: ")
    assert expected in done.stderr and "Traceback" not in done.stderr


# Periodic tasks (no consumer needed: the scheduler only decides when they run) -----------------------

def _periodic_task(settings: Settings, name: str):  # noqa: ANN202
    huey = get_huey(settings)
    return huey._registry.string_to_task(f"jobs.periodic.{name}")()


def test_periodic_tasks_are_registered_with_their_schedules(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.with_overrides(queue_name=f"t{uuid.uuid4().hex[:12]}", backup_hour=3)
    huey = get_huey(settings)
    names = {type(t).__name__ for t in huey._registry.periodic_tasks}
    assert {"sweep_stale_jobs", "backup_daily", "sweep_drafts"} <= names
    sweep = _periodic_task(settings, "sweep_stale_jobs")
    backup = _periodic_task(settings, "backup_daily")
    drafts = _periodic_task(settings, "sweep_drafts")
    assert sweep.validate_datetime(datetime(2026, 1, 1, 10, 17)) is True  # every minute
    assert drafts.validate_datetime(datetime(2026, 1, 1, 10, 15)) is True  # every five minutes
    assert drafts.validate_datetime(datetime(2026, 1, 1, 10, 17)) is False
    local_3am = datetime(2026, 5, 10, 3, 0).astimezone()  # server time, as BACKUP_HOUR says
    utc_naive = local_3am.astimezone(UTC).replace(tzinfo=None)  # what Huey (utc=True) passes
    assert backup.validate_datetime(utc_naive) is True
    assert backup.validate_datetime(utc_naive + timedelta(minutes=1)) is False
    assert backup.validate_datetime(utc_naive + timedelta(hours=1)) is False


def test_periodic_sweep_requeues_stale_jobs(sqlite_settings: Settings, recording_queue) -> None:  # noqa: ANN001
    settings = sqlite_settings.with_overrides(queue_name=f"t{uuid.uuid4().hex[:12]}")
    with session_scope(settings) as s:
        job = create_job(s, kind="diagnostico", owner=SYSTEM, params={"steps": 1, "step_seconds": 0})
        job.status, job.attempts = "running", 1
        job.heartbeat_at = utcnow() - timedelta(seconds=settings.job_stale_seconds + 5)
    recording_queue.enqueued.clear()
    _periodic_task(settings, "sweep_stale_jobs").execute()
    assert job_snapshot(settings, job.id).status == "queued"
    assert [jid for jid, _ in recording_queue.enqueued] == [job.id]


def test_daily_backup_starts_one_backup_per_day(sqlite_settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    settings = sqlite_settings.with_overrides(queue_name=f"t{uuid.uuid4().hex[:12]}")
    huey = get_huey(settings)
    calls: list[object] = []

    def start_backup(session, *, actor):  # noqa: ANN001, ANN202
        calls.append(actor)
        return create_job(session, kind="backup", owner=actor)

    monkeypatch.setitem(sys.modules, "engine.backups", types.SimpleNamespace(start_backup=start_backup))
    queue_port.install(queue_port.RecordingQueue())
    try:
        day = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        first = periodic.daily_backup(huey, settings, now=day)
        again = periodic.daily_backup(huey, settings, now=day + timedelta(minutes=1))  # second consumer
        next_day = periodic.daily_backup(huey, settings, now=day + timedelta(days=1))
    finally:
        queue_port.install(None)
        huey.flush()
    assert calls == [SYSTEM, SYSTEM]
    assert first is not None and again is None and next_day is not None
    with session_scope(settings) as s:
        assert s.get(Job, first).kind == "backup"


def test_daily_backup_queues_a_real_backup_job(sqlite_settings: Settings, recording_queue) -> None:  # noqa: ANN001
    settings = sqlite_settings.with_overrides(queue_name=f"t{uuid.uuid4().hex[:12]}")
    huey = get_huey(settings)
    try:
        job_id = periodic.daily_backup(huey, settings)
    finally:
        huey.flush()
    job = job_snapshot(settings, job_id)
    assert job.kind == "backup" and job.status == "queued" and job.owner_id is None
    assert [jid for jid, _ in recording_queue.enqueued] == [job_id]


def test_drafts_sweep_starts_the_engine_sweep(sqlite_settings: Settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    settings = sqlite_settings.with_overrides(queue_name=f"t{uuid.uuid4().hex[:12]}")
    seen: list[Settings] = []
    fake = types.SimpleNamespace(schedule_sweep=lambda *, settings: seen.append(settings) or 41)
    monkeypatch.setitem(sys.modules, "engine.drafts", fake)
    _periodic_task(settings, "sweep_drafts").execute()
    assert seen == [settings]
    assert periodic.drafts_sweep(settings) == 41
    monkeypatch.setitem(sys.modules, "engine.drafts", None)
    assert periodic.drafts_sweep(settings) is None


def test_daily_backup_is_skipped_without_the_backups_module(sqlite_settings: Settings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    settings = sqlite_settings.with_overrides(queue_name=f"t{uuid.uuid4().hex[:12]}")
    monkeypatch.setitem(sys.modules, "engine.backups", None)  # import raises ModuleNotFoundError
    assert periodic.daily_backup(get_huey(settings), settings) is None
