"""The REST endpoints over real HTTP, checked against the OpenAPI document they generate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import dashboard.api.processos  # noqa: F401 - registers the endpoints
import dashboard.api.webhooks  # noqa: F401
from engine.brazil import format_cnj, make_cnj
from engine.court.simulator import Fault
from tests.api_support import LiveServer, assert_matches_document, serve_app

NUMERO = make_cnj(8080, 2023, 8, 26, 100)


@pytest.fixture
def server(court_settings, run_inline) -> Iterator[LiveServer]:
    with serve_app(court_settings) as srv:
        yield srv


def test_lookup_status_and_repeat(server, simulator):
    doc = server.openapi()
    token = server.token_for("ana@example.com", role="staff")
    http = server.client(token)
    first = http.get(f"/api/v1/processos/{format_cnj(NUMERO)}")
    # the inline queue already ran the job when the answer was built
    assert first.status_code in (200, 202), first.text
    assert_matches_document(doc, "GET", "/api/v1/processos/{numero}", first)
    body = first.json()
    assert body["processo"]["numero"] == NUMERO and body["state"] == "started" and body["started"]
    status = http.get(body["status_url"])
    assert status.status_code == 200
    assert_matches_document(doc, "GET", "/api/v1/processos/{numero}/status", status)
    data = status.json()
    assert data["progress"] == 100 and data["counters"]["available"] == len(simulator.documents(NUMERO))
    assert all(d["download_url"] for d in data["documentos"])
    again = http.get(f"/api/v1/processos/{NUMERO}")
    assert again.status_code == 200 and again.json()["state"] == "finished"
    assert again.json()["job"]["id"] == body["job"]["id"]


def test_errors_are_clear(server, simulator):
    token = server.token_for("ana@example.com", role="staff")
    http = server.client(token)
    bad = http.get("/api/v1/processos/0001234-00.2021.8.26.0100")
    assert bad.status_code == 422 and "dígitos verificadores" in bad.json()["detail"]
    missing = http.get(f"/api/v1/processos/{make_cnj(404, 2021, 8, 26, 100)}")
    assert missing.status_code == 404
    never = http.get(f"/api/v1/processos/{NUMERO}/status")
    assert never.status_code == 404 and "ainda não foi consultado" in never.json()["detail"]
    simulator.script(r"/processos/\d+$", *[Fault("status", 503, {"Retry-After": "0"})] * 10)
    down = http.get(f"/api/v1/processos/{make_cnj(9, 2021, 8, 26, 100)}")
    assert down.status_code == 502 and down.json()["error"] == "upstream_failed"
    ssrf = http.get(f"/api/v1/processos/{NUMERO}", params={"webhook_url": "http://169.254.169.254/latest"})
    assert ssrf.status_code == 422 and "link-local" in ssrf.json()["detail"]
    assert server.client().get(f"/api/v1/processos/{NUMERO}").status_code == 401
    viewer = server.client(server.token_for("vera@example.com", role="viewer"))
    assert viewer.get(f"/api/v1/processos/{NUMERO}").status_code == 403


def test_webhook_endpoints(server, simulator, receiver):
    doc = server.openapi()
    staff = server.client(server.token_for("ana@example.com", role="staff"))
    admin = server.client(server.token_for("root@example.com", role="admin"))
    checked = staff.post("/api/v1/webhooks/validate", json={"url": "http://[::ffff:127.0.0.2]/x"})
    assert checked.status_code == 200 and checked.json()["valid"] is False
    assert checked.json()["reason"] == "loopback"
    assert_matches_document(doc, "POST", "/api/v1/webhooks/validate", checked)
    ok = staff.post("/api/v1/webhooks/validate", json={"url": receiver.url})
    assert ok.json()["valid"] is True and receiver.requests == []
    assert staff.post("/api/v1/webhooks/validate", json={"link": "x"}).status_code == 422

    sent = staff.post("/api/v1/webhooks/test", json={"url": receiver.url})
    assert sent.status_code == 200 and sent.json()["status"] == "succeeded"
    assert_matches_document(doc, "POST", "/api/v1/webhooks/test", sent)
    assert len(receiver.requests) == 1

    looked = staff.get(f"/api/v1/processos/{NUMERO}", params={"webhook_url": receiver.url}).json()
    log = staff.get(f"/api/v1/processos/{NUMERO}/webhooks")
    assert log.status_code == 200 and log.json()[0]["status"] == "succeeded"
    assert log.json()[0]["job_id"] == looked["job"]["id"]
    redo = staff.post(f"/api/v1/webhooks/deliveries/{log.json()[0]['id']}/redeliver")
    assert redo.status_code == 202, redo.text
    assert_matches_document(doc, "POST", "/api/v1/webhooks/deliveries/{id}/redeliver", redo)
    detail = staff.get(f"/api/v1/webhooks/deliveries/{log.json()[0]['id']}").json()
    assert [a["trigger"] for a in detail["attempt_log"]] == ["auto", "manual"]
    assert len(receiver.requests) == 3

    assert staff.post("/api/v1/webhooks/endpoints", json={"url": receiver.url}).status_code == 403
    created = admin.post("/api/v1/webhooks/endpoints", json={"url": receiver.url, "description": "ERP"})
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    listed = admin.get("/api/v1/webhooks/endpoints").json()
    assert listed[0]["id"] == created.json()["id"] and "secret" not in listed[0]
    assert admin.delete(f"/api/v1/webhooks/endpoints/{created.json()['id']}").json()["is_active"] is False
