"""The queue port: how engine hands a Job id to background workers without importing huey.

``JobQueue`` documents the interface. ``jobs.queue.HueyQueue`` (registered under the ``oficina.queue``
entry point) is the real one; ``InlineQueue`` runs the job in the calling thread (tests and
``--inline``); ``RecordingQueue`` only remembers what was enqueued (tests).
"""

from __future__ import annotations

import threading
from importlib.metadata import entry_points

from engine.settings import Settings


class JobQueue:
    """Base class. Implementations must be safe to call from several threads."""

    def enqueue(self, job_id: int, *, delay: float = 0) -> str:
        """Schedule ``engine.jobs.run_job(job_id)`` in a worker, after ``delay`` seconds.
        Returns the queue's task id. Delivering twice is allowed: ``run_job`` is idempotent."""
        raise NotImplementedError

    def size(self) -> int:
        """Tasks waiting in the queue, due or delayed (for /metrics, /health and the lost-message sweep)."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise if the queue's storage cannot be reached."""
        raise NotImplementedError


class InlineQueue(JobQueue):
    """Runs each job synchronously in the calling thread."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.ran: list[int] = []

    def enqueue(self, job_id: int, *, delay: float = 0) -> str:
        from engine.jobs import run_job

        self.ran.append(job_id)
        run_job(job_id, settings=self.settings)
        return f"inline-{job_id}"

    def size(self) -> int:
        return 0

    def ping(self) -> None:
        return None


class RecordingQueue(JobQueue):
    def __init__(self) -> None:
        self.enqueued: list[tuple[int, float]] = []

    def enqueue(self, job_id: int, *, delay: float = 0) -> str:
        self.enqueued.append((job_id, delay))
        return f"recorded-{len(self.enqueued)}"

    def size(self) -> int:
        return len(self.enqueued)

    def ping(self) -> None:
        return None


_installed: JobQueue | None = None
_lock = threading.Lock()


def install(queue: JobQueue | None) -> None:
    """Set the process-wide queue (composition roots: server, worker, CLI, tests)."""
    global _installed
    with _lock:
        _installed = queue


def get_queue(settings: Settings | None = None) -> JobQueue:
    """The installed queue; if none, the ``huey`` implementation from the ``oficina.queue`` entry point."""
    global _installed
    with _lock:
        if _installed is None:
            (ep,) = entry_points(group="oficina.queue", name="huey")
            _installed = ep.load()(settings)
        return _installed
