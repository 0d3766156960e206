"""Huey signal handlers that keep Job rows true when Huey, not ``engine.jobs.run_job``, ends a task.

``run_job`` records every outcome of the handler itself. What it cannot record is Huey stopping a task
from outside: the consumer shutting down mid-task (interrupted: the job goes back to the queue), an
exception escaping ``run_job`` such as the database going away (error: failed, with the traceback, if the
run still holds the job), a revoked or cancelled task (the job will not run: cancelled), and Huey's own
retries (the job goes back to queued for the retry to claim). Anything these handlers cannot write (the
database is down) is caught by the stale-job sweep later.
"""

from __future__ import annotations

import logging
import signal
import threading
import traceback
from typing import TYPE_CHECKING, Any

from huey import signals as S

from engine import jobs as engine_jobs
from jobs.tasks import job_id_of

if TYPE_CHECKING:
    from jobs.app import OficinaHuey

log = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "Reenfileirado: o worker foi encerrado durante a execução."


def connect(huey: OficinaHuey) -> None:
    settings = huey.settings

    def release(task: Any, job_id: int) -> None:
        try:
            engine_jobs.release_job(job_id, task_id=task.id, reason=INTERRUPTED_MESSAGE, settings=settings)
        finally:
            # The interrupt was for that run: a child that was not stopping goes on serving (a signal
            # sent to it alone interrupts its task, as in Huey).
            engine_jobs.clear_interrupt()

    @huey.on_startup("oficina-note-interrupts")
    def note_interrupts() -> None:
        # A process worker's child gets SIGTERM when the consumer stops, and Huey's handler raises
        # KeyboardInterrupt wherever the task is. Noting it first lets engine.jobs hand the job back even
        # when that exception turns into another one or is swallowed on its way (see engine.jobs).
        # Thread workers never get the signal: the consumer reports their tasks as interrupted itself.
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return

        def on_sigterm(signum: int, frame: Any) -> None:
            if huey._tasks_in_flight:  # what Huey's own handler checks before it interrupts the task
                engine_jobs.note_interrupt()
            previous(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)

    @huey.signal(S.SIGNAL_EXECUTING)
    def on_executing(signal: str, task: Any) -> None:
        job_id = job_id_of(task)
        if job_id is not None:
            engine_jobs.record_task(job_id, task_id=task.id, settings=settings)

    @huey.signal(S.SIGNAL_COMPLETE)
    def on_complete(signal: str, task: Any) -> None:
        job_id = job_id_of(task)
        if job_id is not None:
            log.debug("task %s for job %s complete", task.id, job_id)
        engine_jobs.clear_interrupt()  # an interrupt that came too late for this run is not for the next

    @huey.signal(S.SIGNAL_ERROR)
    def on_error(signal: str, task: Any, exc: BaseException | None = None) -> None:
        job_id = job_id_of(task)
        if job_id is None:
            return
        if engine_jobs.interrupt_noted():  # the shutdown's interrupt, turned into another exception
            release(task, job_id)
            return
        error = f"{type(exc).__name__}: {exc}" if exc is not None else "erro desconhecido"
        trace = "".join(traceback.format_exception(exc)) if exc is not None else ""
        if engine_jobs.fail_job(job_id, task_id=task.id, error=error, traceback=trace, settings=settings):
            log.error("job %s failed outside its handler: %s", job_id, error)

    @huey.signal(S.SIGNAL_INTERRUPTED)
    def on_interrupted(signal: str, task: Any) -> None:
        job_id = job_id_of(task)
        if job_id is not None:
            release(task, job_id)

    @huey.signal(S.SIGNAL_RETRYING)
    def on_retrying(signal: str, task: Any) -> None:
        # Huey re-delivers the same task itself, so the row only needs to be claimable again.
        job_id = job_id_of(task)
        if job_id is not None:
            engine_jobs.release_job(job_id, task_id=task.id, reason="Nova tentativa agendada pela fila.",
                                    settings=settings, enqueue=False)

    @huey.signal(S.SIGNAL_REVOKED, S.SIGNAL_CANCELED, S.SIGNAL_EXPIRED)
    def on_dropped(signal: str, task: Any) -> None:
        job_id = job_id_of(task)
        if job_id is not None:
            engine_jobs.cancel_from_queue(job_id, reason=f"Cancelado pela fila ({signal}).", settings=settings)
