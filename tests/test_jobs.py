"""engine.jobs on SQLite and PostgreSQL, without a consumer: permissions, listing, dedupe, the runner
(progress, failures, cancellation, supersession), the sweep and the functions the Huey signals call."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, update

from engine import accounts
from engine import jobs as engine_jobs
from engine import queue as queue_port
from engine.db import session_scope
from engine.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from engine.jobs import (
    JobContext,
    cancel_job,
    count_active,
    counts_by_kind_status,
    create_job,
    get_job,
    job_handler,
    list_jobs,
    retry_job,
    run_job,
    start_diagnostic,
    sweep_stale_jobs,
)
from engine.models import AuditEvent, Job, JobItem, User, utcnow
from engine.security import SYSTEM
from engine.settings import Settings


@pytest.fixture
def users(settings: Settings) -> dict[str, User]:
    made = {}
    with session_scope(settings) as s:
        for role in ("admin", "staff", "analyst", "viewer"):
            made[role], _ = accounts.create_user(s, actor=SYSTEM, email=f"{role}@oficina.test", role=role,
                                                 password="senha-forte-123")
    return made


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Register a test job kind for the duration of one test: ``handler("kind")(fn)``."""
    def register(kind: str, **options: Any):  # noqa: ANN202
        monkeypatch.setitem(engine_jobs._handlers, kind, None)
        return job_handler(kind, **options)

    yield register


def new_job(settings: Settings, *, kind: str = "teste", owner: Any = SYSTEM, **kwargs: Any) -> int:
    with session_scope(settings) as s:
        return create_job(s, kind=kind, owner=owner, **kwargs).id


def load(settings: Settings, job_id: int) -> Job:
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.refresh(job)
        job.items  # noqa: B018 - load before the session closes
        return job


# Permissions and listing ----------------------------------------------------------------------------

def test_viewer_sees_only_own_jobs_and_admin_sees_all(settings: Settings, recording_queue,  # noqa: ANN001
                                                     users: dict[str, User]) -> None:
    mine = new_job(settings, owner=users["viewer"])
    theirs = new_job(settings, owner=users["staff"])
    system = new_job(settings, owner=SYSTEM)
    with session_scope(settings) as s:
        rows, total = list_jobs(s, actor=users["viewer"])
        assert [j.id for j in rows] == [mine] and total == 1
        for hidden in (theirs, system):
            with pytest.raises(NotFound):
                get_job(s, actor=users["viewer"], job_id=hidden)
        assert get_job(s, actor=users["viewer"], job_id=mine).id == mine
        rows, total = list_jobs(s, actor=users["admin"])
        assert {j.id for j in rows} == {mine, theirs, system} and total == 3
        rows, _ = list_jobs(s, actor=users["admin"], owner_id=users["staff"].id)
        assert [j.id for j in rows] == [theirs]
        # A non-admin cannot widen the view with owner_id.
        rows, _ = list_jobs(s, actor=users["viewer"], owner_id=users["staff"].id)
        assert [j.id for j in rows] == [mine]
        assert count_active(s, actor=users["viewer"]) == 1
        assert count_active(s, actor=users["admin"]) == 3
        assert count_active(s, actor=None) == 0
        with pytest.raises(PermissionDenied):
            list_jobs(s, actor=None)


def test_only_admins_start_the_diagnostic(settings: Settings, inline_queue,  # noqa: ANN001
                                          users: dict[str, User]) -> None:
    for role in ("viewer", "staff", "analyst"):
        with session_scope(settings) as s, pytest.raises(PermissionDenied):
            start_diagnostic(s, actor=users[role], steps=1, step_seconds=0)
    with session_scope(settings) as s:
        assert s.scalar(select(func.count(Job.id))) == 0
        job_id = start_diagnostic(s, actor=users["admin"], steps=3, step_seconds=0).id
    job = load(settings, job_id)
    assert job.status == "succeeded" and job.progress == 100 and job.owner_id == users["admin"].id
    assert [(i.key, i.label, i.status) for i in job.items] == [
        ("passo-001", "Passo 1 de 3", "done"), ("passo-002", "Passo 2 de 3", "done"),
        ("passo-003", "Passo 3 de 3", "done")]
    assert job.counters == {"feitos": 3, "total": 3}
    assert engine_jobs.kind_label("diagnostico") == "Teste do worker"
    with session_scope(settings) as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "job.create")).actor_id == users["admin"].id


@pytest.mark.parametrize("steps, step_seconds", [
    (0, 1), (-1, 1), (501, 0), ("abc", 1), (True, 1), (None, 1), (2.5, 1), ([3], 1),
    (1, -0.1), (1, float("nan")), (1, float("inf")), (1, 61), (1, "x"), (1, None), (100, 60),
])
def test_diagnostic_refuses_bad_parameters(settings: Settings, recording_queue, steps: Any,  # noqa: ANN001
                                           step_seconds: Any) -> None:
    with session_scope(settings) as s, pytest.raises(ValidationFailed) as err:
        start_diagnostic(s, actor=SYSTEM, steps=steps, step_seconds=step_seconds)
    assert err.value.errors and "teste do worker" in err.value.message
    with session_scope(settings) as s:
        assert s.scalar(select(func.count(Job.id))) == 0
    assert recording_queue.enqueued == []


def test_diagnostic_accepts_numbers_from_forms(settings: Settings, recording_queue) -> None:  # noqa: ANN001
    with session_scope(settings) as s:
        job = start_diagnostic(s, actor=SYSTEM, steps="4", step_seconds="0.5")
        assert job.params == {"steps": 4, "step_seconds": 0.5}


def test_list_filters_and_paging(settings: Settings, recording_queue,  # noqa: ANN001
                                 users: dict[str, User]) -> None:
    a = new_job(settings, kind="alfa", owner=users["staff"])
    b = new_job(settings, kind="beta", owner=users["staff"])
    c = new_job(settings, kind="alfa", owner=users["analyst"])
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == b).values(status="failed"))
        s.execute(update(Job).where(Job.id == a).values(created_at=utcnow() - timedelta(days=3)))
    admin = users["admin"]
    with session_scope(settings) as s:
        def ids(**filters: Any) -> list[int]:
            rows, total = list_jobs(s, actor=admin, **filters)
            assert total >= len(rows)
            return [j.id for j in rows]

        assert ids() == [c, b, a]
        assert ids(kind="alfa") == [c, a]
        assert ids(status="failed") == [b]
        assert ids(status="queued", kind="alfa") == [c, a]
        assert ids(since=utcnow() - timedelta(days=1)) == [c, b]
        assert ids(until=utcnow() - timedelta(days=1)) == [a]
        assert ids(owner_id=users["analyst"].id) == [c]
        rows, total = list_jobs(s, actor=admin, limit=1, offset=1)
        assert [j.id for j in rows] == [b] and total == 3
        assert len(list_jobs(s, actor=admin, limit=10**9)[0]) == 3
        assert list_jobs(s, actor=admin, limit=0, offset=-5)[0][0].id == c
        with pytest.raises(ValidationFailed):
            list_jobs(s, actor=admin, status="exploded")
        assert counts_by_kind_status(s) and ("beta", "failed", 1) in counts_by_kind_status(s)


@pytest.mark.parametrize("bad_id", ["abc", -1, 0, True, 2**40, None, "1; drop table jobs", 1.5])
def test_get_job_with_a_bad_id_is_not_found(settings: Settings, bad_id: Any) -> None:
    with session_scope(settings) as s, pytest.raises(NotFound):
        get_job(s, actor=SYSTEM, job_id=bad_id)


def test_get_job_accepts_an_id_from_a_url(settings: Settings, recording_queue) -> None:  # noqa: ANN001
    job_id = new_job(settings)
    with session_scope(settings) as s:
        assert get_job(s, actor=SYSTEM, job_id=str(job_id)).id == job_id


@pytest.mark.parametrize("params", [{"x": object()}, {"x": float("nan")}, ["not", "a", "dict"], "text"])
def test_create_job_refuses_parameters_that_are_not_json(settings: Settings, recording_queue,  # noqa: ANN001
                                                         params: Any) -> None:
    with session_scope(settings) as s, pytest.raises(ValidationFailed):
        create_job(s, kind="teste", owner=SYSTEM, params=params)
    assert recording_queue.enqueued == []


# Enqueueing after commit --------------------------------------------------------------------------

def test_job_is_enqueued_only_after_commit(settings: Settings, recording_queue) -> None:  # noqa: ANN001
    with session_scope(settings) as s:
        job = create_job(s, kind="teste", owner=SYSTEM)
        assert recording_queue.enqueued == []
    assert recording_queue.enqueued == [(job.id, 0.0)]
    with pytest.raises(RuntimeError), session_scope(settings) as s:
        create_job(s, kind="teste", owner=SYSTEM)
        raise RuntimeError("the caller fails after creating the job")
    assert len(recording_queue.enqueued) == 1
    with session_scope(settings) as s:
        assert s.scalar(select(func.count(Job.id))) == 1


def test_failed_enqueue_keeps_the_job_and_the_sweep_recovers_it(settings: Settings) -> None:
    class BrokenQueue(queue_port.RecordingQueue):
        def enqueue(self, job_id: int, *, delay: float = 0) -> str:
            raise ConnectionError("redis is down")

    queue_port.install(BrokenQueue())
    try:
        job_id = new_job(settings)  # commits even though the enqueue fails
        assert load(settings, job_id).status == "queued"
        recovered = queue_port.RecordingQueue()
        queue_port.install(recovered)
        assert sweep_stale_jobs(settings=settings)["requeued"] == []  # not old enough yet
        later = utcnow() + timedelta(seconds=settings.job_stale_seconds + 1)
        assert sweep_stale_jobs(settings=settings, now=later)["requeued"] == [job_id]
        assert recovered.enqueued == [(job_id, 0)]
        # While the queue holds messages, queued jobs are simply waiting their turn.
        assert sweep_stale_jobs(settings=settings, now=later)["requeued"] == []
    finally:
        queue_port.install(None)


def test_dedupe_key_returns_the_active_job(settings: Settings, recording_queue) -> None:  # noqa: ANN001
    first = new_job(settings, dedupe_key="processo:123")
    assert new_job(settings, dedupe_key="processo:123") == first
    assert len(recording_queue.enqueued) == 1
    other = new_job(settings, dedupe_key="processo:999")
    assert other != first
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == first).values(status="succeeded"))
    assert new_job(settings, dedupe_key="processo:123") not in (first, other)


# Running ----------------------------------------------------------------------------------------------

def test_progress_is_throttled_but_the_final_state_is_written(settings: Settings, inline_queue,  # noqa: ANN001
                                                              handler) -> None:  # noqa: ANN001
    writes: list[int] = []

    @handler("teste.progresso")
    def run(ctx: JobContext) -> dict[str, Any]:
        original = ctx._state
        ctx._state = lambda: (writes.append(1), original())[1]  # count progress writes
        for i in range(1, 201):
            ctx.progress(i / 2, message=f"linha {i}", counters={"linhas": i})
        writes.append(0)
        return {"linhas": 200}

    job = load(settings, new_job(settings, kind="teste.progresso"))
    assert job.status == "succeeded" and job.progress == 100
    assert job.message == "linha 200" and job.counters == {"linhas": 200} and job.result == {"linhas": 200}
    assert 1 <= writes.index(0) < 20  # 200 calls, a handful of writes


def test_a_failure_keeps_error_traceback_and_last_progress(settings: Settings, inline_queue,  # noqa: ANN001
                                                           handler) -> None:  # noqa: ANN001
    @handler("teste.falha")
    def run(ctx: JobContext) -> None:
        ctx.progress(10, message="começando", force=True)
        ctx.progress(37, message="na linha 37", counters={"ok": 36})  # throttled: written at the end
        raise ValueError("coluna CNPJ ausente")

    job = load(settings, new_job(settings, kind="teste.falha"))
    assert job.status == "failed" and job.error == "ValueError: coluna CNPJ ausente"
    assert "Traceback" in job.traceback and "coluna CNPJ ausente" in job.traceback and "in run" in job.traceback
    assert job.progress == 37 and job.message == "na linha 37" and job.counters == {"ok": 36}
    assert job.finished_at is not None and job.attempts == 1


def test_unknown_kind_fails_with_a_clear_error(settings: Settings, inline_queue) -> None:  # noqa: ANN001
    job = load(settings, new_job(settings, kind="nao.existe"))
    assert job.status == "failed" and "nao.existe" in job.error


def test_a_duplicate_delivery_does_nothing(settings: Settings, recording_queue, handler) -> None:  # noqa: ANN001
    runs: list[int] = []
    barrier = threading.Barrier(2)

    @handler("teste.contagem")
    def run(ctx: JobContext) -> None:
        runs.append(ctx.attempt)

    job_id = new_job(settings, kind="teste.contagem")
    results: list[str] = []

    def deliver() -> None:
        barrier.wait()
        results.append(run_job(job_id, settings=settings))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["skipped", "succeeded"] and runs == [1]
    assert run_job(job_id, settings=settings) == "skipped"
    assert load(settings, job_id).attempts == 1


def test_a_rerun_skips_items_already_done(settings: Settings, recording_queue) -> None:  # noqa: ANN001
    with session_scope(settings) as s:
        job_id = start_diagnostic(s, actor=SYSTEM, steps=4, step_seconds=0).id
    with session_scope(settings) as s:  # an earlier attempt did two items, then its worker died
        s.execute(update(Job).where(Job.id == job_id).values(attempts=1))
        s.add_all([JobItem(job_id=job_id, key="passo-001", status="done", attempts=1),
                   JobItem(job_id=job_id, key="passo-002", status="done", attempts=1),
                   JobItem(job_id=job_id, key="passo-003", status="processing", attempts=1)])
    assert run_job(job_id, settings=settings) == "succeeded"
    job = load(settings, job_id)
    assert job.attempts == 2 and job.result["pulados"] == 2
    assert {i.key: (i.status, i.attempts) for i in job.items} == {
        "passo-001": ("done", 1), "passo-002": ("done", 1), "passo-003": ("done", 2), "passo-004": ("done", 1)}


def test_cancel_a_queued_job_at_once(settings: Settings, recording_queue,  # noqa: ANN001
                                     users: dict[str, User]) -> None:
    job_id = new_job(settings, owner=users["staff"])
    with session_scope(settings) as s:
        job = cancel_job(s, actor=users["staff"], job_id=job_id)
        assert job.status == "cancelled" and job.finished_at is not None
    assert run_job(job_id, settings=settings) == "skipped"
    assert load(settings, job_id).attempts == 0
    with session_scope(settings) as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "job.cancel")).entity_id == str(job_id)
        with pytest.raises(Conflict):
            cancel_job(s, actor=users["staff"], job_id=job_id)


def test_cancel_a_running_job_stops_at_the_next_check(settings: Settings, inline_queue,  # noqa: ANN001
                                                      handler, users: dict[str, User]) -> None:  # noqa: ANN001
    done: list[int] = []

    @handler("teste.longo")
    def run(ctx: JobContext) -> None:
        ctx.set_items([(str(i), f"item {i}") for i in range(10)])
        for i in range(10):
            ctx.check_cancelled()
            if i == 3:  # the user presses "Cancelar" while item 3 runs
                with session_scope(ctx.settings) as s:
                    job = cancel_job(s, actor=users["analyst"], job_id=ctx.job_id)
                    assert job.status == "running"
            ctx.set_item(str(i), "done")
            done.append(i)

    job = load(settings, new_job(settings, kind="teste.longo", owner=users["analyst"]))
    assert job.status == "cancelled" and done == [0, 1, 2, 3] and job.cancel_requested
    assert [i.status for i in job.items].count("pending") == 6


def test_cancel_and_retry_permissions(settings: Settings, recording_queue,  # noqa: ANN001
                                      users: dict[str, User]) -> None:
    viewer_job = new_job(settings, owner=users["viewer"])
    staff_job = new_job(settings, owner=users["staff"])
    with session_scope(settings) as s:
        with pytest.raises(PermissionDenied):
            cancel_job(s, actor=users["viewer"], job_id=viewer_job)  # viewers only look
        with pytest.raises(NotFound):
            cancel_job(s, actor=users["analyst"], job_id=staff_job)  # not theirs: invisible
        assert cancel_job(s, actor=users["admin"], job_id=staff_job).status == "cancelled"
        s.execute(update(Job).where(Job.id == viewer_job).values(status="failed"))
    with session_scope(settings) as s:
        with pytest.raises(PermissionDenied):
            retry_job(s, actor=users["viewer"], job_id=viewer_job)
        with pytest.raises(NotFound):
            retry_job(s, actor=users["analyst"], job_id=staff_job)


def test_retry_creates_a_new_job_that_runs(settings: Settings, inline_queue, handler,  # noqa: ANN001
                                           users: dict[str, User]) -> None:
    attempts: list[int] = []

    @handler("teste.instavel")
    def run(ctx: JobContext) -> dict[str, Any]:
        attempts.append(ctx.job_id)
        if len(attempts) == 1:
            raise ConnectionError("tribunal fora do ar")
        return {"ok": ctx.params["processo"]}

    failed = new_job(settings, kind="teste.instavel", owner=users["staff"], params={"processo": "123"})
    assert load(settings, failed).status == "failed"
    with session_scope(settings) as s:
        new = retry_job(s, actor=users["staff"], job_id=failed)
        new_id = new.id
    job = load(settings, new_id)
    assert new_id != failed and job.retry_of_id == failed and job.status == "succeeded"
    assert job.result == {"ok": "123"} and job.owner_id == users["staff"].id and job.attempts == 1
    assert load(settings, failed).status == "failed"  # the old attempt keeps its story
    with session_scope(settings) as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "job.retry")).entity_id == str(failed)


def test_retry_conflicts(settings: Settings, recording_queue, users: dict[str, User]) -> None:  # noqa: ANN001
    active = new_job(settings, owner=users["staff"], dedupe_key="processo:1")
    with session_scope(settings) as s, pytest.raises(Conflict):
        retry_job(s, actor=users["staff"], job_id=active)  # still queued
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == active).values(status="failed"))
    newer = new_job(settings, owner=users["staff"], dedupe_key="processo:1")
    with session_scope(settings) as s, pytest.raises(Conflict) as err:
        retry_job(s, actor=users["staff"], job_id=active)  # an equal job already runs
    assert err.value.active_job_id == newer


def test_retry_needs_the_permission_of_the_kind(settings: Settings, recording_queue,  # noqa: ANN001
                                                users: dict[str, User]) -> None:
    job_id = new_job(settings, kind="diagnostico", owner=users["staff"], params={"steps": 1, "step_seconds": 0})
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="failed"))
    with session_scope(settings) as s, pytest.raises(PermissionDenied):
        retry_job(s, actor=users["staff"], job_id=job_id)


# The sweep and the queue's reports ------------------------------------------------------------------

def _running(settings: Settings, job_id: int, *, silent_for: float, attempts: int = 1, **values: Any) -> None:
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            status="running", attempts=attempts, task_id="task-1", worker="host:1:Worker-1",
            heartbeat_at=utcnow() - timedelta(seconds=silent_for), **values))


def test_sweep_requeues_silent_jobs_and_gives_up_after_max_attempts(settings: Settings,  # noqa: ANN001
                                                                    recording_queue) -> None:
    stale = new_job(settings)
    fresh = new_job(settings)
    exhausted = new_job(settings)
    cancelling = new_job(settings)
    recording_queue.enqueued.clear()
    _running(settings, stale, silent_for=settings.job_stale_seconds + 5)
    _running(settings, fresh, silent_for=1)
    _running(settings, exhausted, silent_for=settings.job_stale_seconds + 5, attempts=settings.job_max_attempts)
    _running(settings, cancelling, silent_for=settings.job_stale_seconds + 5, cancel_requested=True)
    result = sweep_stale_jobs(settings=settings)
    assert result == {"requeued": [stale], "failed": [exhausted], "cancelled": [cancelling]}
    assert [jid for jid, _ in recording_queue.enqueued] == [stale]
    assert load(settings, stale).status == "queued" and "host:1:Worker-1" in load(settings, stale).message
    assert load(settings, fresh).status == "running"
    assert load(settings, exhausted).status == "failed" and "desistindo" in load(settings, exhausted).error
    assert load(settings, cancelling).status == "cancelled"
    assert sweep_stale_jobs(settings=settings)["requeued"] == []  # nothing twice


def test_a_superseded_run_stops_without_overwriting(settings: Settings, recording_queue,  # noqa: ANN001
                                                    handler) -> None:  # noqa: ANN001
    seen: dict[str, Any] = {}

    @handler("teste.zumbi")
    def run(ctx: JobContext) -> None:
        ctx.set_item("a", "done")
        with session_scope(ctx.settings) as s:  # meanwhile the sweep gave the job to another worker
            s.execute(update(Job).where(Job.id == ctx.job_id).values(attempts=Job.attempts + 1))
        seen["beat"] = ctx.heartbeat()
        ctx.progress(99, message="zumbi", force=True)  # refused
        try:
            ctx.set_item("b", "done")
        except engine_jobs.JobSuperseded:
            seen["set_item refused"] = True
        try:
            ctx.check_cancelled()
        except engine_jobs.JobSuperseded:
            seen["stopped"] = True
            raise

    job_id = new_job(settings, kind="teste.zumbi")
    assert run_job(job_id, settings=settings) == "superseded"
    assert seen == {"beat": False, "set_item refused": True, "stopped": True}
    job = load(settings, job_id)
    assert job.status == "running" and job.attempts == 2 and job.progress == 0 and job.message != "zumbi"
    assert [i.key for i in job.items] == ["a"]


def test_what_the_queue_reports_is_fenced_by_task(settings: Settings, recording_queue) -> None:  # noqa: ANN001
    job_id = new_job(settings)
    recording_queue.enqueued.clear()
    engine_jobs.record_task(job_id, task_id="task-1", settings=settings)
    assert load(settings, job_id).task_id == "task-1"
    _running(settings, job_id, silent_for=0)
    # Another delivery's task cannot release or fail this run.
    assert not engine_jobs.release_job(job_id, task_id="task-2", reason="x", settings=settings)
    assert not engine_jobs.fail_job(job_id, task_id="task-2", error="x", traceback="", settings=settings)
    engine_jobs.record_task(job_id, task_id="task-2", settings=settings)  # running: not overwritten
    assert load(settings, job_id).task_id == "task-1"
    assert engine_jobs.release_job(job_id, task_id="task-1", reason="encerrado", settings=settings)
    assert load(settings, job_id).status == "queued" and recording_queue.enqueued == [(job_id, 0)]
    _running(settings, job_id, silent_for=0)
    assert engine_jobs.fail_job(job_id, task_id="task-1", error="OperationalError: db", traceback="Traceback...",
                                settings=settings)
    job = load(settings, job_id)
    assert job.status == "failed" and job.error == "OperationalError: db" and job.finished_at is not None
    other = new_job(settings)
    assert engine_jobs.cancel_from_queue(other, reason="revogado", settings=settings)
    assert load(settings, other).status == "cancelled"
    assert not engine_jobs.cancel_from_queue(job_id, reason="revogado", settings=settings)  # finished


def test_concurrent_creates_with_one_dedupe_key_make_one_job(pg_settings, recording_queue) -> None:
    """Two transactions that both miss the active job still end with one: the partial unique index decides."""
    import threading

    from engine.db import session_scope
    from engine.jobs import create_job
    from engine.security import SYSTEM

    first_flushed = threading.Event()
    ids: dict[str, int] = {}

    def first() -> None:
        with session_scope(pg_settings) as s:
            ids["first"] = create_job(s, kind="diagnostico", owner=SYSTEM, dedupe_key="same-key").id
            first_flushed.set()
            time.sleep(0.5)  # the second transaction blocks on the unique index meanwhile

    def second() -> None:
        first_flushed.wait(5)
        with session_scope(pg_settings) as s:
            # the pre-check cannot see the uncommitted row, so this reaches the insert and the index
            ids["second"] = create_job(s, kind="diagnostico", owner=SYSTEM, dedupe_key="same-key").id

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert ids["first"] == ids["second"]
    with session_scope(pg_settings) as s:
        from sqlalchemy import func, select

        from engine.models import Job

        assert s.scalar(select(func.count(Job.id)).where(Job.dedupe_key == "same-key")) == 1
    assert [job_id for job_id, _ in recording_queue.enqueued] == [ids["first"]]


# A worker process that is shutting down ---------------------------------------------------------------

@pytest.fixture
def interrupted() -> Any:
    """This process noted a shutdown signal (as a process worker's child does on SIGTERM)."""
    engine_jobs.note_interrupt()
    yield
    engine_jobs.clear_interrupt()


def test_an_error_after_the_shutdown_signal_hands_the_job_back_instead_of_failing_it(
        settings: Settings, recording_queue, handler, interrupted) -> None:  # noqa: ANN001
    @handler("teste.interrompido")
    def run(ctx: JobContext) -> None:
        ctx.set_item("a", "done")
        # What the shutdown's KeyboardInterrupt may become on its way: here, a failed rollback.
        raise sa_exc.InvalidRequestError("Method 'rollback()' can't be called here")

    job_id = new_job(settings, kind="teste.interrompido")
    with pytest.raises(engine_jobs.JobInterrupted) as raised:
        run_job(job_id, settings=settings, task_id="task-1")
    assert isinstance(raised.value, KeyboardInterrupt)  # what the queue treats as its interrupt
    job = load(settings, job_id)
    assert job.status == "running" and job.error == "" and job.finished_at is None  # not recorded as failed
    assert engine_jobs.release_job(job_id, task_id="task-1", reason="encerrado", settings=settings)
    assert load(settings, job_id).status == "queued"


def test_check_cancelled_stops_a_run_once_the_shutdown_signal_was_noted(
        settings: Settings, recording_queue, handler) -> None:  # noqa: ANN001
    steps: list[str] = []

    @handler("teste.desligando")
    def run(ctx: JobContext) -> None:
        for key in ("a", "b", "c"):
            ctx.check_cancelled()
            ctx.set_item(key, "done")
            steps.append(key)
            if key == "a":  # the signal arrived, and its exception was swallowed (a finaliser ran)
                engine_jobs.note_interrupt()

    job_id = new_job(settings, kind="teste.desligando")
    try:
        with pytest.raises(engine_jobs.JobInterrupted):
            run_job(job_id, settings=settings, task_id="task-1")
    finally:
        engine_jobs.clear_interrupt()
    assert steps == ["a"] and load(settings, job_id).status == "running"
    assert run_job(job_id, settings=settings) == "skipped"  # still held by the interrupted run
