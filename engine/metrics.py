"""Operational telemetry: Prometheus metrics and the health checks behind ``/health``.

Metrics live in a registry of their own (not prometheus_client's global one) so that only what Oficina
declares is exported. Counters and histograms are per process: with several web processes Prometheus
scrapes each one and sums. Job gauges are read from the database at scrape time (every process reports
the same, shared numbers; aggregate them with ``max``, not ``sum``).

    oficina_http_requests_total{method, route, status}       counter
    oficina_http_request_duration_seconds{method, route}     histogram
    oficina_jobs{kind, status}                                gauge, refreshed on scrape
    oficina_queue_size                                        gauge, refreshed on scrape (-1 = unreachable)
    oficina_metrics_refresh_failures_total{source}           counter (jobs | queue)
    oficina_gc_frozen_objects                                 gauge: start-up heap kept out of full collections
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text

from engine.db import session_scope
from engine.models import JOB_STATUSES
from engine.queue import get_queue
from engine.settings import Settings

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "oficina_http_requests", "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"], registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "oficina_http_request_duration_seconds", "Time to answer an HTTP request, by method and route template.",
    ["method", "route"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
JOBS = Gauge("oficina_jobs", "Jobs in the database by kind and status.", ["kind", "status"], registry=REGISTRY)
QUEUE_SIZE = Gauge("oficina_queue_size", "Tasks waiting in the job queue (-1 when it cannot be reached).",
                   registry=REGISTRY)
GC_FROZEN = Gauge("oficina_gc_frozen_objects",
                  "Objects of the start-up heap kept out of the garbage collector's full collections.",
                  registry=REGISTRY)
GC_FROZEN.set_function(gc.get_freeze_count)
REFRESH_FAILURES = Counter(
    "oficina_metrics_refresh_failures", "Scrapes that could not refresh a gauge, by source.", ["source"],
    registry=REGISTRY,
)

_refresh_lock = threading.Lock()


def observe_request(*, method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered HTTP request. ``route`` must be a template (``/api/v1/jobs/{id}``), never a raw
    path, so that label values stay few."""
    method = method.upper() if method.upper() in HTTP_METHODS else "OTHER"
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_DURATION.labels(method=method, route=route).observe(max(seconds, 0.0))


def _refresh_jobs(settings: Settings) -> None:
    from engine.jobs import counts_by_kind_status  # lazy: engine.jobs may come to record metrics itself

    with session_scope(settings) as session:
        rows = counts_by_kind_status(session)
    counts: dict[tuple[str, str], int] = {}
    for kind, status, count in rows:
        # Every known status of a kind is exported (0 when none), so rate() and alerts see a series.
        for known in JOB_STATUSES:
            counts.setdefault((kind, known), 0)
        counts[(kind, status)] = count
    JOBS.clear()
    for (kind, status), count in counts.items():
        JOBS.labels(kind=kind, status=status).set(count)


def _refresh_queue(settings: Settings) -> None:
    QUEUE_SIZE.set(get_queue(settings).size())


def render_metrics(settings: Settings) -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type, with job and queue gauges refreshed.

    A failing source (database or queue down) does not fail the scrape: its gauges keep their last values
    (the queue size becomes -1), the failure is counted and logged, and request metrics are still served.
    Blocking: call it from a worker thread, not from an event loop."""
    with _refresh_lock:
        try:
            _refresh_jobs(settings)
        except Exception:
            REFRESH_FAILURES.labels(source="jobs").inc()
            log.warning("metrics: could not read job counts", exc_info=True)
        try:
            _refresh_queue(settings)
        except Exception:
            QUEUE_SIZE.set(-1)
            REFRESH_FAILURES.labels(source="queue").inc()
            log.warning("metrics: could not read the queue size", exc_info=True)
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# Health checks ---------------------------------------------------------------------------------------

def check_database(settings: Settings) -> None:
    """Raise unless the database answers ``SELECT 1``."""
    with session_scope(settings) as session:
        session.execute(text("SELECT 1"))


def check_queue(settings: Settings) -> None:
    """Raise unless the job queue's storage answers."""
    get_queue(settings).ping()


def check_storage(settings: Settings) -> None:
    """Raise unless blob storage answers (it writes and deletes a probe, or asks S3 for the bucket)."""
    from engine.storage import get_storage  # boto3 is imported only when a check first runs

    get_storage(settings).ping()


def health_checks(settings: Settings) -> dict[str, Callable[[], None]]:
    """The checks behind ``/health``: name -> blocking callable that raises when the dependency is down."""
    return {
        "database": lambda: check_database(settings),
        "queue": lambda: check_queue(settings),
        "storage": lambda: check_storage(settings),
    }
