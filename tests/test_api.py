"""The REST API over real HTTP (SQLite and PostgreSQL): registry, OpenAPI, auth, jobs, errors, request ids."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from sqlalchemy import select, update

from dashboard import api
from dashboard.api.base import (
    ApiHandler,
    ApiNotFoundHandler,
    Body,
    Call,
    Registry,
    Returns,
    build_routes,
    path,
    query,
    template_to_pattern,
)
from engine import accounts, jobs
from engine.db import session_scope
from engine.errors import BadRequest, LimitExceeded
from engine.logs import JsonFormatter
from engine.models import AuditEvent, Job, JobItem, User
from engine.queue import RecordingQueue
from engine.security import SYSTEM
from engine.settings import Settings
from tests.api_support import LiveServer, app_routes, assert_matches_document, serve, serve_app


@pytest.fixture
def server(settings: Settings, recording_queue: RecordingQueue) -> Iterator[LiveServer]:
    with serve_app(settings) as srv:
        yield srv


def make_job(settings: Settings, owner_email: str, *, kind: str = "teste", status: str = "queued",
             created_at: datetime | None = None) -> int:
    with session_scope(settings) as s:
        owner = accounts.get_user_by_email(s, email=owner_email)
        job = jobs.create_job(s, kind=kind, owner=owner, params={"n": 1})
        job.status = status
        if created_at is not None:
            job.created_at = created_at
        if status in ("succeeded", "failed", "cancelled"):
            job.finished_at = datetime.now(UTC)
        return job.id


# The registry, the routes and the document ------------------------------------------------------------

def test_openapi_document_validates_and_matches_every_route(server: LiveServer) -> None:
    doc = server.openapi()
    validate(doc)  # raises on an invalid OpenAPI 3.1 document
    assert doc["openapi"].startswith("3.1")

    routed: set[tuple[str, str]] = set()
    fallbacks = 0
    for pattern, handler, kwargs in app_routes(server.settings):
        if handler is ApiHandler:
            assert pattern == template_to_pattern(kwargs["route"])
            routed |= {(method, kwargs["route"]) for method in kwargs["endpoints"]}
        elif handler is ApiNotFoundHandler:
            fallbacks += 1
    documented = {(method.upper(), template) for template, ops in doc["paths"].items() for method in ops}
    assert routed == documented
    assert fallbacks == 1
    assert {("GET", "/api/v1/jobs"), ("GET", "/api/v1/jobs/{id}"), ("POST", "/api/v1/jobs/{id}/cancel"),
            ("POST", "/api/v1/jobs/{id}/retry"), ("GET", "/api/v1/me"), ("GET", "/api/v1/openapi.json")} <= routed
    operation_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    # Every protected operation documents 401 and its permission's 403.
    cancel = doc["paths"]["/api/v1/jobs/{id}/cancel"]["post"]
    assert {"401", "403", "404", "409", "500"} <= set(cancel["responses"])
    assert cancel["x-oficina-permission"] == "jobs.cancel"
    assert doc["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


def test_registry_refuses_inconsistent_declarations() -> None:
    reg = Registry()

    def fn(call: Call) -> None:
        return None

    with pytest.raises(ValueError, match="path parameters"):
        reg.endpoint("GET", "/api/v1/things/{id}", summary="x")(fn)
    with pytest.raises(ValueError, match="start with"):
        reg.endpoint("GET", "/things", summary="x")(fn)
    with pytest.raises(ValueError, match="not registered"):
        reg.endpoint("GET", "/api/v1/things", summary="x", returns=Returns(200, "Missing"))(fn)
    reg.endpoint("GET", "/api/v1/things/{id}", summary="x", params=[path("id")], operation_id="a")(fn)
    with pytest.raises(ValueError, match="already declared"):
        reg.endpoint("GET", "/api/v1/things/{thing}", summary="x", params=[path("thing")], operation_id="b")(fn)
    reg.endpoint("GET", "/api/v1/things/stats", summary="x", operation_id="c")(fn)
    # Literal segments are routed before parameters, so /things/stats is not taken for an id.
    assert list(reg.by_path()) == ["/api/v1/things/stats", "/api/v1/things/{id}"]


def test_responses_match_their_declared_schemas(server: LiveServer) -> None:
    doc = server.openapi()
    admin = server.client(server.token_for("adm@example.com", role="admin"))
    server.token_for("dono@example.com", role="staff")
    done = make_job(server.settings, "dono@example.com", status="failed")
    queued = make_job(server.settings, "dono@example.com")
    checks = [
        ("GET", "/api/v1/me", "/api/v1/me"),
        ("GET", "/api/v1/jobs", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs?status=failed&limit=1", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs?limit=0", "/api/v1/jobs"),
        ("GET", f"/api/v1/jobs/{done}", "/api/v1/jobs/{id}"),
        ("GET", "/api/v1/jobs/999999", "/api/v1/jobs/{id}"),
        ("POST", f"/api/v1/jobs/{queued}/cancel", "/api/v1/jobs/{id}/cancel"),
        ("POST", f"/api/v1/jobs/{queued}/cancel", "/api/v1/jobs/{id}/cancel"),
        ("POST", f"/api/v1/jobs/{done}/retry", "/api/v1/jobs/{id}/retry"),
    ]
    statuses = []
    for method, url, template in checks:
        response = admin.request(method, url)
        assert_matches_document(doc, method, template, response)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 422, 200, 404, 200, 409, 201]
    assert_matches_document(doc, "GET", "/api/v1/me", server.client().get("/api/v1/me"))


# Tokens and permissions -------------------------------------------------------------------------------

def test_bearer_tokens_valid_missing_malformed_and_revoked(server: LiveServer) -> None:
    token = server.token_for("ana@example.com", role="staff")
    me = server.client(token).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["email"] == "ana@example.com" and me.json()["role"] == "staff"
    assert "jobs.cancel" in me.json()["permissions"]

    for headers in ({}, {"Authorization": f"Basic {token}"}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer ofc_nao-existe"}, {"Authorization": "Bearer " + "x" * 5000}):
        response = server.client(headers=headers).get("/api/v1/me")
        assert response.status_code == 401, headers
        assert response.json()["error"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    with session_scope(server.settings) as s:
        user = accounts.get_user_by_email(s, email="ana@example.com")
        assert user is not None
        (row,) = accounts.list_tokens(s, actor=SYSTEM, user_id=user.id)
        accounts.revoke_token(s, actor=SYSTEM, token_id=row.id)
    revoked = server.client(token).get("/api/v1/jobs")
    assert revoked.status_code == 401 and revoked.json()["error"] == "unauthenticated"


def test_token_of_a_deactivated_user_stops_working(server: LiveServer) -> None:
    token = server.token_for("beto@example.com", role="analyst")
    assert server.client(token).get("/api/v1/me").status_code == 200
    with session_scope(server.settings) as s:
        accounts.update_user(s, actor=SYSTEM, user_id=server.user_id("beto@example.com"), is_active=False)
    assert server.client(token).get("/api/v1/me").status_code == 401


def test_viewer_sees_only_own_jobs_and_cannot_cancel_or_retry(server: LiveServer) -> None:
    viewer = server.client(server.token_for("vi@example.com", role="viewer"))
    server.token_for("outro@example.com", role="staff")
    own = make_job(server.settings, "vi@example.com", status="failed")
    other = make_job(server.settings, "outro@example.com")

    listing = viewer.get("/api/v1/jobs").json()
    assert [j["id"] for j in listing["items"]] == [own] and listing["total"] == 1
    # owner_id is ignored for non-admins: still only their own jobs.
    other_owner = server.user_id("outro@example.com")
    assert [j["id"] for j in viewer.get(f"/api/v1/jobs?owner_id={other_owner}").json()["items"]] == [own]
    assert viewer.get(f"/api/v1/jobs/{own}").status_code == 200
    hidden = viewer.get(f"/api/v1/jobs/{other}")
    assert hidden.status_code == 404 and hidden.json()["error"] == "not_found"
    # The role lacks jobs.cancel / jobs.retry: 403 whatever the job (so 403 reveals nothing about it).
    for url in (f"/api/v1/jobs/{other}/cancel", f"/api/v1/jobs/{own}/cancel", f"/api/v1/jobs/{own}/retry"):
        denied = viewer.post(url)
        assert denied.status_code == 403, url
        assert denied.json()["error"] == "forbidden" and denied.json()["action"] in ("jobs.cancel", "jobs.retry")
    with session_scope(server.settings) as s:
        assert s.get(Job, other).status == "queued"


def test_staff_gets_404_for_someone_elses_job_and_admin_sees_all(server: LiveServer) -> None:
    staff = server.client(server.token_for("st@example.com", role="staff"))
    admin = server.client(server.token_for("ad@example.com", role="admin"))
    server.token_for("x@example.com", role="analyst")
    foreign = make_job(server.settings, "x@example.com")
    mine = make_job(server.settings, "st@example.com")
    assert staff.post(f"/api/v1/jobs/{foreign}/cancel").status_code == 404
    assert [j["id"] for j in staff.get("/api/v1/jobs").json()["items"]] == [mine]
    everything = admin.get("/api/v1/jobs").json()
    assert {j["id"] for j in everything["items"]} == {foreign, mine} and everything["total"] == 2
    owner = server.user_id("x@example.com")
    assert [j["id"] for j in admin.get(f"/api/v1/jobs?owner_id={owner}").json()["items"]] == [foreign]


# Jobs ------------------------------------------------------------------------------------------------

def test_list_filters_paging_and_bad_parameters(server: LiveServer) -> None:
    admin = server.client(server.token_for("adm@example.com", role="admin"))
    old = datetime(2024, 1, 10, 12, tzinfo=UTC)
    ids = [make_job(server.settings, "adm@example.com", kind="backup", created_at=old + timedelta(days=i))
           for i in range(5)]
    failed = make_job(server.settings, "adm@example.com", kind="import", status="failed")

    page = admin.get("/api/v1/jobs", params={"kind": "backup", "limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [j["id"] for j in page["items"]] == [ids[3], ids[2]]
    assert [j["id"] for j in admin.get("/api/v1/jobs?status=failed").json()["items"]] == [failed]
    window = admin.get("/api/v1/jobs", params={"since": "2024-01-11", "until": "2024-01-13T09:00:00-03:00"})
    assert [j["id"] for j in window.json()["items"]] == [ids[2], ids[1]]

    for bad in ("status=perdido", "limit=0", "limit=201", "offset=-1", "limit=abc", "since=ontem",
                "stauts=failed", "status=failed&status=queued", "owner_id=99999999999999", "kind=" + "k" * 51,
                "kind=back%00up", "since=9999-12-31T23:59:59-23:59", "until=0001-01-01T00:00:00%2B23:59"):
        response = admin.get(f"/api/v1/jobs?{bad}")
        assert response.status_code == 422, bad
        body = response.json()
        assert body["error"] == "validation_failed" and body["errors"], bad
    assert admin.get("/api/v1/jobs/abc").status_code == 422
    assert admin.get("/api/v1/jobs/0").status_code == 422


def test_job_detail_has_items_counters_error_and_traceback(server: LiveServer) -> None:
    owner = server.client(server.token_for("dono@example.com", role="analyst"))
    job_id = make_job(server.settings, "dono@example.com", status="failed")
    with session_scope(server.settings) as s:
        s.add_all([JobItem(job_id=job_id, key="a", label="Arquivo A"),
                   JobItem(job_id=job_id, key="b", label="Arquivo B", status="failed", error="timeout",
                           attempts=1)])
        s.execute(update(Job).where(Job.id == job_id).values(
            counters={"done": 1, "failed": 1}, attempts=2, error="RuntimeError: boom",
            traceback="Traceback (most recent call last):\n  ...\nRuntimeError: boom"))
    detail = owner.get(f"/api/v1/jobs/{job_id}").json()
    assert detail["counters"] == {"done": 1, "failed": 1} and detail["attempts"] == 2
    assert detail["error"] == "RuntimeError: boom" and detail["traceback"].startswith("Traceback")
    assert [(i["key"], i["status"], i["error"]) for i in detail["items"]] == [("a", "pending", ""),
                                                                              ("b", "failed", "timeout")]
    assert datetime.fromisoformat(detail["created_at"]).tzinfo is not None
    assert detail["params"] == {"n": 1}


def test_cancel_and_retry_happy_paths_and_conflicts(server: LiveServer, recording_queue: RecordingQueue) -> None:
    client = server.client(server.token_for("op@example.com", role="staff"))
    queued = make_job(server.settings, "op@example.com")
    running = make_job(server.settings, "op@example.com", status="running")

    cancelled = client.post(f"/api/v1/jobs/{queued}/cancel", headers={"X-Request-ID": "cancel-42"})
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancel_requested"] is True
    again = client.post(f"/api/v1/jobs/{queued}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert again.json()["current"] == "cancelled"

    asked = client.post(f"/api/v1/jobs/{running}/cancel", json={})
    assert asked.status_code == 200
    assert asked.json()["status"] == "running" and asked.json()["cancel_requested"] is True

    active = client.post(f"/api/v1/jobs/{running}/retry")
    assert active.status_code == 409
    enqueued_before = len(recording_queue.enqueued)
    retried = client.post(f"/api/v1/jobs/{queued}/retry")
    assert retried.status_code == 201
    new = retried.json()
    assert new["retry_of_id"] == queued and new["status"] == "queued" and new["id"] != queued
    assert retried.headers["Location"] == f"/api/v1/jobs/{new['id']}"
    assert client.get(retried.headers["Location"]).json()["id"] == new["id"]
    # Enqueued after the commit, exactly once.
    assert [jid for jid, _ in recording_queue.enqueued[enqueued_before:]] == [new["id"]]
    with session_scope(server.settings) as s:
        audit_row = s.scalar(select(AuditEvent).where(AuditEvent.action == "job.cancel",
                                                      AuditEvent.entity_id == str(queued)))
        assert audit_row is not None and audit_row.request_id == "cancel-42"
    assert client.post("/api/v1/jobs/424242/cancel").status_code == 404


# Bodies, unknown routes, errors --------------------------------------------------------------------------

def test_request_bodies_must_be_small_well_formed_json(server: LiveServer) -> None:
    client = server.client(server.token_for("op@example.com", role="admin"))
    job_id = make_job(server.settings, "op@example.com")
    url = f"/api/v1/jobs/{job_id}/cancel"
    as_json = {"Content-Type": "application/json"}
    cases = [
        (b"{bad", as_json, 400, "bad_request"),
        (b'{"a": NaN}', as_json, 400, "bad_request"),
        (b"\xff\xfe{}", as_json, 400, "bad_request"),
        (b"[" * 100_000, as_json, 400, "bad_request"),
        (b'{"force": true}', as_json, 400, "bad_request"),  # no body declared: refuse, do not ignore
        (b"{}", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b"x" * (2 * 1024 * 1024), as_json, 413, "payload_too_large"),
    ]
    for content, headers, status, code in cases:
        response = client.post(url, content=content, headers=headers)
        assert response.status_code == status, (content[:20], response.text)
        assert response.json()["error"] == code
    with session_scope(server.settings) as s:
        assert s.get(Job, job_id).status == "queued"  # nothing applied by a refused request
    assert client.post(url, json={}).status_code == 200


def test_unknown_routes_and_methods_answer_json(server: LiveServer) -> None:
    client = server.client(server.token_for("op@example.com", role="admin"))
    for method, url in (("GET", "/api/v1/nada"), ("POST", "/api/v1"), ("GET", "/api/v1/jobs/"),
                        ("DELETE", "/api/v1/jobs/1/cancel/x"), ("GET", "/api/v1/jobs/1/nada")):
        response = client.request(method, url)
        assert response.status_code == 404, url
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["error"] == "not_found" and body["request_id"] == response.headers["X-Request-ID"]
    wrong = client.delete("/api/v1/jobs")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "GET"
    # Unauthenticated clients get the same 404 for unknown routes (no auth needed to learn nothing).
    assert server.client().get("/api/v1/nada").status_code == 404


def test_request_id_round_trip_generation_and_sanitising(server: LiveServer) -> None:
    client = server.client(server.token_for("op@example.com", role="viewer"))
    assert client.get("/api/v1/me", headers={"X-Request-ID": "abc-123.x:y"}).headers["X-Request-ID"] == \
        "abc-123.x:y"
    generated = client.get("/api/v1/me").headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert client.get("/api/v1/me").headers["X-Request-ID"] != generated
    assert client.get("/api/v1/me", headers={"X-Request-ID": "a b<c>\"d';e"}).headers["X-Request-ID"] == "abcde"
    assert client.get("/api/v1/me", headers={"X-Request-ID": "z" * 500}).headers["X-Request-ID"] == "z" * 64
    assert len(client.get("/api/v1/me", headers={"X-Request-ID": "<>"}).headers["X-Request-ID"]) == 32
    error = client.get("/api/v1/jobs/777", headers={"X-Request-ID": "erro-1"})
    assert error.headers["X-Request-ID"] == "erro-1" and error.json()["request_id"] == "erro-1"
    unauthenticated = server.client().get("/api/v1/me", headers={"X-Request-ID": "anon-1"})
    assert unauthenticated.headers["X-Request-ID"] == "anon-1"


def test_access_log_line_per_request(server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    token = server.token_for("log@example.com", role="viewer")
    uid = server.user_id("log@example.com")
    with caplog.at_level(logging.INFO, logger="oficina.access"):
        server.client(token).get("/api/v1/jobs?limit=5", headers={"X-Request-ID": "log-1"})
        server.client().get("/api/v1/me", headers={"X-Request-ID": "log-2"})
    deadline = time.monotonic() + 5  # the line is written just after the answer leaves the server
    records: dict[str, logging.LogRecord] = {}
    while len(records) < 2 and time.monotonic() < deadline:
        records = {r.request_id: r for r in caplog.records
                   if r.name == "oficina.access" and r.request_id in ("log-1", "log-2")}
        time.sleep(0.01)
    ok, denied = records["log-1"], records["log-2"]
    assert (ok.method, ok.path, ok.route, ok.status, ok.user_id) == ("GET", "/api/v1/jobs", "/api/v1/jobs", 200, uid)
    assert ok.duration_ms >= 0
    assert (denied.status, denied.user_id) == (401, None)
    import json

    line = json.loads(JsonFormatter().format(ok))
    assert line["request_id"] == "log-1" and line["status"] == 200 and line["user_id"] == uid
    assert "duration_ms" in line and line["method"] == "GET"


# Mechanism tests on a registry of their own ------------------------------------------------------------

def _test_registry(release: threading.Event) -> Registry:
    reg = Registry()
    thing = reg.schema("Thing", {"type": "object", "required": ["name", "size"],
                                 "properties": {"name": {"type": "string", "minLength": 1},
                                                "size": {"type": "integer", "minimum": 0}},
                                 "additionalProperties": False})

    @reg.endpoint("GET", "/api/v1/boom", summary="falha", public=True)
    def boom(call: Call) -> None:
        raise RuntimeError("segredo interno")

    @reg.endpoint("GET", "/api/v1/limited", summary="limitado", public=True, errors=[LimitExceeded])
    def limited(call: Call) -> None:
        raise LimitExceeded("Devagar.", retry_after=2.2)

    @reg.endpoint("POST", "/api/v1/things", summary="cria", permission="records.read", body=Body(thing),
                  returns=Returns(201, thing), max_body=200)
    def create(call: Call) -> dict[str, Any]:
        return call.body

    @reg.endpoint("GET", "/api/v1/slow", summary="lento", public=True, params=[query("wait", "number")])
    def slow(call: Call) -> dict[str, Any]:
        return {"released": release.wait(call.params["wait"] or 10)}

    @reg.endpoint("GET", "/api/v1/fast", summary="rápido", public=True)
    def fast(call: Call) -> dict[str, Any]:
        return {"ok": True}

    return reg


@pytest.fixture
def mechanism(sqlite_settings: Settings) -> Iterator[tuple[LiveServer, Registry, threading.Event]]:
    release = threading.Event()
    reg = _test_registry(release)
    with serve(build_routes(sqlite_settings, reg), settings=sqlite_settings) as srv:
        yield srv, reg, release
    release.set()


def test_unexpected_exception_is_500_json_with_request_id_and_logged(
        mechanism: tuple[LiveServer, Registry, threading.Event], caplog: pytest.LogCaptureFixture) -> None:
    srv, _, _ = mechanism
    with caplog.at_level(logging.ERROR):
        response = srv.client().get("/api/v1/boom", headers={"X-Request-ID": "falha-1"})
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal" and body["request_id"] == "falha-1" and "falha-1" in body["detail"]
    assert "segredo" not in response.text
    (logged,) = [r for r in caplog.records if r.name == "oficina.web" and r.exc_info]
    assert logged.exc_info[0] is RuntimeError and logged.request_id == "falha-1"


def test_rate_limited_answers_429_with_retry_after(mechanism: tuple[LiveServer, Registry, threading.Event]) -> None:
    srv, _, _ = mechanism
    response = srv.client().get("/api/v1/limited")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error"] == "rate_limited" and response.json()["retry_after"] == 3


def test_declared_body_is_validated_and_size_limited_per_route(
        mechanism: tuple[LiveServer, Registry, threading.Event]) -> None:
    srv, reg, _ = mechanism
    client = srv.client(srv.token_for("corpo@example.com", role="viewer"))
    created = client.post("/api/v1/things", json={"name": "caixa", "size": 3})
    assert created.status_code == 201 and created.json() == {"name": "caixa", "size": 3}
    invalid = client.post("/api/v1/things", json={"name": "", "size": -1, "extra": 1})
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.json()["errors"]} == {"", "name", "size"}
    assert client.post("/api/v1/things").status_code == 400  # required body missing
    too_large = client.post("/api/v1/things", json={"name": "x" * 300, "size": 1})
    assert too_large.status_code == 413 and "limite de 200 bytes" in too_large.json()["detail"]  # not "0 KiB"
    chunked = client.post("/api/v1/things", content=iter([b'{"name": "', b"y" * 300, b'", "size": 1}']),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert srv.client().post("/api/v1/things", json={"name": "a", "size": 1}).status_code == 401
    from dashboard.api.openapi import build_document

    validate(build_document(reg, srv.settings))


def test_blocking_endpoint_does_not_block_the_event_loop(
        mechanism: tuple[LiveServer, Registry, threading.Event]) -> None:
    srv, _, release = mechanism
    results: dict[str, Any] = {}

    def call_slow() -> None:
        results["slow"] = httpx.get(f"{srv.url}/api/v1/slow?wait=10", timeout=30).json()

    worker = threading.Thread(target=call_slow)
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert srv.client().get("/api/v1/fast").json() == {"ok": True}
    assert time.monotonic() - started < 2
    assert worker.is_alive()  # the slow call is still waiting in its worker thread
    release.set()
    worker.join(10)
    assert results["slow"] == {"released": True}


def test_api_routes_function_is_what_panel_serve_mounts(sqlite_settings: Settings) -> None:
    routes = api.routes(sqlite_settings)
    assert routes[-1][1] is ApiNotFoundHandler
    assert all(kwargs["config"] is sqlite_settings for _, _, kwargs in routes)
    with session_scope(sqlite_settings) as s:
        assert s.scalar(select(User).limit(1)) is None  # building routes touches no data


def test_a_nul_character_anywhere_in_a_body_is_refused_with_its_place(
        mechanism: tuple[LiveServer, Registry, threading.Event]) -> None:
    # PostgreSQL keeps no NUL in text or JSONB; a body holding one is refused before any of it is used.
    srv, _, _ = mechanism
    client = srv.client(srv.token_for("nulo@example.com", role="viewer"))
    refused = client.post("/api/v1/things", json={"name": "cai\x00xa", "size": 3})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "name", "message": "contém o caractere nulo (U+0000)"}]
    assert "U+0000" in refused.json()["detail"]
    nested = client.post("/api/v1/things", json={"name": "x", "size": 1, "tags": [{"a": "ok"}, {"b\x00": 1}]})
    assert nested.status_code == 422 and nested.json()["errors"][0]["field"] == "tags/1/b\x00"
    # The six characters backslash-u-0-0-0-0, written escaped, are ordinary text.
    literal = client.post("/api/v1/things", content=b'{"name": "a\\\\u0000b", "size": 1}',
                          headers={"Content-Type": "application/json"})
    assert literal.status_code == 201 and literal.json()["name"] == "a\\u0000b"


def test_a_number_no_float_holds_is_refused_as_such_not_as_malformed_json(
        mechanism: tuple[LiveServer, Registry, threading.Event]) -> None:
    srv, _, _ = mechanism
    client = srv.client(srv.token_for("numero@example.com", role="viewer"))
    for number in (b"1e400", b"-1e999"):
        r = client.post("/api/v1/things", content=b'{"name": "x", "size": ' + number + b"}",
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "Número grande demais" in r.json()["detail"], r.text
    r = client.post("/api/v1/things", content=b'{"name": "x", "size": }', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON malformado" in r.json()["detail"]


def test_an_integer_beyond_64_bits_arrives_exactly(mechanism: tuple[LiveServer, Registry, threading.Event]) -> None:
    # orjson reads such an integer as a float: another number would have been validated and stored.
    srv, _, _ = mechanism
    client = srv.client(srv.token_for("inteiro@example.com", role="viewer"))
    big = 123456789012345678901234567890
    r = client.post("/api/v1/things", content=b'{"name": "x", "size": %d}' % big,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 201 and r.json()["size"] == big, r.text
    r = client.post("/api/v1/things", content=b'{"name": "x", "size": -9223372036854775809}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "-9223372036854775809" in r.text  # the bound saw the number sent


def test_a_body_the_exact_reader_cannot_take_is_refused_with_a_reason() -> None:
    from tornado.httputil import HTTPHeaders

    from dashboard.api import drafts  # noqa: F401  (registers the endpoint)
    from dashboard.api.base import DEFAULT_REGISTRY, parse_body

    ep = DEFAULT_REGISTRY.by_path()["/api/v1/drafts/save"]["POST"]
    headers = HTTPHeaders({"Content-Type": "application/json"})
    for raw, said in ((b'{"version": ' + b"9" * 5000 + b"}", "Número grande demais"),
                      (b'{"version": ' + b"[" * 1000 + b"1234567890123456789" + b"]" * 1000 + b"}", "aninhado")):
        with pytest.raises(BadRequest, match=said):
            parse_body(ep, DEFAULT_REGISTRY, headers, raw)
