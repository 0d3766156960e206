"""``POST /uploads`` and ``/api/v1/imports`` on a real HTTP server (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboard import uploads
from dashboard.auth import SESSION_COOKIE, session_cookie_value
from engine import accounts, imports
from engine.db import session_scope
from engine.errors import NotFound
from engine.models.imports import Upload
from engine.queue import InlineQueue
from engine.security import SYSTEM
from engine.settings import Settings
from tests.api_support import LiveServer, assert_matches_document, serve_app
from tests.imports.conftest import leituras_rows

CSV = "Sensor;Data/Hora;Valor;Unidade\nA;01/03/2024 10:00;1,5;°C\nB;31/02/2024 10:00;2;°C\n".encode("latin-1")


@pytest.fixture
def server(settings: Settings, inline_queue: InlineQueue) -> Iterator[LiveServer]:
    with serve_app(settings) as srv:
        yield srv


def send(server: LiveServer, token: str, content: bytes, filename: str = "leituras.csv") -> httpx.Response:
    return server.client(token).post(
        "/uploads",
        params={"filename": filename},
        content=content,
        headers={"Content-Type": "application/octet-stream"},
    )


def test_upload_preview_start_follow_report(server: LiveServer, settings: Settings) -> None:
    token = server.token_for("ana@example.com", role="analyst")
    client = server.client(token)
    document = server.openapi()
    response = send(server, token, CSV)
    assert response.status_code == 201, response.text
    upload = response.json()
    assert upload["size"] == len(CSV) and upload["file_type"] == "csv"

    response = client.post(f"/api/v1/imports/uploads/{upload['id']}/preview", json={"kind": "leituras"})
    assert_matches_document(document, "POST", "/api/v1/imports/uploads/{upload_id}/preview", response)
    preview = response.json()
    assert preview["format"]["encoding"] == "cp1252" and preview["mapping"]["ts"] == "Data/Hora"

    response = client.post(
        "/api/v1/imports", json={"upload_id": upload["id"], "kind": "leituras", "mode": "upsert"}
    )
    assert_matches_document(document, "POST", "/api/v1/imports", response)
    assert response.status_code == 202
    job_id = response.json()["job_id"]

    response = client.get(f"/api/v1/imports/{job_id}")
    assert_matches_document(document, "GET", "/api/v1/imports/{job_id}", response)
    status = response.json()
    assert status["status"] == "succeeded", status
    assert (status["summary"]["rows_merged"], status["summary"]["rows_rejected"]) == (1, 1)

    response = client.get(f"/api/v1/imports/{job_id}/report")
    assert response.status_code == 303
    report = httpx.get(response.headers["Location"].replace(settings.public_url, server.url))
    assert report.status_code == 200
    lines = report.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "linha;coluna;motivo;valor"
    assert lines[1] == '3;"Data/Hora";"Data/hora inexistente: \'31/02/2024 10:00\'.";"31/02/2024 10:00"'
    assert leituras_rows(settings)[0][0] == "A"

    response = client.get("/api/v1/imports/mappings/leituras")
    assert response.json() == {"sensor": "Sensor", "ts": "Data/Hora", "valor": "Valor", "unidade": "Unidade"}


def test_upload_auth_and_csrf(server: LiveServer, settings: Settings) -> None:
    plain = server.client()
    assert plain.post("/uploads", params={"filename": "x.csv"}, content=CSV).status_code == 401
    viewer = server.token_for("vi@example.com", role="viewer")
    assert send(server, viewer, CSV).status_code == 403
    server.token_for("ana@example.com", role="analyst")
    with session_scope(settings) as s:
        user = accounts.get_user_by_email(s, email="ana@example.com")
        cookie = session_cookie_value(settings, user)
    browser = server.client(cookies={SESSION_COOKIE: cookie})
    # a cookie alone (what a cross-site form would carry) is not enough
    assert browser.post("/uploads", params={"filename": "x.csv"}, content=CSV).status_code == 403
    cross = browser.post(
        "/uploads",
        params={"filename": "x.csv"},
        content=CSV,
        headers={uploads.UPLOAD_HEADER: "1", "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    ok = browser.post(
        "/uploads", params={"filename": "x.csv"}, content=CSV, headers={uploads.UPLOAD_HEADER: "1"}
    )
    assert ok.status_code == 201, ok.text


def test_upload_limits_and_content_checks(settings: Settings, inline_queue: InlineQueue) -> None:
    small = settings.with_overrides(upload_max_mb=1)
    with serve_app(small) as srv:
        token = srv.token_for("ana@example.com", role="analyst")
        too_big = send(srv, token, b"a;b\n" * 400_000)
        assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
            for _ in range(40):
                yield b"a;b\n" * 10_000

        streamed = srv.client(token).post("/uploads", params={"filename": "x.csv"}, content=chunks())
        assert streamed.status_code == 413
        binary = send(srv, token, b"\x00\x01garbage\x00" * 100, "dados.csv")
        assert binary.status_code == 422 and "binário" in binary.json()["detail"]
        pdf = send(srv, token, b"%PDF-1.4 ...", "leituras.csv")
        assert pdf.status_code == 422 and "PDF" in pdf.json()["detail"]
        missing = srv.client(token).post("/uploads", content=b"a;b\n")
        assert missing.status_code == 422
    leftovers = [p for p in (small.data_dir / "uploads").iterdir()]
    assert leftovers == []
    with session_scope(small) as s:
        assert s.query(Upload).count() == 0


def test_upload_streams_without_holding_the_file(server: LiveServer, settings: Settings) -> None:
    token = server.token_for("ana@example.com", role="analyst")
    line = b"S-0001;01/03/2024 10:00;1234,56;kPa\n"
    block = line * (256 * 1024 // len(line))
    blocks = 160  # ~40 MB, far more than any buffer on the way
    peak = {"value": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["value"] = max(peak["value"], tracemalloc.get_traced_memory()[1])
            time.sleep(0.01)

    def body() -> Iterator[bytes]:
        yield b"Sensor;Data/Hora;Valor;Unidade\n"
        for _ in range(blocks):
            yield block

    tracemalloc.start()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        response = server.client(token).post("/uploads", params={"filename": "big.csv"}, content=body())
        _, peak_total = tracemalloc.get_traced_memory()
    finally:
        stop.set()
        sampler.join()
        tracemalloc.stop()
    assert response.status_code == 201, response.text
    size = response.json()["size"]
    assert size > 40_000_000
    # client, server and writer share this process: all of them together stayed far below the file size
    assert max(peak_total, peak["value"]) < 8 * 1024 * 1024, (peak_total, size)


def test_api_errors(server: LiveServer, settings: Settings, tmp_path: Path) -> None:
    token = server.token_for("ana@example.com", role="analyst")
    client = server.client(token)
    upload = send(server, token, CSV).json()
    bad_map = client.post(
        "/api/v1/imports", json={"upload_id": upload["id"], "kind": "leituras", "mapping": {"sensor": "Nope"}}
    )
    assert bad_map.status_code == 422 and "a coluna 'Nope' não existe no arquivo" in bad_map.json()["detail"]
    assert client.post("/api/v1/imports", json={"upload_id": 999, "kind": "leituras"}).status_code == 404
    # Beyond an INTEGER id (PostgreSQL: integer out of range, SQLite: OverflowError; both were a 500)
    assert client.post("/api/v1/imports", json={"upload_id": 2**31, "kind": "leituras"}).status_code == 422
    with session_scope(server.settings) as s, pytest.raises(NotFound):  # scripts: simply not found
        imports.get_upload(s, actor=SYSTEM, upload_id=2**63)
    assert client.post("/api/v1/imports", json={"upload_id": upload["id"], "kind": "x"}).status_code == 422
    other = server.token_for("bia@example.com", role="analyst")
    hidden = server.client(other).post(
        f"/api/v1/imports/uploads/{upload['id']}/preview", json={"kind": "leituras"}
    )
    assert hidden.status_code == 404
    assert client.delete(f"/api/v1/imports/uploads/{upload['id']}").status_code == 204
    gone = client.post(f"/api/v1/imports/uploads/{upload['id']}/preview", json={"kind": "leituras"})
    assert gone.status_code == 404 and "já foi removido" in gone.json()["detail"]
