"""The download flow over real HTTP: lookup → job → documents streamed to storage, status and links."""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import func, select

from engine.brazil import make_cnj
from engine.court.simulator import CourtSimulator, Fault, document_sha256
from engine.db import session_scope
from engine.documents import build_status, storage_key
from engine.models import Job
from engine.models.court import Documento
from engine.security import SYSTEM
from engine.settings import Settings
from engine.storage import get_storage
from tests.court.conftest import lookup, serve_routes

NUMERO = make_cnj(4711, 2022, 8, 26, 100)


def stored_sha(settings: Settings, key: str) -> str:
    digest = hashlib.sha256()
    with get_storage(settings).open(key) as fh:
        for chunk in iter(lambda: fh.read(65536), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_lookup_downloads_every_document_to_storage(court_settings, simulator: CourtSimulator, run_inline):
    result = lookup(court_settings, NUMERO)
    assert result.started and result.job is not None
    expected = simulator.documents(NUMERO)
    with session_scope(court_settings) as s:
        status = build_status(s, numero=NUMERO, settings=court_settings)
        job = s.get(Job, result.job.id)
        assert job.status == "succeeded" and job.progress == 100
        assert job.counters["available"] == len(expected) and job.counters["failed"] == 0
    assert status["progress"] == 100
    assert status["counters"] == {
        "pending": 0,
        "processing": 0,
        "available": len(expected),
        "failed": 0,
        "total": len(expected),
    }
    by_id = {d["id"]: d for d in status["documentos"]}
    for doc in expected:
        row = by_id[doc.id]
        assert row["status"] == "available"
        assert row["size"] == doc.tamanho
        assert row["sha256"] == document_sha256(NUMERO, doc)
        key = storage_key(NUMERO, doc.id, doc.nome)
        assert key.startswith(f"processos/{NUMERO}/documentos/{doc.id}/")
        assert stored_sha(court_settings, key) == row["sha256"]
        assert row["download_url"]
    assert simulator.count("/binario", status=200) == len(expected)


def test_asking_again_returns_the_stored_result_without_calling_the_court(
    court_settings, simulator, run_inline
):
    first = lookup(court_settings, NUMERO)
    calls = len(simulator.requests)
    again = lookup(court_settings, NUMERO)
    assert (again.state, again.started, again.job.id) == ("finished", False, first.job.id)
    assert len(simulator.requests) == calls
    with session_scope(court_settings) as s:
        assert s.scalar(select(func.count(Job.id)).where(Job.kind == "documentos")) == 1


def test_a_document_that_keeps_failing_ends_failed_and_refresh_fetches_only_it(
    court_settings, simulator, run_inline
):
    docs = simulator.documents(NUMERO)
    bad = docs[1]
    simulator.script(f"/documentos/{bad.id}/binario", *[Fault("status", 503)] * 40)
    result = lookup(court_settings, NUMERO)
    with session_scope(court_settings) as s:
        status = build_status(s, numero=NUMERO, settings=court_settings)
        assert s.get(Job, result.job.id).status == "succeeded"
    states = {d["id"]: d for d in status["documentos"]}
    assert states[bad.id]["status"] == "failed" and "503" in states[bad.id]["last_error"]
    assert states[bad.id]["attempts"] == 4
    assert simulator.count(f"/documentos/{bad.id}/binario") == 4 * 2  # 4 attempts, each retried once
    assert all(d["status"] == "available" for i, d in states.items() if i != bad.id)
    assert not get_storage(court_settings).exists(storage_key(NUMERO, bad.id, bad.nome))

    simulator.clear_scripts()
    simulator.reset_log()
    refreshed = lookup(court_settings, NUMERO, refresh=True)
    assert refreshed.started and refreshed.job.id != result.job.id
    assert simulator.count("/binario") == 1 and simulator.count(f"/documentos/{bad.id}/binario") == 1
    with session_scope(court_settings) as s:
        assert build_status(s, numero=NUMERO, settings=court_settings)["counters"]["available"] == len(docs)


def test_flaky_court_still_ends_with_every_document_available(court_settings, simulator, run_inline):
    simulator.config.error_rate = 0.3
    simulator.config.truncate_rate = 0.1
    numero = make_cnj(99, 2023, 5, 2, 1)
    result = lookup(court_settings, numero)
    with session_scope(court_settings) as s:
        status = build_status(s, numero=numero, settings=court_settings)
        assert s.get(Job, result.job.id).status == "succeeded"
    failed_requests = sum(1 for r in simulator.requests if r["status"] != 200)
    assert failed_requests > 0, "the simulator should have failed some requests"
    assert status["counters"]["available"] == status["counters"]["total"] > 0


def test_truncated_short_and_corrupt_bodies_are_detected_and_retried(court_settings, simulator, run_inline):
    docs = simulator.documents(NUMERO)
    simulator.script(f"/documentos/{docs[0].id}/binario", Fault("truncate"))
    simulator.script(f"/documentos/{docs[1].id}/binario", Fault("short"))
    simulator.script(f"/documentos/{docs[2].id}/binario", Fault("corrupt"))
    lookup(court_settings, NUMERO)
    with session_scope(court_settings) as s:
        rows = {d.external_id: d for d in s.scalars(select(Documento))}
    for doc in docs[:3]:
        row = rows[doc.id]
        assert row.status == "available" and row.attempts == 2, (doc.id, row.attempts, row.last_error)
        assert row.sha256 == document_sha256(NUMERO, doc)
        assert simulator.count(f"/documentos/{doc.id}/binario") == 2


def test_a_body_that_is_always_short_fails_with_its_reason_and_stores_nothing(
    court_settings, simulator, run_inline
):
    doc = simulator.documents(NUMERO)[0]
    simulator.script(f"/documentos/{doc.id}/binario", *[Fault("short")] * 10)
    lookup(court_settings, NUMERO)
    with session_scope(court_settings) as s:
        row = s.scalar(select(Documento).where(Documento.external_id == doc.id))
    assert row.status == "failed" and "incompleto" in row.last_error
    assert not get_storage(court_settings).exists(storage_key(NUMERO, doc.id, doc.nome))


def test_presigned_links_expire_and_are_regenerated(court_settings, simulator, run_inline):
    import time
    from urllib.parse import parse_qs, urlsplit

    from dashboard import blobs

    lookup(court_settings, NUMERO)
    doc = simulator.documents(NUMERO)[0]

    def settings_for(base: str) -> Settings:
        return court_settings.with_overrides(public_url=base, signed_url_ttl_seconds=2)

    with serve_routes(blobs.routes, settings_for) as (served, _base):
        with session_scope(served) as s:
            first = build_status(s, numero=NUMERO, settings=served)["documentos"][0]
        with session_scope(served) as s:
            assert (
                build_status(s, numero=NUMERO, settings=served)["documentos"][0]["download_url"]
                == first["download_url"]
            ), "a valid link is reused"
        response = httpx.get(first["download_url"], timeout=10)
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == document_sha256(NUMERO, doc)
        # The link's own expiry (rounded up to the second by the store), not a guess at it.
        expires = int(parse_qs(urlsplit(first["download_url"]).query)["expires"][0])
        time.sleep(max(0.0, expires - time.time()) + 0.3)
        assert httpx.get(first["download_url"], timeout=10).status_code == 403
        with session_scope(served) as s:
            fresh = build_status(s, numero=NUMERO, settings=served)["documentos"][0]
        assert fresh["download_url"] != first["download_url"]
        assert fresh["download_url_expires_at"] > first["download_url_expires_at"]
        assert httpx.get(fresh["download_url"], timeout=10).status_code == 200


def test_hostile_metadata_from_the_court_is_contained(court_settings, simulator, run_inline):
    real = simulator.metadata

    def hostile(numero: str) -> dict:
        data = real(numero)
        first = dict(data["documentos"][0])
        data["documentos"] = [
            first,
            dict(first),  # listed twice
            {"id": "../../etc", "nome": "../../../passwd\x00.pdf", "tamanho": -5, "hash": "md5:xyz"},
            "not a document",
            {"nome": "sem id"},
        ]
        data["partes"] = "Fulano"
        data["tribunal"] = "T" * 500
        return data

    simulator.metadata = hostile
    lookup(court_settings, NUMERO)
    with session_scope(court_settings) as s:
        rows = {d.external_id: d for d in s.scalars(select(Documento))}
        status = build_status(s, numero=NUMERO, settings=court_settings)
    assert set(rows) == {simulator.documents(NUMERO)[0].id, "../../etc"}
    assert rows[simulator.documents(NUMERO)[0].id].status == "available"
    evil = rows["../../etc"]
    assert evil.status == "failed" and evil.tamanho is None and evil.hash_declarado == "md5:xyz"
    assert storage_key(NUMERO, evil.external_id, evil.nome) == f"processos/{NUMERO}/documentos/etc/passwd.pdf"
    assert evil.nome == "../../../passwd.pdf"
    assert status["processo"]["partes"] == [] and len(status["processo"]["tribunal"]) == 20


def test_retrying_the_job_from_the_jobs_page_downloads_the_failed_ones(court_settings, simulator, run_inline):
    from engine import jobs

    bad = simulator.documents(NUMERO)[0]
    simulator.script(f"/documentos/{bad.id}/binario", *[Fault("status", 500)] * 8)
    first = lookup(court_settings, NUMERO)
    with session_scope(court_settings) as s:
        assert s.scalar(select(Documento).where(Documento.external_id == bad.id)).status == "failed"
    with session_scope(court_settings) as s:
        retried = jobs.retry_job(s, actor=SYSTEM, job_id=first.job.id)
        retried_id = retried.id
    with session_scope(court_settings) as s:
        assert s.get(Job, retried_id).status == "succeeded"
        assert s.scalar(select(Documento).where(Documento.external_id == bad.id)).status == "available"
