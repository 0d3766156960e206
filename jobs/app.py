"""The Huey instance, built from settings: RedisHuey-style storage with REDIS_URL, SqliteHuey otherwise.

``get_huey(settings)`` returns one ``OficinaHuey`` per queue (storage location and ``QUEUE_NAME``), with
the job task, the periodic tasks and the signal handlers registered on it. The consumer
(``oficina worker``), the web server and scripts each get theirs from their own settings, so a test can
talk to a consumer's queue by passing the same settings. ``jobs.app.huey`` is the process-wide one
(from ``get_settings()``), for tools that expect a module attribute such as ``huey_consumer jobs.app.huey``.
"""

from __future__ import annotations

import threading
from typing import Any

from huey import Huey
from huey.api import TaskWrapper
from huey.storage import RedisStorage, SqliteStorage

from engine.settings import Settings, get_settings


class OficinaHuey(Huey):
    """A Huey that knows the settings it was built from and its ``run_job`` task.

    Results are off: the Job row is where outcomes live, and nothing reads Huey's result store."""

    run_job_task: TaskWrapper

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.redis_url:
            super().__init__(settings.queue_name, results=False, utc=True, storage_class=RedisStorage,
                             url=settings.redis_url)
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            super().__init__(settings.queue_name, results=False, utc=True, storage_class=SqliteStorage,
                             filename=str(settings.huey_sqlite_path.resolve()))

    @property
    def uses_redis(self) -> bool:
        return bool(self.settings.redis_url)


def queue_key(settings: Settings) -> tuple[str, str]:
    where = settings.redis_url or str(settings.huey_sqlite_path.resolve())
    return where, settings.queue_name


def build_huey(settings: Settings) -> OficinaHuey:
    """A new Huey for ``settings`` with every task, periodic task and signal handler registered."""
    from jobs import periodic, signals, tasks

    huey = OficinaHuey(settings)
    huey.run_job_task = tasks.register(huey)
    periodic.register(huey)
    signals.connect(huey)
    return huey


_instances: dict[tuple[str, str], OficinaHuey] = {}
_lock = threading.Lock()


def get_huey(settings: Settings | None = None) -> OficinaHuey:
    """The Huey of the queue ``settings`` point at (one instance per queue and process)."""
    settings = settings or get_settings()
    key = queue_key(settings)
    with _lock:
        huey = _instances.get(key)
        if huey is None:
            huey = _instances[key] = build_huey(settings)
        return huey


def __getattr__(name: str) -> Any:
    if name == "huey":
        return get_huey()
    raise AttributeError(name)
