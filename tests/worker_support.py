"""Real Huey consumers for integration tests: start ``oficina worker`` subprocesses and drive them.

Typical use (a pool stops every consumer it started, even when the test fails)::

    from tests.worker_support import WorkerPool, wait_for_job

    @pytest.fixture
    def workers(tmp_path):
        with WorkerPool(tmp_path / "workers") as pool:
            yield pool

    def test_something(pg_settings, redis_url, workers):
        settings = workers.queue_settings(pg_settings, redis_url=redis_url)  # own QUEUE_NAME, HueyQueue installed
        worker = workers.start(settings)                              # waits until the consumer is ready
        with session_scope(settings) as s:
            job = create_job(s, kind=..., owner=SYSTEM)
        wait_for_job(settings, job.id, "succeeded", worker=worker)

``queue_settings`` without ``redis_url`` gives the embedded default (SqliteHuey file in the settings' data
dir, next to the SQLite database of ``sqlite_settings``). The consumer gets exactly the settings' values as
its environment (nothing from the developer's environment or ``.env``), runs with ``cwd`` in a temp dir,
writes its log to a file (``worker.log()``), and lives in its own process group so ``kill()`` (SIGKILL)
and cleanup also reach forked process workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import selectinload

from engine import queue as queue_port
from engine.db import session_scope
from engine.models import Job
from engine.settings import Settings

T = TypeVar("T")

READY_MESSAGE = "worker ready"  # logged by the consumer of jobs.cli once its workers run
SETTINGS_VARS = frozenset(f.metadata["var"] for f in fields(Settings))


def oficina_command() -> list[str]:
    exe = Path(sys.executable).parent / "oficina"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]


def settings_environ(settings: Settings, **extra: str) -> dict[str, str]:
    """The process environment that reproduces ``settings`` (every variable set explicitly)."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if isinstance(value, bool):
            raw = "true" if value else "false"
        elif isinstance(value, tuple):
            raw = ",".join(value)
        elif isinstance(value, Path):
            raw = str(value.resolve())
        else:
            raw = str(value)
        env[f.metadata["var"]] = raw
    env.update(extra)
    return env


def queue_settings(settings: Settings, *, redis_url: str | None = None, install: bool = True,
                   **overrides: Any) -> Settings:
    """``settings`` on a queue of their own (unique ``QUEUE_NAME``; RedisHuey with ``redis_url``, else
    SqliteHuey), with fast heartbeats, and the matching ``HueyQueue`` installed in this process."""
    changes: dict[str, Any] = {"queue_name": f"t{uuid.uuid4().hex[:16]}", "job_heartbeat_seconds": 1,
                               "log_json": True}
    if redis_url:
        changes["redis_url"] = redis_url
    changes.update(overrides)
    result = settings.with_overrides(**changes)
    if install:
        from jobs.queue import HueyQueue

        queue_port.install(HueyQueue(result))
    return result


def wait_for(predicate: Callable[[], T], *, timeout: float, interval: float = 0.05, message: str = "",
             workers: Iterable[WorkerProcess] = ()) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with the consumers' logs otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- log of worker {w.pid} ---\n{w.log()[-6000:]}" for w in workers)
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}\n{logs}")
        time.sleep(interval)


def job_snapshot(settings: Settings, job_id: int) -> Job:
    """A fresh, detached copy of the Job row with its items loaded."""
    with session_scope(settings) as s:
        job = s.get(Job, job_id, options=[selectinload(Job.items)], populate_existing=True)
        assert job is not None, f"job {job_id} does not exist"
        s.expunge(job)
        return job


def wait_for_job(settings: Settings, job_id: int, status: str | Sequence[str], *, timeout: float = 30,
                 worker: WorkerProcess | None = None, workers: Iterable[WorkerProcess] = ()) -> Job:
    wanted = (status,) if isinstance(status, str) else tuple(status)
    found: list[Job] = []

    def check() -> bool:
        found[:] = [job_snapshot(settings, job_id)]
        return found[0].status in wanted

    all_workers = [*workers, *([worker] if worker else [])]
    wait_for(check, timeout=timeout, message=f"job {job_id} to be {'/'.join(wanted)}"
             f" (last seen: {found[0].status if found else '?'})", workers=all_workers)
    return found[0]


class WorkerProcess:
    """One ``oficina worker`` subprocess."""

    def __init__(self, settings: Settings, *, directory: Path, args: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.args = list(args)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.log_path = directory / f"worker-{uuid.uuid4().hex[:8]}.log"
        self.env = settings_environ(settings, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "worker not started"
        return self.proc.pid

    def start(self) -> WorkerProcess:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*oficina_command(), "worker", *self.args], cwd=self.directory,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log().splitlines() if needle in line]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 30) -> WorkerProcess:
        def ready() -> bool:
            if READY_MESSAGE in self.log():
                return True
            if not self.alive:
                raise AssertionError(f"worker exited with {self.proc.returncode} before it was ready:\n"
                                     f"{self.log()[-6000:]}")
            return False

        wait_for(ready, timeout=timeout, interval=0.05, message="the worker to be ready", workers=[self])
        return self

    def send(self, signum: int) -> None:
        assert self.proc is not None
        if self.alive:
            os.kill(self.proc.pid, signum)

    def interrupt(self) -> None:
        """SIGINT, like Ctrl-C: graceful shutdown (running jobs may finish)."""
        self.send(signal.SIGINT)

    def terminate(self) -> None:
        """SIGTERM: Huey's immediate shutdown (running jobs are handed back to the queue)."""
        self.send(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole consumer (process group included): nothing runs any cleanup."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise AssertionError(f"worker {self.pid} did not exit within {timeout}s:\n{self.log()[-6000:]}") \
                from exc

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C and wait for a clean exit; returns the exit code."""
        self.interrupt()
        return self.wait(timeout)


class WorkerPool:
    """Starts consumers and makes sure none outlives the test (context manager). Queues made with
    ``pool.queue_settings`` are emptied and uninstalled at the end too."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.workers: list[WorkerProcess] = []
        self.queues: list[Settings] = []

    def queue_settings(self, settings: Settings, *, redis_url: str | None = None, **overrides: Any) -> Settings:
        result = queue_settings(settings, redis_url=redis_url, **overrides)
        self.queues.append(result)
        return result

    def start(self, settings: Settings, *, args: Sequence[str] = ("--workers", "2"),
              env: dict[str, str] | None = None, ready: bool = True, timeout: float = 30) -> WorkerProcess:
        worker = WorkerProcess(settings, directory=self.directory, args=args, env=env)
        self.workers.append(worker)
        worker.start()
        if ready:
            worker.wait_ready(timeout)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            if worker.proc is None:
                continue
            if worker.alive:
                worker.terminate()
                try:
                    worker.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            try:  # forked process workers of a killed consumer, if any
                os.killpg(worker.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if worker.proc.poll() is None:
                worker.proc.wait(timeout=10)
        if self.queues:
            from jobs.app import get_huey

            for settings in self.queues:
                get_huey(settings).flush()  # this queue's own keys/rows only
            queue_port.install(None)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
