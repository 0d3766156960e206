"""The Huey implementation of engine's queue port (registered as the ``oficina.queue`` entry point)."""

from __future__ import annotations

from engine.queue import JobQueue
from engine.settings import Settings


class HueyQueue(JobQueue):
    """Enqueues ``run_job`` tasks on the Huey queue that ``settings`` point at."""

    def __init__(self, settings: Settings | None = None) -> None:
        from jobs.app import get_huey

        self.huey = get_huey(settings)

    def enqueue(self, job_id: int, *, delay: float = 0) -> str:
        task = self.huey.run_job_task.s(int(job_id), delay=delay) if delay and delay > 0 \
            else self.huey.run_job_task.s(int(job_id))
        self.huey.enqueue(task)
        return task.id

    def size(self) -> int:
        """Tasks waiting: due ones in the queue plus delayed ones in the schedule."""
        return self.huey.pending_count() + self.huey.scheduled_count()

    def ping(self) -> None:
        self.huey.storage.queue_size()
