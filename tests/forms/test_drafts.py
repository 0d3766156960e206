"""Draft rules, proved on both stores (database and Redis) and both databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from engine import commands, drafts, forms
from engine.db import session_scope
from engine.draft_stores import DraftKey, RedisDraftStore, StoredDraft
from engine.errors import (
    BadRequest,
    Conflict,
    IntegrityError,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ValidationFailed,
)
from engine.forms import Field, Form, Step
from engine.models import AuditEvent, Cliente
from engine.models.drafts import Draft, DraftVersion, QuarantinedDraft
from engine.settings import Settings
from tests.forms.conftest import CNPJ_OK, CPF_OK, clientes_data, make_settings, redis_client


def save(
    settings: Settings,
    user: Any,
    data: dict[str, Any],
    *,
    version: int,
    step: int = 0,
    form_slug: str = "clientes",
    object_id: str = "novo-1",
    **kwargs: Any,
) -> drafts.DraftState:
    with session_scope(settings) as s:
        return drafts.save_draft(
            s,
            actor=user,
            form_slug=form_slug,
            object_id=object_id,
            payload={"data": data, "step": step},
            version=version,
            settings=settings,
            **kwargs,
        )


def load(
    settings: Settings, user: Any, *, form_slug: str = "clientes", object_id: str = "novo-1", **kwargs: Any
) -> drafts.DraftState | None:
    with session_scope(settings) as s:
        return drafts.load_draft(
            s, actor=user, form_slug=form_slug, object_id=object_id, settings=settings, **kwargs
        )


def tamper(
    store: Any, settings: Settings, key: DraftKey, *, body: str | None = None, version: int | None = None
) -> None:
    """Edit the stored bytes behind the service's back."""
    if isinstance(store, RedisDraftStore):
        client = redis_client(store)
        if body is not None:
            client.hset(store._hkey(key), "b", body)
        if version is not None:
            client.hset(store._hkey(key), "v", version)
        return
    with session_scope(settings) as s:
        values: dict[str, Any] = {}
        if body is not None:
            values["body"] = body
        if version is not None:
            values["version"] = version
        s.execute(update(Draft).where(Draft.key == str(key)).values(**values))


def audit_actions(settings: Settings, entity_id: str) -> list[str]:
    with session_scope(settings) as s:
        return list(
            s.scalars(
                select(AuditEvent.action).where(AuditEvent.entity_id == entity_id).order_by(AuditEvent.id)
            )
        )


class TestDraftStores:
    """Every rule of the draft service, run against each store implementation."""

    def test_save_then_load_restores_data_step_status_and_metadata(self, draft_settings, users, store):
        author = users["autor"]
        data = {"cnpj": "11.222.333/0001-00", "razao_social": "Oficina", "contato_cpf": CPF_OK}
        saved = save(
            draft_settings,
            author,
            data,
            version=0,
            step=1,
            source="web",
            user_agent="Mozilla/5.0 Teste",
            ip="203.0.113.45",
        )
        assert saved.version == 1 and saved.step == 1
        loaded = load(draft_settings, author)
        assert loaded is not None
        assert loaded.data == data and loaded.step == 1 and loaded.version == 1
        assert loaded.schema_version == forms.get_form("clientes").schema_version
        assert loaded.fields_status["cnpj"] == "invalid"  # kept as typed, flagged
        assert loaded.fields_status["razao_social"] == "filled"
        assert loaded.fields_status["cep"] == "missing"
        assert set(loaded.payload()) == {
            "data",
            "fields_status",
            "step",
            "timestamp",
            "version",
            "schema_version",
        }
        assert loaded.meta == {
            "ttl": draft_settings.checkpoint_ttl_seconds,
            "source": "web",
            "user_agent": "Mozilla/5.0 Teste",
            "ip_masked": "203.0.113.0/24",
        }
        assert CPF_OK not in json.dumps(loaded.meta)
        assert loaded.key == f"{author.id}:clientes:novo-1"
        assert loaded.next_field == "cep"  # the first to fill from the saved step on

    def test_missing_draft_is_none(self, draft_settings, users, store):
        assert load(draft_settings, users["autor"], object_id="nada") is None

    def test_stale_version_gets_conflict_with_both_versions(self, draft_settings, users, store):
        author = users["autor"]
        save(draft_settings, author, {"razao_social": "Versão A"}, version=0)
        save(draft_settings, author, {"razao_social": "Versão B"}, version=1)  # the other tab
        with pytest.raises(Conflict) as info:
            save(draft_settings, author, {"razao_social": "Versão C", "cidade": "Recife"}, version=1)
        err = info.value
        assert err.current == 2 and err.attempted == 1
        assert err.theirs["payload"]["data"] == {"razao_social": "Versão B"}
        assert err.mine["data"]["razao_social"] == "Versão C"
        assert err.fields == ["cidade", "razao_social"]
        assert load(draft_settings, author).data == {"razao_social": "Versão B"}  # nothing overwritten
        body = err.to_dict()
        assert body["error"] == "conflict" and body["current"] == 2

    def test_creating_over_an_existing_draft_is_a_conflict(self, draft_settings, users, store):
        save(draft_settings, users["autor"], {"razao_social": "Primeiro"}, version=0)
        with pytest.raises(Conflict) as info:
            save(draft_settings, users["autor"], {"razao_social": "Segundo"}, version=0)
        assert info.value.current == 1 and info.value.attempted == 0

    def test_the_same_save_sent_again_is_answered_not_a_conflict(self, draft_settings, users, store):
        # A save whose answer was lost is sent again on the version it was based on: the draft already holds
        # exactly it, so there is nothing to choose and no new version.
        author = users["autor"]
        save(draft_settings, author, {"razao_social": "Base"}, version=0)
        first = save(draft_settings, author, {"razao_social": "Final", "cep": "01310-100"}, version=1, step=1)
        again = save(draft_settings, author, {"razao_social": "Final", "cep": "01310-100"}, version=1, step=1)
        assert again.version == first.version == 2 and again.step == 1
        assert again.data == first.data and again.fields_status == first.fields_status
        assert again.next_field == first.next_field
        with session_scope(draft_settings) as s:
            versions = drafts.list_versions(s, actor=author, form_slug="clientes", object_id="novo-1")
            assert [v.reason for v in versions] == ["step", "first"]
            last = s.scalars(
                select(AuditEvent).where(AuditEvent.action == "draft.save").order_by(AuditEvent.id.desc())
            ).first()
            assert last.after["unchanged"] is True and last.after["version"] == 2
        with pytest.raises(Conflict):  # the same data on another step is a change
            save(draft_settings, author, {"razao_social": "Final", "cep": "01310-100"}, version=1, step=0)
        with pytest.raises(Conflict):  # and so is other data on the same step
            save(draft_settings, author, {"razao_social": "Final"}, version=1, step=1)
        assert load(draft_settings, author).version == 2

    def test_saving_on_a_version_that_no_longer_exists_is_a_conflict(self, draft_settings, users, store):
        with pytest.raises(Conflict) as info:
            save(draft_settings, users["autor"], {"razao_social": "X"}, version=3)
        assert info.value.current == 0 and info.value.theirs is None

    def test_tampered_body_is_refused_quarantined_and_audited(self, draft_settings, users, store):
        author = users["autor"]
        save(draft_settings, author, {"razao_social": "Original"}, version=0)
        key = DraftKey(author.id, "clientes", "novo-1")
        stored = store.get(None, key) if isinstance(store, RedisDraftStore) else None
        if stored is None:
            with session_scope(draft_settings) as s:
                stored = store.get(s, key)
        evil = stored.body.replace("Original", "Malicioso")
        tamper(store, draft_settings, key, body=evil)
        with pytest.raises(IntegrityError) as info:
            load(draft_settings, author)
        assert "integridade" in info.value.message
        with session_scope(draft_settings) as s:
            kept = s.scalars(select(QuarantinedDraft)).all()
            assert len(kept) == 1 and kept[0].raw == evil and kept[0].store == store.name
            assert kept[0].user_id == author.id
        assert "draft.tampered" in audit_actions(draft_settings, str(key))
        assert load(draft_settings, author) is None  # the bad copy is never applied

    def test_tampered_version_is_refused(self, draft_settings, users, store):
        author = users["autor"]
        save(draft_settings, author, {"razao_social": "Original"}, version=0)
        tamper(store, draft_settings, DraftKey(author.id, "clientes", "novo-1"), version=7)
        with pytest.raises(IntegrityError):
            load(draft_settings, author)

    def test_a_signed_draft_moved_to_another_user_is_refused(self, draft_settings, users, store):
        author, other = users["autor"], users["outro"]
        save(draft_settings, author, {"razao_social": "Da autora"}, version=0)
        with session_scope(draft_settings) as s:
            stored = store.get(s, DraftKey(author.id, "clientes", "novo-1"))
            moved = StoredDraft(
                key=DraftKey(other.id, "clientes", "novo-1"),
                body=stored.body,
                signature=stored.signature,
                version=stored.version,
                step=0,
                updated_at=time.time(),
                expires_at=time.time() + 60,
            )
            assert store.put(s, moved, expected_version=0, snapshot_every=300).stored
        with pytest.raises(IntegrityError):
            load(draft_settings, other)

    def test_payload_over_the_size_limit_is_refused_with_size_and_limit(self, draft_settings, users, store):
        small = make_settings(draft_settings, checkpoint_max_payload_kb=1)
        with pytest.raises(PayloadTooLarge) as info:
            save(
                small,
                users["autor"],
                {
                    "razao_social": "x" * 300,
                    "nome_fantasia": "y" * 300,
                    "logradouro": "z" * 200,
                    "contato_nome": "w" * 200,
                },
                version=0,
            )
        assert info.value.limit == 1024 and info.value.size > 1024
        assert "1 KB" in info.value.message
        assert load(draft_settings, users["autor"]) is None

    def test_saves_past_the_rate_limit_get_a_retry_time(self, draft_settings, users, store):
        limited = make_settings(draft_settings, checkpoint_rate_limit_per_minute=3)
        author = users["autor"]
        for version in range(3):
            save(limited, author, {"razao_social": f"v{version}"}, version=version)
        with pytest.raises(LimitExceeded) as info:
            save(limited, author, {"razao_social": "v3"}, version=3)
        assert 1 <= info.value.retry_after <= 60
        assert load(limited, author).data == {"razao_social": "v2"}
        # Another user has a budget of their own.
        save(limited, users["outro"], {"razao_social": "outra"}, version=0)

    def test_expired_draft_is_gone_and_swept(self, draft_settings, users, store):
        short = make_settings(draft_settings, checkpoint_ttl_seconds=1)
        save(short, users["autor"], {"razao_social": "Expira"}, version=0)
        assert load(short, users["autor"]) is not None
        time.sleep(1.3)
        assert load(short, users["autor"]) is None
        with session_scope(short) as s:
            assert (
                drafts.list_drafts(s, actor=users["autor"], include_recoverable=False, settings=short) == []
            )
            counts = drafts.sweep_expired(s, settings=short)
        assert counts["drafts"] == 1
        if store.name == "db":
            with session_scope(short) as s:
                assert store.count(s) == 0
        # After expiry a new draft starts at version 0 again.
        assert save(short, users["autor"], {"razao_social": "Novo"}, version=0).version == 1

    def test_only_the_author_loads_saves_or_clears(self, draft_settings, users, store):
        author, other, admin = users["autor"], users["outro"], users["admin"]
        save(draft_settings, author, {"razao_social": "Segredo"}, version=0)
        for intruder in (other, admin):
            with pytest.raises(PermissionDenied):
                load(draft_settings, intruder, user_id=author.id)
            with pytest.raises(PermissionDenied):
                save(draft_settings, intruder, {"razao_social": "Invasão"}, version=1, user_id=author.id)
            with session_scope(draft_settings) as s, pytest.raises(PermissionDenied):
                drafts.clear_draft(
                    s, actor=intruder, form_slug="clientes", object_id="novo-1", user_id=author.id
                )
        assert load(draft_settings, other) is None  # the same object id is another key for another user
        with session_scope(draft_settings) as s:
            listed = drafts.list_drafts(s, actor=admin, user_id=author.id)
            assert [(d.form_slug, d.object_id, d.version) for d in listed] == [("clientes", "novo-1", 1)]
            assert "Segredo" not in json.dumps([d.to_dict() for d in listed])
            everyone = drafts.list_drafts(s, actor=admin, everyone=True)
            assert [d.user_id for d in everyone] == [author.id]
            with pytest.raises(PermissionDenied):
                drafts.list_drafts(s, actor=other, user_id=author.id)
        assert load(draft_settings, author).data == {"razao_social": "Segredo"}

    def test_roles_without_the_form_permission_cannot_draft_it(self, draft_settings, users, store):
        with pytest.raises(PermissionDenied):
            save(draft_settings, users["leitor"], {"razao_social": "X"}, version=0)
        with pytest.raises(PermissionDenied):
            save(draft_settings, users["analista"], {"razao_social": "X"}, version=0)

    def test_old_schema_is_migrated_by_the_registered_function(self, draft_settings, users, store):
        author = users["autor"]
        key = DraftKey(author.id, "clientes", "antigo")
        old = {
            "data": {
                "razao_social": "Antiga",
                "telefone_contato": "(11) 91234-5678",
                "endereco": "Rua Velha, 10",
            },
            "fields_status": {},
            "step": 2,
            "timestamp": time.time(),
            "version": 1,
            "schema_version": 1,
        }
        body = drafts.canonical(old)
        with session_scope(draft_settings) as s:
            store.put(
                s,
                StoredDraft(
                    key=key,
                    body=body,
                    signature=drafts.signature_for(draft_settings, key, body),
                    version=1,
                    step=2,
                    updated_at=time.time(),
                    expires_at=time.time() + 60,
                ),
                expected_version=0,
                snapshot_every=300,
            )
        loaded = load(draft_settings, author, object_id="antigo")
        assert loaded.migrated_from == 1 and not loaded.read_only
        assert loaded.schema_version == 2
        assert loaded.data == {
            "razao_social": "Antiga",
            "contato_telefone": "(11) 91234-5678",
            "logradouro": "Rua Velha, 10",
        }
        assert loaded.fields_status["contato_telefone"] == "filled"
        saved = save(draft_settings, author, loaded.data, version=loaded.version, step=2, object_id="antigo")
        assert saved.version == 2 and saved.schema_version == 2

    def test_old_schema_without_migration_is_read_only_with_its_data(self, draft_settings, users, store):
        form = Form(
            slug="teste_rascunho",
            title="Teste",
            schema_version=3,
            permission="drafts.save",
            steps=(Step("a", "A", (Field("nome", "Nome"),)),),
        )
        forms.register_form(form)
        try:
            author = users["autor"]
            key = DraftKey(author.id, form.slug, "x")
            old = {
                "data": {"apelido": "Zé"},
                "fields_status": {},
                "step": 0,
                "timestamp": time.time(),
                "version": 1,
                "schema_version": 1,
            }
            body = drafts.canonical(old)
            with session_scope(draft_settings) as s:
                store.put(
                    s,
                    StoredDraft(
                        key=key,
                        body=body,
                        version=1,
                        step=0,
                        updated_at=time.time(),
                        signature=drafts.signature_for(draft_settings, key, body),
                        expires_at=time.time() + 60,
                    ),
                    expected_version=0,
                    snapshot_every=300,
                )
            loaded = load(draft_settings, author, form_slug=form.slug, object_id="x")
            assert loaded.read_only and loaded.data == {"apelido": "Zé"}
            assert "somente para leitura" in loaded.errors[0]["message"]
            with session_scope(draft_settings) as s, pytest.raises(ValidationFailed):
                drafts.submit_draft(
                    s, actor=author, form_slug=form.slug, object_id="x", settings=draft_settings
                )
        finally:
            forms.unregister_form(form.slug)

    def test_partial_drafts_refuse_wrong_types_and_unknown_fields_but_keep_bad_values(
        self, draft_settings, users, store
    ):
        author = users["autor"]
        for bad in (
            {"razao_social": 42},
            {"campo_inexistente": "x"},
            {"razao_social": "x" * 301},
            {"uf": ["SP"]},
            "não é objeto",
        ):
            with pytest.raises(ValidationFailed):
                save(draft_settings, author, bad, version=0)  # type: ignore[arg-type]
        with pytest.raises(ValidationFailed):
            save(draft_settings, author, {"razao_social": "ok"}, version=0, step=9)
        with pytest.raises(BadRequest):
            save(draft_settings, author, {"razao_social": "ok"}, version=-1)
        with pytest.raises(BadRequest):
            save(draft_settings, author, {"razao_social": "ok"}, version=0, object_id="../../etc")
        with pytest.raises(NotFound):
            save(draft_settings, author, {}, version=0, form_slug="inexistente")
        for bad, said in (({"parcelas": 2.5}, "número inteiro"), ({"parcelas": [2]}, "número inteiro"),
                          ({"valor": True}, "valor em reais"), ({"descricao": 5}, "deve ser texto")):
            with pytest.raises(ValidationFailed, match=said):  # what the field takes, not "texto" for all
                save(draft_settings, author, bad, version=0, form_slug="financeiro")
        saved = save(draft_settings, author, {"cnpj": "11.111.111/1111-11", "cep": "123"}, version=0)
        assert saved.fields_status["cnpj"] == "invalid" and saved.fields_status["cep"] == "invalid"
        assert {e["field"] for e in saved.errors} == {"cnpj", "cep"}

    def test_a_nul_character_is_refused_before_anything_is_stored(self, draft_settings, users, store):
        # PostgreSQL keeps no NUL in text or JSONB: on the Redis store the draft was swapped in and then its
        # durable version failed, so the save answered an error while half of it had landed.
        author = users["autor"]
        with pytest.raises(ValidationFailed) as first:
            save(draft_settings, author, {"razao_social": "Oficina\x00Ltda"}, version=0, object_id="nul-1")
        assert first.value.data["errors"][0]["field"] == "razao_social"
        assert "U+0000" in str(first.value)
        assert load(draft_settings, author, object_id="nul-1") is None
        save(draft_settings, author, {"razao_social": "Oficina"}, version=0, object_id="nul-2")
        with pytest.raises(ValidationFailed):  # a step change, whose durable version is due
            save(draft_settings, author, {"cidade": "São\x00Paulo"}, version=1, step=1, object_id="nul-2")
        kept = load(draft_settings, author, object_id="nul-2")
        assert kept is not None and kept.version == 1 and kept.data == {"razao_social": "Oficina"}
        with session_scope(draft_settings) as s:
            versions = drafts.list_versions(s, actor=author, form_slug="clientes", object_id="nul-2")
        assert [v.reason for v in versions] == ["first"]
        assert save(draft_settings, author, {"cidade": "São Paulo"}, version=1, step=1, object_id="nul-2").version == 2

    def test_numbers_no_amount_can_hold_are_kept_invalid_and_non_finite_ones_refused(
        self, draft_settings, users, store
    ):
        # Decimal cannot round 1e300 to cents (it raised InvalidOperation: a 500 for valid JSON); NaN and the
        # infinities, which a script can pass, have no JSON form at all.
        author = users["autor"]
        for i, huge in enumerate((1e300, 10**40)):
            saved = save(draft_settings, author, {"valor": huge}, version=0, form_slug="financeiro",
                         object_id=f"huge-{i}")
            assert saved.fields_status["valor"] == "invalid"
            assert "fora do alcance" in saved.errors[0]["message"]
            assert load(draft_settings, author, form_slug="financeiro", object_id=f"huge-{i}").data == {"valor": huge}
        for value in (float("nan"), float("inf"), -float("inf")):
            with pytest.raises(ValidationFailed) as info:
                save(draft_settings, author, {"valor": value}, version=0, form_slug="financeiro", object_id="nan")
            assert "número finito" in str(info.value)
        assert load(draft_settings, author, form_slug="financeiro", object_id="nan") is None

    def test_durable_versions_on_step_change_list_and_restore(self, draft_settings, users, store):
        author = users["autor"]
        save(draft_settings, author, {"razao_social": "Passo 1"}, version=0, step=0)
        save(draft_settings, author, {"razao_social": "Passo 1b"}, version=1, step=0)  # same step: no version
        save(draft_settings, author, {"razao_social": "Passo 2", "cep": "01310-100"}, version=2, step=1)
        with session_scope(draft_settings) as s:
            versions = drafts.list_versions(s, actor=author, form_slug="clientes", object_id="novo-1")
            assert [v.reason for v in versions] == ["step", "first"]
            first = versions[-1]
            assert first.payload["data"] == {"razao_social": "Passo 1"}
            assert first.hash == drafts.signature_for(
                draft_settings, f"{author.id}:clientes:novo-1", drafts.canonical(first.payload)
            )
            with pytest.raises(PermissionDenied):
                drafts.list_versions(
                    s, actor=users["outro"], form_slug="clientes", object_id="novo-1", user_id=author.id
                )
        with session_scope(draft_settings) as s:
            restored = drafts.restore_version(
                s,
                actor=author,
                form_slug="clientes",
                object_id="novo-1",
                version_id=first.id,
                version=3,
                settings=draft_settings,
            )
        assert restored.version == 4 and restored.data == {"razao_social": "Passo 1"} and restored.step == 0
        assert load(draft_settings, author).data == {"razao_social": "Passo 1"}
        with session_scope(draft_settings) as s, pytest.raises(Conflict):  # another version on a stale base
            drafts.restore_version(
                s,
                actor=author,
                form_slug="clientes",
                object_id="novo-1",
                version_id=versions[0].id,
                version=3,
                settings=draft_settings,
            )
        with session_scope(draft_settings) as s:  # the same restore again (a second click): the draft as it is
            again = drafts.restore_version(
                s,
                actor=author,
                form_slug="clientes",
                object_id="novo-1",
                version_id=first.id,
                version=3,
                settings=draft_settings,
            )
        assert again.version == 4 and again.data == {"razao_social": "Passo 1"}
        for beyond in (2**31, 2**63):  # beyond an INTEGER id: the database raised instead of finding nothing
            with session_scope(draft_settings) as s, pytest.raises(NotFound):
                drafts.restore_version(s, actor=author, form_slug="clientes", object_id="novo-1", version_id=beyond,
                                       version=4, settings=draft_settings)

    def test_a_version_with_numbers_the_database_rewrites_still_restores(self, draft_settings, users, store):
        """PostgreSQL's JSONB writes 1e16 as 10000000000000000 and -0.0 as 0.0: a version holding such a value
        (kept as typed, marked invalid when out of bounds) must still pass its integrity check and restore,
        not be taken for tampered."""
        author = users["autor"]
        for n, valor in enumerate([1e16, -0.0, 2.5e20, 1.5e-7, 1234.56]):
            object_id = f"numero-{n}"
            data = {"descricao": "Números", "valor": valor}
            saved = save(draft_settings, author, data, version=0, form_slug="financeiro", object_id=object_id)
            with session_scope(draft_settings) as s:
                (first,) = drafts.list_versions(s, actor=author, form_slug="financeiro", object_id=object_id)
                restored = drafts.restore_version(
                    s, actor=author, form_slug="financeiro", object_id=object_id, version_id=first.id,
                    version=saved.version, settings=draft_settings,
                )
            assert restored.data == data, valor
            loaded = load(draft_settings, author, form_slug="financeiro", object_id=object_id)
            assert loaded.data == data and loaded.version == saved.version + 1, valor

    def test_a_durable_version_is_written_at_most_every_interval(
        self, draft_settings, users, store, monkeypatch
    ):
        author = users["autor"]
        save(draft_settings, author, {"razao_social": "v1"}, version=0)
        save(draft_settings, author, {"razao_social": "v2"}, version=1)  # same step, within the interval
        monkeypatch.setattr(drafts, "SNAPSHOT_EVERY_SECONDS", 0)
        save(draft_settings, author, {"razao_social": "v3"}, version=2)
        with session_scope(draft_settings) as s:
            versions = drafts.list_versions(s, actor=author, form_slug="clientes", object_id="novo-1")
            assert [(v.reason, v.payload["data"]["razao_social"]) for v in versions] == [
                ("interval", "v3"),
                ("first", "v1"),
            ]

    def test_tampered_version_is_not_restored(self, draft_settings, users, store):
        author = users["autor"]
        save(draft_settings, author, {"razao_social": "Boa"}, version=0)
        with session_scope(draft_settings) as s:
            row = s.scalars(select(DraftVersion)).one()
            row.payload = {**row.payload, "data": {"razao_social": "Trocada"}}
            version_id = row.id
        with session_scope(draft_settings) as s, pytest.raises(IntegrityError):
            drafts.restore_version(
                s,
                actor=author,
                form_slug="clientes",
                object_id="novo-1",
                version_id=version_id,
                version=1,
                settings=draft_settings,
            )
        assert load(draft_settings, author).data == {"razao_social": "Boa"}

    def test_clear_keeps_a_restorable_version_and_lists_it(self, draft_settings, users, store):
        author = users["autor"]
        save(draft_settings, author, {"razao_social": "Desfazer"}, version=0)
        with session_scope(draft_settings) as s:
            assert drafts.clear_draft(
                s,
                actor=author,
                form_slug="clientes",
                object_id="novo-1",
                reason="undo",
                settings=draft_settings,
            )
        assert load(draft_settings, author) is None
        with session_scope(draft_settings) as s:
            listed = drafts.list_drafts(s, actor=author, settings=draft_settings)
            assert [(d.object_id, d.live) for d in listed] == [("novo-1", False)]
            reasons = [
                v.reason
                for v in drafts.list_versions(s, actor=author, form_slug="clientes", object_id="novo-1")
            ]
            assert reasons == ["undo", "first"]
            assert not drafts.clear_draft(
                s, actor=author, form_slug="clientes", object_id="novo-1", settings=draft_settings
            )
        actions = audit_actions(draft_settings, f"{author.id}:clientes:novo-1")
        assert actions == ["draft.save", "draft.clear"]

    def test_submit_creates_the_record_and_deletes_draft_and_versions(self, draft_settings, users, store):
        author = users["autor"]
        save(
            draft_settings,
            author,
            clientes_data(cnpj="11.222.333/0001-81", razao_social=""),
            version=0,
            step=2,
        )
        with session_scope(draft_settings) as s, pytest.raises(ValidationFailed) as info:
            drafts.submit_draft(
                s, actor=author, form_slug="clientes", object_id="novo-1", settings=draft_settings
            )
        assert [e["field"] for e in info.value.errors] == ["razao_social"]
        save(draft_settings, author, clientes_data(), version=1, step=2)
        with session_scope(draft_settings) as s:
            cliente = drafts.submit_draft(
                s, actor=author, form_slug="clientes", object_id="novo-1", settings=draft_settings
            )
            assert cliente.cnpj == "11222333000181"
        with session_scope(draft_settings) as s:
            row = s.scalars(select(Cliente)).one()
            assert row.razao_social == "Oficina Mecânica Ltda" and row.endereco["cep"] == "01310100"
            assert row.contatos[0]["cpf"] == "52998224725" and row.guest_code == "CONVITE-1"
            assert s.scalars(select(DraftVersion)).all() == []
        assert load(draft_settings, author) is None
        save(draft_settings, author, clientes_data(), version=0, object_id="novo-2")
        with session_scope(draft_settings) as s, pytest.raises(Conflict):
            drafts.submit_draft(
                s, actor=author, form_slug="clientes", object_id="novo-2", settings=draft_settings
            )

    def test_metrics_count_operations_and_sizes(self, draft_settings, users, store):
        from engine.metrics import REGISTRY

        def value(name: str, labels: dict[str, str]) -> float:
            return REGISTRY.get_sample_value(name, labels) or 0.0

        before_ok = value(
            "oficina_drafts_operations_total", {"form": "clientes", "action": "save", "outcome": "ok"}
        )
        before_conflict = value(
            "oficina_drafts_operations_total", {"form": "clientes", "action": "save", "outcome": "conflict"}
        )
        before_sizes = value("oficina_draft_payload_bytes_count", {"form": "clientes"})
        save(draft_settings, users["autor"], {"razao_social": "M"}, version=0)
        with pytest.raises(Conflict):
            save(draft_settings, users["autor"], {"razao_social": "N"}, version=0)
        assert (
            value("oficina_drafts_operations_total", {"form": "clientes", "action": "save", "outcome": "ok"})
            == before_ok + 1
        )
        assert (
            value(
                "oficina_drafts_operations_total",
                {"form": "clientes", "action": "save", "outcome": "conflict"},
            )
            == before_conflict + 1
        )
        assert value("oficina_draft_payload_bytes_count", {"form": "clientes"}) == before_sizes + 2
        assert value("oficina_draft_operation_seconds_count", {"form": "clientes", "action": "save"}) >= 2


def test_sweep_job_runs_through_the_queue(draft_settings, users, store):
    from engine import queue as queue_port

    short = make_settings(draft_settings, checkpoint_ttl_seconds=1)
    save(short, users["autor"], {"razao_social": "Vai expirar"}, version=0)
    time.sleep(1.2)
    queue_port.install(queue_port.InlineQueue(short))
    try:
        job_id = drafts.schedule_sweep(settings=short)
    finally:
        queue_port.install(None)
    with session_scope(short) as s:
        from engine.models import Job

        job = s.get(Job, job_id)
        assert job.kind == "drafts_sweep" and job.status == "succeeded"
        assert job.result["drafts"] == 1


def test_cli_lists_drafts_without_content_and_sweeps(draft_settings, users, store, capsys):
    import argparse

    save(
        draft_settings,
        users["autor"],
        {"razao_social": "Conteúdo secreto", "contato_cpf": CPF_OK},
        version=0,
        step=1,
    )
    parser = argparse.ArgumentParser()
    commands.register_drafts(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["drafts", "list", "--user", "autor@oficina.test"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "clientes" in out and "novo-1" in out and "Endereço" in out and "1 rascunho(s)" in out
    assert "secreto" not in out and CPF_OK not in out
    args = parser.parse_args(["drafts", "list", "--user", "ninguem@oficina.test"])
    with pytest.raises(NotFound):
        args.func(args)
    args = parser.parse_args(["drafts", "sweep"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == {"drafts": 0, "versions": 0, "survey_progress": 0,
                                                   "audit_journal": 0}


def test_the_signature_of_a_draft_is_the_one_earlier_releases_wrote():
    # HMAC-SHA256 with a key derived for the purpose "draft": a change here would take every stored draft and
    # durable version for tampered. The value was computed with the hmac module alone.
    settings = Settings.from_environ({"OFICINA_ENV": "test", "SECRET_KEY": "test-secret"})
    assert drafts.signature_for(settings, DraftKey(1, "clientes", "novo-1"), "{}") == (
        "24c7c36f41b343065d952535ab4a81590686b0518ad50fda6734d63f5c7149f3"
    )


def test_mask_ip_never_keeps_the_full_address():
    assert drafts.mask_ip("203.0.113.45") == "203.0.113.0/24"
    assert drafts.mask_ip("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert drafts.mask_ip("::ffff:10.1.2.3") == "10.1.2.0/24"
    assert drafts.mask_ip("nada") == ""


def test_cnpj_fixture_is_valid():
    assert forms.get_form("clientes").field("cnpj").clean(CNPJ_OK) == "11222333000181"


# Redis: the save's scripts on a connection of the thread's own ------------------------------------------

REDIS_ONLY = pytest.mark.parametrize("combination", [("postgresql", "redis")], indirect=True,
                                     ids=["postgresql-redis"])


@REDIS_ONLY
def test_a_save_after_redis_forgot_its_scripts_still_lands_once(draft_settings, users, store):
    author = users["autor"]
    save(draft_settings, author, {"razao_social": "Antes"}, version=0)
    lean = store._hit_and_put._local.owned[1]
    assert lean.is_connected  # the save went through the thread's own connection
    redis_client(store).script_flush()  # what a Redis restart does to loaded scripts
    assert save(draft_settings, author, {"razao_social": "Depois"}, version=1).version == 2
    assert load(draft_settings, author).data == {"razao_social": "Depois"}
    assert save(draft_settings, author, {"razao_social": "De novo"}, version=2).version == 3


@REDIS_ONLY
def test_a_save_whose_connection_was_dropped_reconnects_and_lands_once(draft_settings, users, store):
    author = users["autor"]
    save(draft_settings, author, {"razao_social": "Antes"}, version=0)
    lean = store._hit_and_put._local.owned[1]
    lean.send_command("CLIENT", "ID")
    client_id = lean.read_response()
    assert redis_client(store).client_kill_filter(_id=client_id) == 1  # the server drops it (idle timeout)
    saved = save(draft_settings, author, {"razao_social": "Depois"}, version=1)
    assert saved.version == 2 and load(draft_settings, author).data == {"razao_social": "Depois"}
    with pytest.raises(Conflict):  # applied once: version 1 is stale now
        save(draft_settings, author, {"razao_social": "Outra"}, version=1)
    assert save(draft_settings, author, {"razao_social": "Por fim"}, version=2).version == 3


@REDIS_ONLY
def test_an_error_reply_is_raised_as_the_client_raises_it_and_the_connection_goes_on(draft_settings, store):
    from redis.exceptions import ResponseError

    from engine.draft_stores import _LeanScript

    client = redis_client(store)
    failing = _LeanScript(client, client.register_script("return redis.error_reply('ERR recusado: ' .. ARGV[1])"))
    echo = _LeanScript(client, client.register_script("return {ARGV[1], tonumber(ARGV[2]) + 1}"))
    with pytest.raises(ResponseError, match="recusado: ção"):
        failing(keys=[], args=["ção"])
    connection = failing._local.owned[1]
    assert connection.is_connected  # an answer, not a broken connection: kept
    assert echo(keys=["k"], args=["ação", 41]) == ["ação", 42]  # decoded as the client decodes
    with pytest.raises(ResponseError, match="recusado: de novo"):
        failing(keys=[], args=["de novo"])
    assert failing._local.owned[1] is connection and connection.is_connected


def test_the_canonical_text_is_the_standard_librarys_whatever_the_values():
    # A durable version is checked against the canonical text of what is read back: if the fast encoder wrote
    # other text for some value, versions written before (or by the other encoder) would look tampered with.
    import enum
    import random
    import struct

    class Kind(enum.StrEnum):
        A = "a"

    rng = random.Random(20261204)
    floats = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(20_000)]
    floats += [float(f"{m}e{e}") for e in range(-330, 310) for m in ("1", "1.5", "-2.25", "9.999999999999998")]
    floats = [f for f in floats if f == f and f not in (float("inf"), float("-inf"))]
    values: list[object] = [*floats, 0.0, -0.0, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30, True, False, None,
                            "ação", "\u2028\x7f\x1f\"\\/", "😀", "\ud7ff", Kind.A, (1, 2), [1, [2.5e-7]]]
    standard = functools.partial(json.dumps, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                 allow_nan=False)
    for value in values:
        payload = {"data": {"z": value, "ç": 1, "a": {"é": value, "e": 2}}, "step": 0, "version": 1}
        assert drafts.canonical(payload) == standard(payload), value
    keys = {"b": 1, "á": 2, "a": 3, "Z": 4, "😀": 5, "\uffff": 6, "1": 7}
    assert drafts.canonical(keys) == standard(keys)
    for odd in ({1: "chave inteira"}, {True: "chave booleana"}):
        assert drafts.canonical(odd) == standard(odd)


@REDIS_ONLY
def test_a_push_on_the_connection_is_not_taken_for_the_scripts_answer(draft_settings, store):
    # With RESP3 the server may push messages (key invalidations, maintenance notices) between replies: taken
    # for an answer, every later answer on that thread would be the previous call's.
    import redis

    from engine.draft_stores import _LeanScript

    # RESP3 asked for explicitly (the default of the client the store uses today): pushes exist only there.
    client = redis.Redis.from_url(draft_settings.redis_url, decode_responses=True, protocol=3)
    echo = _LeanScript(client, client.register_script("return ARGV[1]"))
    assert echo(keys=[], args=["um"]) == "um"
    connection = echo._local.owned[1]
    assert int(connection.protocol) == 3
    key = f"oficina:{draft_settings.queue_name}:tracked"
    client.set(key, "a")
    connection.send_command("CLIENT", "TRACKING", "on")
    assert connection.read_response() in ("OK", b"OK")
    connection.send_command("GET", key)  # now tracked: a change by anyone pushes an invalidation here
    assert connection.read_response() in ("a", b"a")
    client.set(key, "b")
    assert [echo(keys=[], args=[text]) for text in ("dois", "três", "quatro")] == ["dois", "três", "quatro"]
    client.close()


@REDIS_ONLY
def test_a_script_the_server_did_not_run_goes_to_the_client_and_a_late_answer_is_not_run_twice(
        draft_settings, store, monkeypatch):
    import redis
    from redis.exceptions import BusyLoadingError, TimeoutError

    from engine.draft_stores import _LeanScript

    client = redis_client(store)
    loading = _LeanScript(client, client.register_script("return redis.error_reply('LOADING carregando')"))
    through_client: list[int] = []
    monkeypatch.setattr(type(loading.script), "__call__",
                        lambda self, **kw: through_client.append(1) or "pelo cliente")
    assert loading(keys=[], args=[]) == "pelo cliente" and through_client == [1]  # it waits and retries
    monkeypatch.undo()
    assert isinstance(loading._parse_error("LOADING x"), BusyLoadingError)

    slow_client = redis.Redis.from_url(draft_settings.redis_url, decode_responses=True, socket_timeout=0.2)
    key = f"oficina:{draft_settings.queue_name}:ran"
    slow = _LeanScript(slow_client, slow_client.register_script(
        "local n = redis.call('INCR', KEYS[1]) local t0 = redis.call('TIME') "
        "repeat local t = redis.call('TIME') until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 500000 "
        "return n"))
    slow_client.script_load(slow.script.script)  # known to the server: the call goes out on the socket at once
    with pytest.raises(TimeoutError, match="não respondeu a tempo"):
        slow(keys=[key], args=[])
    time.sleep(0.5)
    assert client.get(key) == "1"  # run once: not sent again when its answer was late
    slow_client.close()
