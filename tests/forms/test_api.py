"""The drafts and survey REST endpoints over real HTTP, on both draft stores and both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openapi_spec_validator import validate

import dashboard.api.drafts  # noqa: F401  (registers the endpoints)
from engine.draft_stores import DraftKey, RedisDraftStore
from engine.settings import Settings
from tests.api_support import LiveServer, assert_matches_document, serve_app
from tests.forms.conftest import CNPJ_OK, clientes_data, make_settings, pesquisa_data, redis_client

pytestmark = pytest.mark.xdist_group("forms-api")


@pytest.fixture
def server(draft_settings: Settings) -> Iterator[LiveServer]:
    with serve_app(draft_settings) as srv:
        yield srv


def body(
    data: dict,
    *,
    version: int,
    step: int = 0,
    object_id: str = "novo-1",
    form_slug: str = "clientes",
    **extra: object,
) -> dict:
    return {
        "form_slug": form_slug,
        "object_id": object_id,
        "payload": {"data": data, "step": step},
        "version": version,
        **extra,
    }


Q = {"form_slug": "clientes", "object_id": "novo-1"}


def test_save_load_clear_round_trip_matches_the_document(server, store):
    token = server.token_for("ana@oficina.test", role="staff")
    api = server.client(token, headers={"User-Agent": "script-teste/1.0"})
    doc = server.openapi()
    r = api.post(
        "/api/v1/drafts/save", json=body({"cnpj": CNPJ_OK, "razao_social": "Oficina"}, version=0, step=1)
    )
    assert r.status_code == 200, r.text
    assert_matches_document(doc, "POST", "/api/v1/drafts/save", r)
    saved = r.json()
    assert saved["payload"]["version"] == 1 and saved["payload"]["step"] == 1
    assert saved["payload"]["fields_status"]["cnpj"] == "filled"
    assert saved["metadata"]["source"] == "api" and saved["metadata"]["user_agent"] == "script-teste/1.0"
    r = api.get("/api/v1/drafts/load", params=Q)
    assert r.status_code == 200
    assert_matches_document(doc, "GET", "/api/v1/drafts/load", r)
    assert r.json()["payload"]["data"] == {"cnpj": CNPJ_OK, "razao_social": "Oficina"}
    r = api.get("/api/v1/drafts")
    assert [d["object_id"] for d in r.json()["items"]] == ["novo-1"]
    assert_matches_document(doc, "GET", "/api/v1/drafts", r)
    r = api.delete("/api/v1/drafts/clear", params=Q)
    assert r.status_code == 204
    r = api.get("/api/v1/drafts/load", params=Q)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert api.delete("/api/v1/drafts/clear", params=Q).status_code == 404
    versions = api.get("/api/v1/drafts/versions", params=Q).json()["items"]
    assert [v["reason"] for v in versions] == ["clear", "first"]
    r = api.post("/api/v1/drafts/restore", json={**Q, "version_id": versions[0]["id"], "version": 0})
    assert r.status_code == 200 and r.json()["payload"]["data"]["razao_social"] == "Oficina"


def test_stale_version_is_409_with_both_versions(server, store):
    api = server.client(server.token_for("ana@oficina.test", role="staff"))
    assert api.post("/api/v1/drafts/save", json=body({"razao_social": "A"}, version=0)).status_code == 200
    assert api.post("/api/v1/drafts/save", json=body({"razao_social": "B"}, version=1)).status_code == 200
    r = api.post("/api/v1/drafts/save", json=body({"razao_social": "C"}, version=1))
    assert r.status_code == 409
    assert_matches_document(server.openapi(), "POST", "/api/v1/drafts/save", r)
    err = r.json()
    assert err["current"] == 2 and err["attempted"] == 1
    assert err["theirs"]["payload"]["data"] == {"razao_social": "B"}
    assert err["mine"]["data"] == {"razao_social": "C"} and err["fields"] == ["razao_social"]
    # The save of B sent again (its answer lost on the way) finds the draft holding it: answered, no new version.
    again = api.post("/api/v1/drafts/save", json=body({"razao_social": "B"}, version=1))
    assert again.status_code == 200 and again.json()["payload"]["version"] == 2
    assert_matches_document(server.openapi(), "POST", "/api/v1/drafts/save", again)


def test_oversized_payload_is_413_with_size_and_limit(draft_settings, store):
    with serve_app(make_settings(draft_settings, checkpoint_max_payload_kb=1)) as server:
        api = server.client(server.token_for("ana@oficina.test", role="staff"))
        r = api.post(
            "/api/v1/drafts/save",
            json=body(
                {
                    "razao_social": "x" * 300,
                    "nome_fantasia": "y" * 300,
                    "logradouro": "z" * 200,
                    "bairro": "w" * 100,
                    "contato_nome": "v" * 200,
                },
                version=0,
            ),
        )
        assert r.status_code == 413
        assert r.json()["limit"] == 1024 and r.json()["size"] > 1024


def test_rate_limit_is_429_with_retry_after(draft_settings, store):
    with serve_app(make_settings(draft_settings, checkpoint_rate_limit_per_minute=2)) as server:
        api = server.client(server.token_for("ana@oficina.test", role="staff"))
        for version in range(2):
            assert (
                api.post("/api/v1/drafts/save", json=body({"razao_social": "x"}, version=version)).status_code
                == 200
            )
        r = api.post("/api/v1/drafts/save", json=body({"razao_social": "y"}, version=2))
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 60 and r.json()["retry_after"] == int(
            r.headers["Retry-After"]
        )


def test_another_users_draft_is_403_and_roles_are_checked(server, store):
    ana = server.client(server.token_for("ana@oficina.test", role="staff"))
    bia_token = server.token_for("bia@oficina.test", role="admin")
    bia = server.client(bia_token)
    assert (
        ana.post("/api/v1/drafts/save", json=body({"razao_social": "Da Ana"}, version=0)).status_code == 200
    )
    ana_id = server.user_id("ana@oficina.test")
    assert bia.get("/api/v1/drafts/load", params={**Q, "user_id": ana_id}).status_code == 403
    assert bia.delete("/api/v1/drafts/clear", params={**Q, "user_id": ana_id}).status_code == 403
    r = bia.post("/api/v1/drafts/save", json=body({"razao_social": "Da Bia"}, version=1, user_id=ana_id))
    assert r.status_code == 403
    listed = bia.get("/api/v1/drafts", params={"user_id": ana_id}).json()["items"]
    assert [d["object_id"] for d in listed] == ["novo-1"] and "Da Ana" not in str(listed)
    assert bia.get("/api/v1/drafts/load", params=Q).status_code == 404  # her own key is another key
    viewer = server.client(server.token_for("vera@oficina.test", role="viewer"))
    assert viewer.post("/api/v1/drafts/save", json=body({"razao_social": "x"}, version=0)).status_code == 403
    assert server.client().get("/api/v1/drafts/load", params=Q).status_code == 401


def test_bad_bodies_are_refused_with_field_errors(server, store):
    api = server.client(server.token_for("ana@oficina.test", role="staff"))
    cases = [
        (body({"razao_social": 5}, version=0), 422),
        (body({"razao_social": "Oficina\x00Ltda"}, version=0), 422),
        (body({"nao_existe": "x"}, version=0), 422),
        (body({"razao_social": "x"}, version=-1), 422),
        (body({"razao_social": "x"}, version=0, object_id="a/b"), 422),
        (body({"razao_social": "x"}, version=0, step=7), 422),
        (body({}, version=0, form_slug="inexistente"), 404),
        ({"form_slug": "clientes"}, 422),
    ]
    for payload, status in cases:
        r = api.post("/api/v1/drafts/save", json=payload)
        assert r.status_code == status, (payload, r.text)
    r = api.post("/api/v1/drafts/save", content=b"{nao json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    # A number no amount in reais can hold is valid JSON: the draft keeps it, marked invalid (it was a 500).
    r = api.post("/api/v1/drafts/save", content=b'{"form_slug": "financeiro", "object_id": "valor-1", "version": 0, '
                 b'"payload": {"data": {"valor": 1e300}, "step": 1}}', headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["payload"]["fields_status"]["valor"] == "invalid"


def test_tampered_draft_is_422_integrity_failed(server, store, draft_settings):
    api = server.client(server.token_for("ana@oficina.test", role="staff"))
    assert (
        api.post("/api/v1/drafts/save", json=body({"razao_social": "Original"}, version=0)).status_code == 200
    )
    key = DraftKey(server.user_id("ana@oficina.test"), "clientes", "novo-1")
    if isinstance(store, RedisDraftStore):
        client = redis_client(store)
        client.hset(
            store._hkey(key), "b", client.hget(store._hkey(key), "b").replace("Original", "Adulterado")
        )
    else:
        from sqlalchemy import func, update

        from engine.db import session_scope
        from engine.models.drafts import Draft

        with session_scope(draft_settings) as s:
            s.execute(update(Draft).values(body=func.replace(Draft.body, "Original", "Adulterado")))
    r = api.get("/api/v1/drafts/load", params=Q)
    assert r.status_code == 422 and r.json()["error"] == "integrity_failed"
    assert "integridade" in r.json()["detail"]
    assert api.get("/api/v1/drafts/load", params=Q).status_code == 404


def test_submit_creates_the_cliente(server, store):
    api = server.client(server.token_for("ana@oficina.test", role="staff"))
    api.post("/api/v1/drafts/save", json=body(clientes_data(), version=0, step=2))
    r = api.post("/api/v1/drafts/submit", json=Q)
    assert r.status_code == 201, r.text
    assert r.json()["records"][0]["entity"] == "clientes"
    assert api.get("/api/v1/drafts/load", params=Q).status_code == 404
    r = api.post("/api/v1/drafts/submit", json={**Q, "data": clientes_data()})
    assert r.status_code == 409  # same CNPJ


def test_forms_are_described(server, store):
    api = server.client(server.token_for("ana@oficina.test", role="staff"))
    slugs = [f["slug"] for f in api.get("/api/v1/forms").json()["items"]]
    assert slugs == ["clientes", "processos", "financeiro", "pesquisa"]
    cnpj = api.get("/api/v1/forms/clientes").json()["steps"][0]["fields"][0]
    assert cnpj["kind"] == "cnpj" and cnpj["mask"] == "99.999.999/9999-99"
    assert api.get("/api/v1/forms/nada").status_code == 404


def test_openapi_document_lists_drafts_and_progress(server, store):
    doc = server.openapi()
    validate(doc)
    for template, methods in {
        "/api/v1/drafts/save": {"post"},
        "/api/v1/drafts/load": {"get"},
        "/api/v1/drafts/clear": {"delete"},
        "/api/progress/": {"get", "post", "delete"},
    }.items():
        assert methods <= set(doc["paths"][template]), template
    responses = doc["paths"]["/api/v1/drafts/save"]["post"]["responses"]
    assert {"200", "409", "413", "429", "403"} <= set(responses)
    assert "security" in doc["paths"]["/api/v1/drafts/save"]["post"] or doc.get("security")


def test_survey_progress_round_trip_and_already_submitted(server, store):
    public = server.client()
    doc = server.openapi()
    q = {"email": "Resp@Empresa.com.br", "survey_id": "pesquisa"}
    r = public.get("/api/progress/", params=q)
    assert r.status_code == 404
    r = public.post("/api/progress/", json={**q, "data": {"satisfacao": "4"}, "step": 1})
    assert r.status_code == 200, r.text
    assert_matches_document(doc, "POST", "/api/progress/", r)
    assert r.json()["email"] == "resp@empresa.com.br" and r.json()["step"] == 1
    r = public.get("/api/progress/", params=q)
    assert r.status_code == 200 and r.json()["data"]["satisfacao"] == "4"
    assert_matches_document(doc, "GET", "/api/progress/", r)
    r = public.post("/api/progress/submit", json={**q, "data": pesquisa_data("resp@empresa.com.br")})
    assert r.status_code == 201, r.text
    r = public.post("/api/progress/", json={**q, "data": {"satisfacao": "1"}, "step": 1})
    assert r.status_code == 400 and r.json()["error"] == "ALREADY_SUBMITTED"
    assert_matches_document(doc, "POST", "/api/progress/", r)
    assert public.get("/api/progress/", params=q).json()["error"] == "ALREADY_SUBMITTED"
    r = public.post("/api/progress/", json={"email": "nao-e-email", "survey_id": "pesquisa", "data": {}})
    assert r.status_code == 400
    assert (
        public.get("/api/progress/", params={"email": "a@b.com.br", "survey_id": "clientes"}).status_code
        == 404
    )
    q2 = {"email": "outra@empresa.com.br", "survey_id": "pesquisa"}
    public.post("/api/progress/", json={**q2, "data": {}})
    assert public.delete("/api/progress/", params=q2).status_code == 204
    assert public.delete("/api/progress/", params=q2).status_code == 404


def test_a_save_is_answered_only_once_its_audit_row_is_kept(server, store, monkeypatch):
    """A save is answered only once its audit row is as durable as the save: in the database store, in the
    save's transaction; in Redis, in the journal the save's script writes (no database commit is waited for),
    or, when the save also writes a durable version, committed with it by the group writer before the answer,
    which fails, the saved draft intact, when the row cannot be written."""
    import time

    from sqlalchemy import select

    from engine import audit, drafts
    from engine.db import session_scope
    from engine.models import AuditEvent

    api = server.client(server.token_for("ana@oficina.test", role="staff"))
    insert_batch = audit._insert_batch
    delays: list[float] = []

    def slow_insert(conn, entries):
        time.sleep(0.4)
        delays.append(0.4)
        return insert_batch(conn, entries)

    def saves() -> list[int]:
        drafts.drain_audit_journal(server.settings)
        with session_scope(server.settings) as s:
            return [e.after["version"] for e in s.scalars(
                select(AuditEvent).where(AuditEvent.action == "draft.save").order_by(AuditEvent.id))]

    # The first save also writes a durable version (in the group writer's transaction with its audit row).
    assert api.post("/api/v1/drafts/save", json=body({"razao_social": "Primeira"}, version=0)).status_code == 200
    monkeypatch.setattr(audit, "_insert_batch", slow_insert)
    started = time.monotonic()
    r = api.post("/api/v1/drafts/save", json=body({"razao_social": "Auditada"}, version=1))
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert delays == [] and elapsed < 0.4  # journaled (Redis) or in the save's transaction (database)
    # A step change writes a durable version: with its audit row, committed before the answer.
    started = time.monotonic()
    r = api.post("/api/v1/drafts/save", json=body({"razao_social": "Passo 2"}, version=2, step=1))
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    if store.in_session:
        assert delays == []
    else:
        assert delays and elapsed >= 0.4
    assert saves() == [1, 2, 3]

    def broken_insert(conn, entries):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(audit, "_insert_batch", broken_insert)
    r = api.post("/api/v1/drafts/save", json=body({"razao_social": "Sem auditoria"}, version=3, step=2))
    if store.in_session:
        assert r.status_code == 200
    else:
        assert r.status_code == 500 and r.json()["error"] == "internal"
        # The draft itself was saved (as before the audit); nothing typed is lost.
        monkeypatch.setattr(audit, "_insert_batch", insert_batch)
        loaded = api.get("/api/v1/drafts/load", params=Q).json()
        assert loaded["payload"]["data"]["razao_social"] == "Sem auditoria"


def test_a_save_touches_the_database_only_for_what_it_writes_there(server, store, monkeypatch):
    """A save kept in Redis needs no session of its own (opening and closing one is a measurable share of the
    save): its audit row, and its durable version on a step change, go through the group writer. The
    database store opens one per save and commits the draft, its version and its audit row in it."""
    from sqlalchemy import func, select

    import dashboard.api.base as api_base
    from engine import drafts
    from engine.db import session_scope
    from engine.models import AuditEvent
    from engine.models.drafts import DraftVersion

    api = server.client(server.token_for("ana@oficina.test", role="staff"))
    # The first save writes a durable version ("first") and looks the token up: both in the database.
    assert api.post("/api/v1/drafts/save", json=body({"razao_social": "Um"}, version=0)).status_code == 200
    opened: list[int] = []
    real = api_base.session_scope

    def counted(*args, **kwargs):
        opened.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(api_base, "session_scope", counted)
    r = api.post("/api/v1/drafts/save", json=body({"razao_social": "Dois"}, version=1))
    assert r.status_code == 200, r.text
    assert len(opened) == (1 if store.in_session else 0)
    r = api.post("/api/v1/drafts/save", json=body({"razao_social": "Três"}, version=2, step=1))  # a new step
    assert r.status_code == 200, r.text
    assert len(opened) == (2 if store.in_session else 0)
    drafts.drain_audit_journal(server.settings)  # what a reader of the trail does first
    with session_scope(server.settings) as s:
        versions = s.scalars(select(DraftVersion).order_by(DraftVersion.id)).all()
        saves = s.scalars(select(AuditEvent).where(AuditEvent.action == "draft.save")).all()
        assert s.scalar(select(func.count()).select_from(DraftVersion)) == 2
    # The first save's and the step change's, whole, with their reasons: what "Versões" lists and restores.
    assert [(v.reason, v.payload["version"], v.payload["step"], v.payload["data"]["razao_social"])
            for v in versions] == [("first", 1, 0, "Um"), ("step", 3, 1, "Três")]
    assert all(v.created_at.tzinfo is not None and v.hash for v in versions)
    assert sorted(e.after["version"] for e in saves) == [1, 2, 3]
