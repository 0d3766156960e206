"""Periodic tasks: the stale-job sweep, the expired-drafts sweep and the daily backup.

Huey's scheduler checks periodic tasks once a minute, against UTC timestamps (``utc=True``). Each
consumer runs a scheduler unless started with ``--no-periodic``; the daily backup takes a lock in the
queue's storage so that several consumers sharing a queue still start one backup a day. The sweep is
safe to run in every consumer at once.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from engine import jobs as engine_jobs
from engine.settings import Settings

if TYPE_CHECKING:
    from jobs.app import OficinaHuey

log = logging.getLogger(__name__)

Validator = Callable[[datetime], bool]


def _local(timestamp: datetime) -> datetime:
    """Huey's naive UTC timestamp as server-local time (BACKUP_HOUR is in server time)."""
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return timestamp.astimezone()


def sweep_schedule(settings: Settings) -> Validator:
    """Every minute (Huey's finest periodic granularity)."""
    return lambda timestamp: True


def backup_schedule(settings: Settings) -> Validator:
    """Once a day at ``BACKUP_HOUR``:00, server time."""
    if not 0 <= settings.backup_hour <= 23:
        log.error("BACKUP_HOUR=%s is not an hour (0-23): no daily backup will run", settings.backup_hour)

    def at_backup_hour(timestamp: datetime) -> bool:
        local = _local(timestamp)
        return local.hour == settings.backup_hour and local.minute == 0

    return at_backup_hour


def drafts_schedule(settings: Settings) -> Validator:
    """Every five minutes (drafts live CHECKPOINT_TTL_SECONDS, 20 minutes by default)."""
    return lambda timestamp: timestamp.minute % 5 == 0


def sweep(settings: Settings) -> dict[str, list[int]]:
    return engine_jobs.sweep_stale_jobs(settings=settings)


def _optional(module: str):  # noqa: ANN202 - a module or None
    """A capability's engine module, or None when this installation does not have it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        log.info("%s is not installed; its periodic task does nothing", module)
        return None


def drafts_sweep(settings: Settings) -> int | None:
    """Start the expired-drafts sweep job (``engine.drafts`` dedupes it). Returns its job id."""
    drafts = _optional("engine.drafts")
    return None if drafts is None else drafts.schedule_sweep(settings=settings)


def _backup_lock_key(day: date) -> str:
    return f"oficina.daily-backup.{day.isoformat()}"


def daily_backup(huey: OficinaHuey, settings: Settings, *, now: datetime | None = None) -> int | None:
    """Start today's backup job (once per queue and day). Returns its job id, or None when skipped."""
    backups = _optional("engine.backups")
    if backups is None:
        return None
    today = _local(now or datetime.now(UTC)).date()
    if not huey.put_if_empty(_backup_lock_key(today), 1):
        log.info("daily backup for %s already started by another consumer", today)
        return None
    huey.delete(_backup_lock_key(today - timedelta(days=2)))
    from engine.db import session_scope
    from engine.security import SYSTEM

    with session_scope(settings) as session:
        job = backups.start_backup(session, actor=SYSTEM)
        job_id = getattr(job, "id", None)
    log.info("daily backup started", extra={"job_id": job_id})
    return job_id


def register(huey: OficinaHuey) -> None:
    settings = huey.settings

    def sweep_stale_jobs() -> None:
        sweep(settings)

    def backup_daily() -> None:
        daily_backup(huey, settings)

    def sweep_drafts() -> None:
        drafts_sweep(settings)

    huey.periodic_task(sweep_schedule(settings))(sweep_stale_jobs)
    huey.periodic_task(backup_schedule(settings))(backup_daily)
    huey.periodic_task(drafts_schedule(settings))(sweep_drafts)
