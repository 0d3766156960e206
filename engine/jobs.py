"""Background jobs: the Job row is the truth, the queue only carries its id.

A capability registers a handler for its kind with ``@job_handler("kind")``; the handler receives a
``JobContext`` to report progress and counters, keep per-item status, and check for cancellation between
items. ``run_job`` is what the worker calls: it claims the job atomically (so a duplicate delivery does
nothing), beats a heartbeat while the handler runs, and records success, failure (with traceback) or
cancellation.

Huey delivers at most once, so ``sweep_stale_jobs`` re-enqueues running jobs whose heartbeat stopped
(killed worker) and queued jobs whose message was lost; handlers must therefore be safe to run twice.
The pattern, shown by the built-in ``diagnostico`` kind below::

    @job_handler("kind")
    def run(ctx: JobContext) -> dict:
        ctx.set_items([(key, label) for ...])         # existing keys keep their status on a re-run
        done = ctx.items()                             # {key: status}
        for key in keys:
            if done.get(key) == "done":
                continue                               # finished by an earlier attempt: do not redo
            ctx.check_cancelled()                      # between items, outside any try/except
            ctx.set_item(key, "processing", attempt=True)
            ...                                        # the work, idempotent per item
            ctx.set_item(key, "done")
            ctx.progress(percent, counters={...})
        return {...}                                   # stored in Job.result

Every write a run makes is fenced by its attempt number: when the sweep has handed the job to another
worker, the old run's writes are refused and ``check_cancelled`` stops it (``JobSuperseded``).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import socket
import threading
import time
import traceback as tb
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from engine import audit
from engine.db import is_row_id, session_scope
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.models import ACTIVE_STATUSES, ITEM_STATUSES, JOB_STATUSES, Job, JobItem, utcnow
from engine.queue import get_queue
from engine.security import can, is_admin, require
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)

Handler = Callable[["JobContext"], dict[str, Any] | None]
_handlers: dict[str, Handler] = {}
# What the UI shows for each kind, and the permission a retry of that kind needs (its service's own).
KIND_LABELS: dict[str, str] = {}
KIND_PERMISSIONS: dict[str, str] = {}

# Modules whose import registers job handlers (each capability's service module).
HANDLER_MODULES = ["engine.backups", "engine.drafts", "engine.documents", "engine.webhooks", "engine.imports"]

MAX_LIST_LIMIT = 500


class JobCancelled(Exception):
    """Raised inside a handler by ``JobContext.check_cancelled`` when a cancel was requested.

    Call ``check_cancelled`` outside per-item ``try/except Exception`` blocks, or re-raise it."""


class JobSuperseded(JobCancelled):
    """This run no longer owns its job (the sweep gave it to another worker): stop without writing."""


class JobInterrupted(KeyboardInterrupt):
    """The worker process is shutting down: the run stops and its job goes back to the queue.

    A ``KeyboardInterrupt`` so the queue treats it as its own interrupt (Huey: SIGNAL_INTERRUPTED)."""


# Set in a worker process when its shutdown signal arrived (``note_interrupt``). The queue delivers that
# signal as an exception raised wherever the run happens to be, and Python sometimes turns it into
# another one (a failed rollback, an import's RuntimeError) or swallows it (a finaliser): with the flag,
# such a run is still handed back instead of recorded as failed, and ``check_cancelled`` stops it.
_interrupted = threading.Event()


def note_interrupt() -> None:
    """This process was told to stop: every run in it is being interrupted (called by the queue adapter)."""
    _interrupted.set()


def interrupt_noted() -> bool:
    return _interrupted.is_set()


def clear_interrupt() -> None:
    _interrupted.clear()


def job_handler(kind: str, *, label: str | None = None, permission: str | None = None
                ) -> Callable[[Handler], Handler]:
    """Register the handler of ``kind``; ``label`` is the pt-BR name shown in the UI and ``permission``
    the one its service requires (checked again when someone retries a job of this kind)."""
    def register(fn: Handler) -> Handler:
        _handlers[kind] = fn
        if label:
            KIND_LABELS[kind] = label
        if permission:
            KIND_PERMISSIONS[kind] = permission
        return fn

    return register


def load_handlers() -> dict[str, Handler]:
    for name in HANDLER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return dict(_handlers)


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"[:120]


# Creating and enqueueing -------------------------------------------------------------------------------

_PENDING = "oficina_pending_jobs"
_HOOKED = "oficina_jobs_hooked"


def _enqueue_after_commit(session: Session, job_id: int, delay: float = 0) -> None:
    """Enqueue ``job_id`` once ``session`` commits, so the worker always finds the row.

    A failed enqueue is logged, not raised: the row is committed and ``sweep_stale_jobs`` re-enqueues
    queued jobs whose message never reached the queue."""
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        event.listen(session, "after_commit", _enqueue_pending)
        event.listen(session, "after_rollback", _drop_pending)
    session.info.setdefault(_PENDING, []).append((job_id, delay))


def _enqueue_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    if not pending:
        return
    try:
        queue = get_queue()
    except Exception:
        log.exception("no job queue available; jobs %s stay queued until the sweep", [j for j, _ in pending])
        return
    for job_id, delay in pending:
        try:
            queue.enqueue(job_id, delay=delay)
        except Exception:
            log.exception("could not enqueue job %s; the sweep will retry", job_id)


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _check_params(params: dict[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValidationFailed("Os parâmetros do job devem ser um objeto JSON.",
                               errors=[{"field": "params", "message": "objeto esperado"}])
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"Parâmetros do job não são JSON válido: {exc}.",
                               errors=[{"field": "params", "message": "JSON inválido"}]) from exc
    return params


def create_job(session: Session, *, kind: str, owner: Any, params: dict[str, Any] | None = None,
               dedupe_key: str | None = None, permission: str | None = None, delay: float = 0) -> Job:
    """Add a queued Job; it is enqueued when ``session`` commits (so the worker always finds the row).

    With ``dedupe_key``, an active job with the same key is returned instead of a new one."""
    if permission:
        require(owner, permission)
    if not isinstance(kind, str) or not kind or len(kind) > 50:
        raise ValidationFailed("Tipo de job inválido.", errors=[{"field": "kind", "message": "inválido"}])
    params = _check_params(params)
    if dedupe_key is not None and (not isinstance(dedupe_key, str) or len(dedupe_key) > 200):
        raise ValidationFailed("Chave de deduplicação inválida (texto de até 200 caracteres).",
                               errors=[{"field": "dedupe_key", "message": "inválida"}])
    if dedupe_key:
        existing = active_job_for_key(session, dedupe_key=dedupe_key)
        if existing is not None:
            return existing
    job = Job(kind=kind, owner_id=getattr(owner, "id", None), params=params, dedupe_key=dedupe_key or None,
              counters={})
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except sa_exc.IntegrityError:
        # A concurrent request created the active job for this key between our check and our insert.
        existing = active_job_for_key(session, dedupe_key=dedupe_key) if dedupe_key else None
        if existing is None:
            raise
        return existing
    audit.record(session, actor=owner, action="job.create", entity_type="job", entity_id=job.id,
                 after={"kind": kind, "params": params})
    _enqueue_after_commit(session, job.id, max(0.0, float(delay or 0)))
    return job


def active_job_for_key(session: Session, *, dedupe_key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.dedupe_key == dedupe_key, Job.status.in_(ACTIVE_STATUSES))
                          .order_by(Job.id.desc()).limit(1))


def _job_id(job_id: Any) -> int:
    """Job ids come from URLs and forms too: anything but a positive integer is simply not found."""
    if isinstance(job_id, bool):
        raise NotFound(f"Job {job_id!r} não encontrado.", entity="job", key=str(job_id))
    if isinstance(job_id, str) and job_id.strip().isdigit():
        job_id = int(job_id.strip())
    if not is_row_id(job_id):
        raise NotFound(f"Job {job_id!r} não encontrado.", entity="job", key=str(job_id))
    return job_id


def get_job(session: Session, *, actor: Any, job_id: int) -> Job:
    require(actor, "jobs.view")
    job_id = _job_id(job_id)
    job = session.get(Job, job_id)
    if job is None or not _may_see(actor, job):
        raise NotFound(f"Job {job_id} não encontrado.", entity="job", key=job_id)
    return job


def _may_see(actor: Any, job: Job) -> bool:
    return is_admin(actor) or (job.owner_id is not None and job.owner_id == getattr(actor, "id", None))


def list_jobs(session: Session, *, actor: Any, kind: str | None = None, status: str | None = None,
              owner_id: int | None = None, since: datetime | None = None, until: datetime | None = None,
              offset: int = 0, limit: int = 50) -> tuple[list[Job], int]:
    """A page of jobs visible to ``actor`` (admins see all, others their own), newest first, and the total."""
    require(actor, "jobs.view")
    if status and status not in JOB_STATUSES:
        raise ValidationFailed(f"Situação desconhecida {status!r}; use uma de: {', '.join(JOB_STATUSES)}.",
                               errors=[{"field": "status", "message": "situação desconhecida"}])
    offset = max(0, int(offset))
    limit = max(1, min(MAX_LIST_LIMIT, int(limit)))
    filters = []
    if not is_admin(actor):
        filters.append(Job.owner_id == getattr(actor, "id", None))
    elif owner_id is not None:
        filters.append(Job.owner_id == owner_id)
    if kind:
        filters.append(Job.kind == kind)
    if status:
        filters.append(Job.status == status)
    if since is not None:
        filters.append(Job.created_at >= since)
    if until is not None:
        filters.append(Job.created_at < until)
    total = session.scalar(select(func.count(Job.id)).where(*filters)) or 0
    rows = session.scalars(select(Job).where(*filters).order_by(Job.id.desc()).offset(offset).limit(limit))
    return list(rows), total


def count_active(session: Session, *, actor: Any) -> int:
    """Queued and running jobs the actor can see (the header's live count)."""
    if not can(actor, "jobs.view"):
        return 0
    query = select(func.count(Job.id)).where(Job.status.in_(ACTIVE_STATUSES))
    if not is_admin(actor):
        query = query.where(Job.owner_id == getattr(actor, "id", None))
    return session.scalar(query) or 0


def counts_by_kind_status(session: Session) -> list[tuple[str, str, int]]:
    return [tuple(row) for row in session.execute(  # type: ignore[misc]
        select(Job.kind, Job.status, func.count(Job.id)).group_by(Job.kind, Job.status))]


def cancel_job(session: Session, *, actor: Any, job_id: int) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next check."""
    job = get_job(session, actor=actor, job_id=job_id)
    if not (can(actor, "jobs.cancel") and _may_see(actor, job)):
        require(actor, "jobs.cancel_any")
    if not job.is_active:
        raise Conflict(f"O job {job.id} já terminou ({job.status}).", entity="job", key=job.id,
                       current=job.status)
    before = {"status": job.status}
    job.cancel_requested = True
    if job.status == "queued":
        job.status = "cancelled"
        job.finished_at = utcnow()
        job.message = "Cancelado antes de iniciar."
    else:
        job.message = "Cancelamento solicitado; o job para no próximo passo."
    audit.record(session, actor=actor, action="job.cancel", entity_type="job", entity_id=job.id,
                 before=before, after={"status": job.status, "cancel_requested": True})
    return job


def retry_job(session: Session, *, actor: Any, job_id: int) -> Job:
    """Start a new attempt of a finished job (same kind and parameters) and return the new job."""
    job = get_job(session, actor=actor, job_id=job_id)
    require(actor, "jobs.retry")
    load_handlers()
    if job.kind in KIND_PERMISSIONS:
        require(actor, KIND_PERMISSIONS[job.kind])
    if job.is_active:
        raise Conflict(f"O job {job.id} ainda está em andamento.", entity="job", key=job.id,
                       current=job.status)
    if job.dedupe_key:
        active = active_job_for_key(session, dedupe_key=job.dedupe_key)
        if active is not None:
            raise Conflict(f"Já existe um job igual em andamento (job {active.id}).", entity="job",
                           key=job.id, current=active.status, active_job_id=active.id)
    new = create_job(session, kind=job.kind, owner=actor, params=dict(job.params), dedupe_key=job.dedupe_key)
    new.retry_of_id = job.id
    audit.record(session, actor=actor, action="job.retry", entity_type="job", entity_id=job.id,
                 after={"new_job_id": new.id})
    return new


# Running ---------------------------------------------------------------------------------------------

class JobContext:
    """What a handler sees of its job. Every write is a short transaction of its own, fenced by
    the attempt: once the job belongs to another run, writes are refused."""

    PROGRESS_INTERVAL = 0.25  # seconds between progress writes (the last state is always written at the end)

    def __init__(self, job_id: int, *, kind: str, params: dict[str, Any], attempt: int, settings: Settings,
                 owner_id: int | None) -> None:
        self.job_id = job_id
        self.kind = kind
        self.params = params
        self.attempt = attempt
        self.settings = settings
        self.owner_id = owner_id
        self._last_progress_write = 0.0
        self._counters: dict[str, Any] = {}
        self._progress: int | None = None
        self._message: str | None = None

    def session(self):  # noqa: ANN201 - context manager
        return session_scope(self.settings)

    def _mine(self):  # noqa: ANN202 - SQL condition
        return (Job.id == self.job_id) & (Job.attempts == self.attempt) & (Job.status == "running")

    def progress(self, percent: float | None = None, *, message: str | None = None,
                 counters: dict[str, Any] | None = None, force: bool = False) -> None:
        """Record progress (0-100), a message and counters; writes at most ~4 times a second unless forced."""
        if counters:
            self._counters.update(counters)
        if percent is not None:
            self._progress = max(0, min(100, int(percent)))
        if message is not None:
            self._message = str(message)[:500]
        now = time.monotonic()
        if not force and now - self._last_progress_write < self.PROGRESS_INTERVAL:
            return
        self._last_progress_write = now
        with self.session() as s:
            s.execute(update(Job).where(self._mine()).values(**self._state(), heartbeat_at=utcnow()))

    def _state(self) -> dict[str, Any]:
        values: dict[str, Any] = {"counters": dict(self._counters)}
        if self._progress is not None:
            values["progress"] = self._progress
        if self._message is not None:
            values["message"] = self._message
        return values

    def heartbeat(self) -> bool:
        """Beat; False when this run no longer owns the job."""
        with self.session() as s:
            return s.execute(update(Job).where(self._mine()).values(heartbeat_at=utcnow())).rowcount == 1

    def cancel_requested(self) -> bool:
        with self.session() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if a cancel was requested, ``JobSuperseded`` if the job moved on,
        ``JobInterrupted`` if the worker process is shutting down."""
        if _interrupted.is_set():
            raise JobInterrupted()
        with self.session() as s:
            row = s.execute(select(Job.cancel_requested, Job.attempts, Job.status)
                            .where(Job.id == self.job_id)).one_or_none()
        if row is None or row.attempts != self.attempt or row.status != "running":
            raise JobSuperseded()
        if row.cancel_requested:
            raise JobCancelled()

    def _ensure_mine(self, s: Session) -> None:
        if s.scalar(select(Job.id).where(self._mine())) is None:
            raise JobSuperseded()

    def set_items(self, items: list[tuple[str, str]]) -> None:
        """Declare the job's items as (key, label); existing keys keep their status (safe on a re-run)."""
        with self.session() as s:
            self._ensure_mine(s)
            known = set(s.scalars(select(JobItem.key).where(JobItem.job_id == self.job_id)))
            seen: set[str] = set()
            for key, label in items:
                key = str(key)[:200]
                if key in known or key in seen:
                    continue
                seen.add(key)
                s.add(JobItem(job_id=self.job_id, key=key, label=str(label)[:300]))

    def items(self) -> dict[str, str]:
        """Every item's status by key (what an earlier attempt already did)."""
        with self.session() as s:
            rows = s.execute(select(JobItem.key, JobItem.status).where(JobItem.job_id == self.job_id))
            return {key: status for key, status in rows}

    def item_status(self, key: str) -> str | None:
        with self.session() as s:
            return s.scalar(select(JobItem.status).where(JobItem.job_id == self.job_id, JobItem.key == key))

    def set_item(self, key: str, status: str, *, error: str = "", label: str | None = None,
                 attempt: bool = False) -> None:
        if status not in ITEM_STATUSES:
            raise ValueError(f"unknown item status {status!r}")
        key = str(key)[:200]
        with self.session() as s:
            self._ensure_mine(s)
            item = s.scalar(select(JobItem).where(JobItem.job_id == self.job_id, JobItem.key == key))
            if item is None:
                item = JobItem(job_id=self.job_id, key=key, label=(label or key)[:300])
                s.add(item)
            item.status = status
            item.error = error[:4000]
            if label is not None:
                item.label = label[:300]
            if attempt:
                item.attempts = (item.attempts or 0) + 1


class _Heartbeat(threading.Thread):
    def __init__(self, ctx: JobContext, interval: float) -> None:
        super().__init__(name=f"heartbeat-{ctx.job_id}", daemon=True)
        self.ctx = ctx
        self.interval = max(0.2, float(interval))
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if not self.ctx.heartbeat():
                    return  # the job finished or moved to another worker
            except Exception:  # a missed beat is not fatal; the next one may succeed
                log.warning("heartbeat failed for job %s", self.ctx.job_id, exc_info=True)


def _claim(job_id: int, settings: Settings, task_id: str | None) -> Job | None:
    """Atomically move a queued job to running. None when it is not queued (duplicate delivery, cancelled)."""
    now = utcnow()
    values: dict[str, Any] = dict(status="running", attempts=Job.attempts + 1,
                                  started_at=func.coalesce(Job.started_at, now), heartbeat_at=now,
                                  worker=worker_name(), error="", traceback="", finished_at=None)
    if task_id:
        values["task_id"] = task_id[:64]
    with session_scope(settings) as s:
        result = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(False))
            .values(**values)
        )
        if result.rowcount != 1:
            return None
        return s.get(Job, job_id)


def run_job(job_id: int, *, settings: Settings | None = None, task_id: str | None = None) -> str:
    """Run one job to its end. Returns the final status; ``skipped`` when there was nothing to do
    (duplicate delivery, cancelled before start) and ``superseded`` when another run took the job over.

    Exceptions other than the handler's (the database going away at the wrong moment) propagate to the
    caller: the Huey signal handlers in ``jobs.signals`` record them, and the sweep covers the rest."""
    settings = settings or get_settings()
    job = _claim(job_id, settings, task_id)
    if job is None:
        log.info("job %s not claimed (not queued any more)", job_id)
        return "skipped"
    handler = load_handlers().get(job.kind)
    ctx = JobContext(job.id, kind=job.kind, params=dict(job.params or {}), attempt=job.attempts,
                     settings=settings, owner_id=job.owner_id)
    ctx._counters = dict(job.counters or {})
    log.info("job %s (%s) started, attempt %s", job.id, job.kind, job.attempts,
             extra={"job_id": job.id, "kind": job.kind})
    beat = _Heartbeat(ctx, settings.job_heartbeat_seconds)
    beat.start()
    final: dict[str, Any]
    try:
        if handler is None:
            raise LookupError(f"nenhum handler registrado para o tipo de job {job.kind!r}")
        result = handler(ctx)
        final = {"status": "succeeded", "progress": 100, "result": result or {}}
        if ctx._message is None:
            final["message"] = "Concluído."
    except JobSuperseded:
        log.warning("job %s attempt %s superseded; stopping without writing", job.id, ctx.attempt)
        return "superseded"
    except JobCancelled:
        final = {"status": "cancelled", "message": "Cancelado pelo usuário."}
    except Exception as exc:  # the job records every failure; the worker goes on
        if _interrupted.is_set():  # the shutdown's interrupt, turned into another exception on its way
            log.warning("job %s (%s) interrupted by the worker's shutdown (%s: %s)", job.id, job.kind,
                        type(exc).__name__, exc)
            raise JobInterrupted() from exc
        log.exception("job %s (%s) failed", job.id, job.kind)
        final = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
                 "traceback": tb.format_exc()[-20000:]}
    finally:
        beat.stopped.set()
        beat.join(timeout=5)
    values = {**ctx._state(), **final, "finished_at": utcnow(), "heartbeat_at": utcnow()}
    with session_scope(settings) as s:
        done = s.execute(update(Job).where(ctx._mine()).values(**values)).rowcount
    if done != 1:
        log.warning("job %s attempt %s lost its claim before finishing", job.id, ctx.attempt)
        return "superseded"
    log.info("job %s (%s) %s", job.id, job.kind, final["status"],
             extra={"job_id": job.id, "kind": job.kind, "status": final["status"]})
    return final["status"]


# What the queue tells us (called by jobs.signals; plain functions so engine never imports huey) ---------

def record_task(job_id: int, *, task_id: str, settings: Settings | None = None) -> None:
    """A queue worker picked up ``task_id`` for this job (it will claim it next)."""
    with session_scope(settings or get_settings()) as s:
        s.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(task_id=task_id[:64]))


def release_job(job_id: int, *, task_id: str, reason: str, settings: Settings | None = None,
                enqueue: bool = True) -> bool:
    """Put a job whose run was interrupted (worker shutdown) back in the queue. True if it was released.
    ``enqueue=False`` when the queue re-delivers the task itself (Huey retries)."""
    with session_scope(settings or get_settings()) as s:
        released = s.execute(
            update(Job).where(Job.id == job_id, Job.status == "running", Job.task_id == task_id[:64])
            .values(status="queued", message=reason[:500], heartbeat_at=utcnow())
        ).rowcount == 1
        if released and enqueue:
            _enqueue_after_commit(s, job_id)
    if released:
        log.warning("job %s released back to the queue: %s", job_id, reason)
    return released


def fail_job(job_id: int, *, task_id: str, error: str, traceback: str, settings: Settings | None = None) -> bool:
    """Record a failure that escaped ``run_job`` (e.g. the database went away), if the run still holds it."""
    with session_scope(settings or get_settings()) as s:
        return s.execute(
            update(Job).where(Job.id == job_id, Job.status == "running", Job.task_id == task_id[:64])
            .values(status="failed", error=error[:2000], traceback=traceback[-20000:], finished_at=utcnow(),
                    message="Falhou fora do handler (veja o traceback).")
        ).rowcount == 1


def cancel_from_queue(job_id: int, *, reason: str, settings: Settings | None = None) -> bool:
    """The queue dropped the task (revoked or cancelled): the job will not run, so it is cancelled."""
    with session_scope(settings or get_settings()) as s:
        return s.execute(
            update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES))
            .values(status="cancelled", cancel_requested=True, finished_at=utcnow(), message=reason[:500])
        ).rowcount == 1


# Sweeping --------------------------------------------------------------------------------------------

def sweep_stale_jobs(*, settings: Settings | None = None, now: datetime | None = None) -> dict[str, list[int]]:
    """Re-enqueue running jobs whose heartbeat stopped (killed worker) and fail those out of attempts;
    re-enqueue queued jobs whose message is not in the queue any more (lost enqueue)."""
    settings = settings or get_settings()
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.job_stale_seconds)
    requeued: list[int] = []
    failed: list[int] = []
    cancelled: list[int] = []
    with session_scope(settings) as s:
        stale = s.scalars(select(Job).where(Job.status == "running", Job.heartbeat_at < cutoff)
                          .order_by(Job.id).with_for_update(skip_locked=True)).all()
        for job in stale:
            job.heartbeat_at = now
            if job.cancel_requested:
                job.status = "cancelled"
                job.finished_at = now
                job.message = "Cancelado (o worker parou antes de confirmar)."
                cancelled.append(job.id)
            elif job.attempts >= settings.job_max_attempts:
                job.status = "failed"
                job.error = f"O worker parou {job.attempts} vezes; desistindo."
                job.finished_at = now
                failed.append(job.id)
            else:
                job.status = "queued"
                job.message = f"Reenfileirado: o worker {job.worker} parou de responder."
                requeued.append(job.id)
                _enqueue_after_commit(s, job.id)
    lost = _requeue_lost(settings, cutoff)
    if requeued or failed or cancelled or lost:
        log.warning("sweep: requeued %s, lost messages %s, gave up on %s, cancelled %s",
                    requeued, lost, failed, cancelled)
    return {"requeued": requeued + lost, "failed": failed, "cancelled": cancelled}


def _requeue_lost(settings: Settings, cutoff: datetime) -> list[int]:
    """Queued for a while, and the queue is empty: the message was lost (enqueue failed, storage wiped)."""
    try:
        if get_queue().size() > 0:
            return []
    except Exception:
        log.warning("sweep: queue unavailable; lost messages not checked", exc_info=True)
        return []
    with session_scope(settings) as s:
        ids = list(s.scalars(select(Job.id).where(
            Job.status == "queued", Job.cancel_requested.is_(False),
            func.coalesce(Job.heartbeat_at, Job.created_at) < cutoff).order_by(Job.id).limit(1000)))
        for job_id in ids:
            _enqueue_after_commit(s, job_id)
    return ids


# The diagnostic job ("Teste do worker") ---------------------------------------------------------------

DIAGNOSTIC_KIND = "diagnostico"
DIAGNOSTIC_MAX_STEPS = 500
DIAGNOSTIC_MAX_STEP_SECONDS = 60.0
DIAGNOSTIC_MAX_SECONDS = 3600.0


def _diagnostic_params(steps: Any, step_seconds: Any) -> dict[str, Any]:
    errors = []
    if isinstance(steps, bool) or not isinstance(steps, int | str):
        n = None
    else:
        try:
            n = int(steps)
        except ValueError:
            n = None
    if n is None or not 1 <= n <= DIAGNOSTIC_MAX_STEPS:
        errors.append({"field": "steps", "message": f"inteiro de 1 a {DIAGNOSTIC_MAX_STEPS}"})
    if isinstance(step_seconds, bool) or not isinstance(step_seconds, int | float | str):
        secs = None
    else:
        try:
            secs = float(step_seconds)
        except ValueError:
            secs = None
    if secs is None or not math.isfinite(secs) or not 0 <= secs <= DIAGNOSTIC_MAX_STEP_SECONDS:
        errors.append({"field": "step_seconds", "message": f"segundos de 0 a {DIAGNOSTIC_MAX_STEP_SECONDS:g}"})
    if not errors and n * secs > DIAGNOSTIC_MAX_SECONDS:  # type: ignore[operator]
        errors.append({"field": "steps", "message": "o teste pode durar no máximo 1 hora"})
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationFailed(f"Parâmetros do teste do worker inválidos ({detail}).", errors=errors)
    return {"steps": n, "step_seconds": secs}


def start_diagnostic(session: Session, *, actor: Any, steps: int = 5, step_seconds: float = 1.0) -> Job:
    """Start a "Teste do worker" job: N steps of ``step_seconds`` each, to check that workers run jobs,
    report progress and honour cancellation. Admins only."""
    require(actor, "jobs.diagnostic")
    params = _diagnostic_params(steps, step_seconds)
    return create_job(session, kind=DIAGNOSTIC_KIND, owner=actor, params=params)


@job_handler(DIAGNOSTIC_KIND, label="Teste do worker", permission="jobs.diagnostic")
def _run_diagnostic(ctx: JobContext) -> dict[str, Any]:
    params = _diagnostic_params(ctx.params.get("steps"), ctx.params.get("step_seconds"))
    steps, step_seconds = params["steps"], params["step_seconds"]
    keys = [f"passo-{i:03d}" for i in range(1, steps + 1)]
    ctx.set_items([(key, f"Passo {i} de {steps}") for i, key in enumerate(keys, start=1)])
    statuses = ctx.items()
    done = sum(1 for key in keys if statuses.get(key) == "done")
    skipped = done
    ctx.progress(100 * done / steps, message=f"{done} de {steps} passos", counters={"feitos": done,
                 "total": steps}, force=True)
    for i, key in enumerate(keys, start=1):
        if statuses.get(key) == "done":
            continue
        ctx.check_cancelled()
        ctx.set_item(key, "processing", attempt=True)
        time.sleep(step_seconds)
        ctx.set_item(key, "done")
        done += 1
        ctx.progress(100 * done / steps, message=f"Passo {i} de {steps} concluído",
                     counters={"feitos": done, "total": steps})
    return {"passos": steps, "pulados": skipped, "tentativa": ctx.attempt, "worker": worker_name()}
