"""Thin Huey tasks: every job goes through ``engine.jobs.run_job``, which owns the Job row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from huey.api import Task, TaskWrapper

from engine import jobs as engine_jobs

if TYPE_CHECKING:
    from jobs.app import OficinaHuey

RUN_JOB_TASK = f"{__name__}.run_job"


def register(huey: OficinaHuey) -> TaskWrapper:
    """Register ``run_job`` on ``huey``; the task runs with the settings that built it."""
    settings = huey.settings

    def run_job(job_id: int, task: Task | None = None) -> str:
        return engine_jobs.run_job(int(job_id), settings=settings, task_id=task.id if task else None)

    return huey.task(context=True)(run_job)


def job_id_of(task: Any) -> int | None:
    """The job id a Huey task carries, or None for other tasks (periodic ones)."""
    cls = type(task)
    if f"{cls.__module__}.{cls.__name__}" != RUN_JOB_TASK:
        return None
    args = getattr(task, "args", None) or ()
    try:
        return int(args[0])
    except (IndexError, TypeError, ValueError):
        return None
