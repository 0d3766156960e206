"""`oficina worker`: a Huey consumer for this deployment's queue, logging JSON.

Ctrl-C (SIGINT) stops it gracefully: no new tasks are taken, running jobs get ``--shutdown-timeout``
seconds to finish, then whatever still runs is handed back to the queue (SIGNAL_INTERRUPTED ->
``engine.jobs.release_job``). SIGTERM hands running jobs back at once. SIGHUP restarts the consumer.
A consumer killed with SIGKILL leaves its jobs running with a heartbeat that stops: the sweep
re-enqueues them after ``JOB_STALE_SECONDS``.
"""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger("oficina.worker")

READY_MESSAGE = "worker ready"


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError("must be between 0 and 86400 seconds")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="start a Huey consumer (Ctrl-C stops it after the running tasks)")
    p.add_argument("--workers", type=_positive_int, default=None, help="worker count (default WORKER_COUNT)")
    p.add_argument("--worker-type", choices=["thread", "process"], default=None,
                   help="thread or process workers (default WORKER_TYPE)")
    p.add_argument("--no-periodic", action="store_true",
                   help="do not schedule periodic tasks (sweep, backup) from this consumer")
    p.add_argument("--shutdown-timeout", type=_seconds, default=10.0,
                   help="on Ctrl-C, seconds to let running jobs finish before handing them back (default 10)")
    p.set_defaults(func=cmd_worker)


def consumer_class() -> type:
    """Huey's consumer, announcing when its workers are up (tests and `make run` wait for it). Built on
    first use: building the parser of `oficina` must not load Huey."""
    from huey.consumer import Consumer

    class OficinaConsumer(Consumer):
        def start(self) -> None:
            super().start()
            log.info(READY_MESSAGE, extra={"queue": self.huey.name, "workers": self.workers,
                                           "worker_type": self.worker_type, "pid": os.getpid()})

    return OficinaConsumer


def check_services(huey) -> None:  # noqa: ANN001 - OficinaHuey
    """Fail fast, with a message an operator can act on, when the database or the queue is unreachable."""
    from sqlalchemy import select, text

    from engine.db import session_scope
    from engine.errors import ConfigurationError
    from engine.models import Job

    settings = huey.settings
    try:
        with session_scope(settings) as s:
            s.execute(text("SELECT 1"))
    except Exception as exc:
        raise ConfigurationError(f"Banco de dados indisponível para o worker: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200]}", variable="DATABASE_URL") from exc
    try:
        with session_scope(settings) as s:
            s.execute(select(Job.id).limit(1))
    except Exception as exc:
        raise ConfigurationError("O banco de dados não tem as tabelas do Oficina: rode `oficina db upgrade`.",
                                 variable="DATABASE_URL") from exc
    try:
        huey.storage.queue_size()
    except Exception as exc:
        where = "o Redis de REDIS_URL" if huey.uses_redis else f"o arquivo {settings.huey_sqlite_path}"
        raise ConfigurationError(f"Fila indisponível ({where}): {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200]}", variable="REDIS_URL") from exc


def cmd_worker(args: argparse.Namespace) -> int:
    from engine import queue
    from engine.db import dispose_engines
    from engine.logs import configure_logging
    from engine.settings import get_settings
    from jobs.app import get_huey
    from jobs.queue import HueyQueue

    settings = get_settings()
    configure_logging(settings)
    worker_type = args.worker_type or settings.worker_type
    if worker_type == "greenlet":
        from engine.errors import ConfigurationError

        raise ConfigurationError("WORKER_TYPE=greenlet não é suportado; use thread ou process.",
                                 variable="WORKER_TYPE")
    huey = get_huey(settings)
    check_services(huey)
    dispose_engines()  # process workers fork: no pooled connection may cross into them
    queue.install(HueyQueue(settings))
    consumer = consumer_class()(
        huey,
        workers=args.workers or settings.worker_count,
        worker_type=worker_type,
        periodic=not args.no_periodic,
        check_worker_health=True,
        # SQLite storage is polled; Redis blocks on BRPOP, so the delay only matters after errors.
        max_delay=10.0 if huey.uses_redis else 1.0,
        shutdown_timeout=args.shutdown_timeout,
    )
    log.info("worker starting", extra={"queue": settings.queue_name,
                                       "backend": "redis" if huey.uses_redis else "sqlite"})
    consumer.run()
    log.info("worker stopped", extra={"queue": settings.queue_name})
    return 0
