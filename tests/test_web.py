"""/health and /metrics over real HTTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from dashboard.web import HealthHandler
from engine import accounts, jobs
from engine.db import session_scope
from engine.models import Job
from engine.queue import RecordingQueue
from engine.settings import Settings
from tests.api_support import LiveServer, serve_app


@pytest.fixture
def server(settings: Settings, recording_queue: RecordingQueue) -> Iterator[LiveServer]:
    with serve_app(settings) as srv:
        yield srv


def dead_database_url() -> str:
    """A PostgreSQL URL on a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/oficina"


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


# /health ---------------------------------------------------------------------------------------------

def test_health_is_ok_with_every_check_and_its_latency(server: LiveServer) -> None:
    response = server.client().get("/health", headers={"X-Request-ID": "saude-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "queue", "storage"}
    for name, check in body["checks"].items():
        assert check["status"] == "ok", name
        assert isinstance(check["latency_ms"], float | int) and check["latency_ms"] >= 0
    assert response.headers["X-Request-ID"] == "saude-1"
    assert response.headers["Cache-Control"] == "no-store"


def test_health_is_503_when_the_database_is_down(sqlite_settings: Settings,
                                                 recording_queue: RecordingQueue) -> None:
    broken = sqlite_settings.with_overrides(database_url=dead_database_url())
    with serve_app(broken) as srv:
        started = time.monotonic()
        response = srv.client().get("/health")
        assert time.monotonic() - started < 10
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failed"
    assert body["checks"]["database"]["status"] == "failed"
    assert body["checks"]["database"]["error"] == "OperationalError"
    assert "127.0.0.1" not in response.text  # connection details stay in the server log
    assert body["checks"]["queue"]["status"] == "ok" and body["checks"]["storage"]["status"] == "ok"


def test_a_hung_check_fails_by_timeout(sqlite_settings: Settings) -> None:
    def hangs() -> None:
        time.sleep(3)

    checks = {"lento": hangs, "rapido": lambda: None}
    extra = [(r"/health-test", HealthHandler,
              {"config": sqlite_settings, "route": "/health-test", "checks": checks, "timeout": 0.3})]
    with serve_app(sqlite_settings, extra_routes=extra) as srv:
        started = time.monotonic()
        response = srv.client().get("/health-test")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < 2
    assert response.json()["checks"]["lento"] == {"status": "failed", "error": "timeout",
                                                  "latency_ms": response.json()["checks"]["lento"]["latency_ms"]}
    assert response.json()["checks"]["rapido"]["status"] == "ok"


# /metrics --------------------------------------------------------------------------------------------

def test_metrics_count_requests_by_route_template_and_report_jobs(server: LiveServer,
                                                                  recording_queue: RecordingQueue) -> None:
    client = server.client()
    before = client.get("/metrics").text
    token = server.token_for("met@example.com", role="admin")
    api = server.client(token)
    for _ in range(3):
        assert api.get("/api/v1/me").status_code == 200
    missing = f"/api/v1/nao-existe-{uuid.uuid4().hex}"
    assert api.get(missing).status_code == 404
    assert api.get("/api/v1/jobs/123456").status_code == 404

    kind = f"metrics-{uuid.uuid4().hex[:8]}"
    with session_scope(server.settings) as s:
        owner = accounts.get_user_by_email(s, email="met@example.com")
        ids = [jobs.create_job(s, kind=kind, owner=owner).id for _ in range(3)]
    with session_scope(server.settings) as s:
        s.execute(update(Job).where(Job.id == ids[0]).values(status="failed"))

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    after = response.text

    def delta(name: str, **labels: str) -> float:
        return (sample(after, name, **labels) or 0) - (sample(before, name, **labels) or 0)

    assert delta("oficina_http_requests_total", method="GET", route="/api/v1/me", status="200") == 3
    assert delta("oficina_http_request_duration_seconds_count", method="GET", route="/api/v1/me") == 3
    assert delta("oficina_http_requests_total", method="GET", route="/api/v1/jobs/{id}", status="404") == 1
    assert delta("oficina_http_requests_total", method="GET", route="unmatched", status="404") == 1
    # Raw paths never become label values (sample values are left out: a timestamp may hold "123456").
    label_values = {value for family in text_string_to_metric_families(after)
                    for s in family.samples for value in s.labels.values()}
    assert not [v for v in label_values if "nao-existe" in v or "123456" in v]
    assert sample(after, "oficina_jobs", kind=kind, status="queued") == 2
    assert sample(after, "oficina_jobs", kind=kind, status="failed") == 1
    assert sample(after, "oficina_jobs", kind=kind, status="running") == 0
    assert sample(after, "oficina_queue_size") == len(recording_queue.enqueued) == 3
    # The scrape before this one was counted too.
    assert delta("oficina_http_requests_total", method="GET", route="/metrics", status="200") >= 1


def test_metrics_token_is_enforced_when_configured(sqlite_settings: Settings,
                                                   recording_queue: RecordingQueue) -> None:
    guarded = sqlite_settings.with_overrides(metrics_token="token-de-metricas-123")
    with serve_app(guarded) as srv:
        missing = srv.client().get("/metrics")
        wrong = srv.client(headers={"Authorization": "Bearer outro"}).get("/metrics")
        right = srv.client(headers={"Authorization": "Bearer token-de-metricas-123"}).get("/metrics")
        health = srv.client().get("/health")
    for refused in (missing, wrong):
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthenticated"
        assert "oficina_http_requests_total" not in refused.text
    assert right.status_code == 200 and "oficina_queue_size" in right.text
    assert health.status_code == 200  # /health never asks for the metrics token


def test_metrics_are_served_when_the_database_is_down(sqlite_settings: Settings,
                                                      recording_queue: RecordingQueue) -> None:
    broken = sqlite_settings.with_overrides(database_url=dead_database_url())
    with serve_app(broken) as srv:
        first = srv.client().get("/metrics").text
        second = srv.client().get("/metrics")
    assert second.status_code == 200
    failures = sample(second.text, "oficina_metrics_refresh_failures_total", source="jobs") or 0
    assert failures - (sample(first, "oficina_metrics_refresh_failures_total", source="jobs") or 0) == 1
    assert sample(second.text, "oficina_queue_size") == 0

