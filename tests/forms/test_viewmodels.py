"""The wizard and survey view-models without a server: restore, coalescing under the rate limit, conflicts,
undo and submit (the browser tests cover the same through Chromium)."""

from __future__ import annotations

import time

import pytest

from dashboard.pages.forms import DraftWizard, MyDraftsPage, wizard_view
from dashboard.pages.survey import SurveySession
from engine import drafts
from engine.db import session_scope
from tests.forms.conftest import clientes_data, make_settings


def wizard(settings, user, object_id="novo-vm"):
    w = DraftWizard(settings=settings, user=user, form_slug="clientes", object_id=object_id)
    w.open()
    return w


def stored(settings, user, object_id="novo-vm"):
    with session_scope(settings) as s:
        return drafts.load_draft(s, actor=user, form_slug="clientes", object_id=object_id, settings=settings)


def test_open_restores_data_step_focus_and_banner_then_undo(draft_settings, users, store):
    author = users["autor"]
    w = wizard(draft_settings, author)
    assert w.banner == "" and w.component.version == 0
    w.queue_save({"cnpj": "11.222.333/0001-81", "cep": "01310-100"}, step=1, seq=3)
    assert w.component.ack_seq == 3 and w.component.save_state == "saved"
    again = wizard(draft_settings, author)
    c = again.component
    assert c.values == {"cnpj": "11.222.333/0001-81", "cep": "01310-100"} and c.step == 1
    assert c.focus_field == "logradouro" and c.status["cep"] == "filled"
    assert "etapa 2 (Endereço)" in again.banner and "Logradouro" in again.banner
    again.undo()
    assert again.banner == "" and again.component.values == {} and again.component.version == 0
    assert stored(draft_settings, author) is None
    assert again.versions and "desfeito" in again.versions[0][0]
    again.restore(again.versions[0][1])
    assert again.component.values["cep"] == "01310-100"


def test_rate_limited_saves_wait_and_send_only_the_latest(draft_settings, users, store, monkeypatch):
    monkeypatch.setattr(drafts, "RATE_WINDOW_SECONDS", 1)
    limited = make_settings(draft_settings, checkpoint_rate_limit_per_minute=1)
    author = users["autor"]
    w = wizard(limited, author)
    w.queue_save({"razao_social": "primeira"}, step=0, seq=1)
    w.queue_save({"razao_social": "segunda"}, step=0, seq=2)
    assert w.component.save_state == "waiting" and "nada foi perdido" in w.component.message
    w.queue_save({"razao_social": "terceira"}, step=0, seq=3)  # coalesced while waiting
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and w.component.ack_seq < 3:
        time.sleep(0.05)
    assert w.component.ack_seq == 3 and w.component.save_state == "saved"
    state = stored(limited, author)
    assert state.data == {"razao_social": "terceira"} and state.version == 2  # "segunda" never sent alone


def test_stale_tab_gets_a_conflict_and_resolves_field_by_field(draft_settings, users, store):
    author = users["autor"]
    first = wizard(draft_settings, author)
    first.queue_save({"razao_social": "Original", "cidade": "Recife"}, step=0, seq=1)
    second = wizard(draft_settings, author)
    second.queue_save({"razao_social": "Do celular", "cidade": "Recife"}, step=0, seq=1)
    first.queue_save({"razao_social": "Do computador", "cidade": "Olinda"}, step=0, seq=2)
    assert first.component.save_state == "conflict"
    names = {row["name"]: row for row in first.conflict["fields"]}
    assert (
        names["razao_social"]["mine"] == "Do computador" and names["razao_social"]["theirs"] == "Do celular"
    )
    assert stored(draft_settings, author).data["razao_social"] == "Do celular"  # not overwritten
    first.resolve_conflict({"razao_social": "theirs", "cidade": "mine"})
    state = stored(draft_settings, author)
    assert state.data == {"razao_social": "Do celular", "cidade": "Olinda"} and state.version == 3
    assert first.conflict is None and first.component.save_state == "saved"


def test_a_save_that_landed_without_an_answer_is_not_taken_for_another_tab(
    draft_settings, users, store, monkeypatch
):
    # With the Redis store a save that writes a durable version (here a step change) is swapped in before its
    # audit row and version are committed: the database failing then leaves the save stored while the page saw
    # an error. The next save must go on top of it, not show a conflict against the page's own work.
    from engine import audit

    author = users["autor"]
    w = wizard(draft_settings, author)
    w.queue_save({"razao_social": "Primeira"}, step=0, seq=1)
    target = "insert_event" if store.in_session else "write_committed"
    real = getattr(audit, target)

    def database_down(*args, **kwargs):
        raise ConnectionError("banco fora do ar")

    monkeypatch.setattr(audit, target, database_down)
    w.queue_save({"razao_social": "Segunda"}, step=1, seq=2)
    assert w.component.save_state == "error" and w.component.version == 1
    monkeypatch.setattr(audit, target, real)
    landed = stored(draft_settings, author).version
    assert landed == (1 if store.in_session else 2)  # the database store rolled it back with the audit row
    w.queue_save({"razao_social": "Segunda", "cidade": "Recife"}, step=1, seq=3)
    assert w.conflict is None and w.component.save_state == "saved"
    state = stored(draft_settings, author)
    assert state.data == {"razao_social": "Segunda", "cidade": "Recife"} and state.version == landed + 1
    assert w.component.version == state.version


def test_local_copy_on_the_same_base_is_applied_else_conflict(draft_settings, users, store):
    author = users["autor"]
    w = wizard(draft_settings, author)
    w.queue_save({"razao_social": "Online"}, step=0, seq=1)
    w.offer_local_copy({"nome_fantasia": "Offline"}, step=0, seq=2, base_version=1)
    assert stored(draft_settings, author).data == {"razao_social": "Online", "nome_fantasia": "Offline"}
    w.offer_local_copy({"nome_fantasia": "Velha"}, step=0, seq=3, base_version=1)
    assert w.conflict is not None and w.component.save_state == "conflict"


def test_a_local_copy_the_draft_already_holds_is_dropped_not_a_conflict(draft_settings, users, store):
    # The copy a page keeps until its save is acknowledged, offered after that save landed (version 1 now,
    # the copy's base 0): nothing in it is new, so there is nothing to choose.
    author = users["autor"]
    w = wizard(draft_settings, author)
    w.queue_save({"razao_social": "Salva", "cidade": "Recife"}, step=1, seq=2)
    forgotten: list[bool] = []
    w.component.forget_local_copy = lambda: forgotten.append(True)  # the message to the page
    w.offer_local_copy({"razao_social": "Salva", "cidade": "Recife"}, step=1, seq=2, base_version=0)
    assert w.conflict is None and w.component.save_state == "saved" and forgotten == [True]
    assert stored(draft_settings, author).version == 1


def test_submit_creates_the_record_and_locks_the_form(draft_settings, users, store):
    author = users["autor"]
    w = wizard(draft_settings, author)
    w.queue_save({"razao_social": "Incompleto"}, step=2, seq=1, then_submit=True)
    assert w.notice_kind == "error" and not w.submitted and w.component.focus_field
    w.queue_save(clientes_data(), step=2, seq=2, then_submit=True)
    assert w.submitted and w.notice_kind == "success" and "Cliente cadastrado" in w.notice
    assert w.component.read_only and stored(draft_settings, author) is None


def test_my_drafts_lists_without_content_and_wizard_view_picks_a_form(draft_settings, users, store):
    author = users["autor"]
    wizard(draft_settings, author, "novo-lista").queue_save({"razao_social": "Segredo"}, step=1, seq=1)
    page = MyDraftsPage(settings=draft_settings, user=author)
    rows = page.rows()
    assert [(r.form_slug, r.object_id, r.step) for r in rows] == [("clientes", "novo-lista", 1)]
    html = page.__panel__().objects[1].objects[1].object
    assert "novo-lista" in html and "Segredo" not in html and "Continuar" in html
    chooser = wizard_view(draft_settings, author, form_slug="pesquisa", object_id=None)
    assert "Formulários" in str(chooser.objects[0].objects[0].object)


def test_survey_session_resumes_by_email(draft_settings, store):
    s1 = SurveySession(settings=draft_settings)
    s1.start("Ana@Empresa.com.br")
    assert s1.started and s1.component.values == {"email": "ana@empresa.com.br"}
    s1.handle_message(
        {"type": "save", "values": {"email": "ana@empresa.com.br", "satisfacao": "5"}, "step": 1, "seq": 1}
    )
    assert s1.component.save_state == "saved"
    s2 = SurveySession(settings=draft_settings)
    s2.start("ana@empresa.com.br")
    assert s2.component.step == 1 and s2.component.values["satisfacao"] == "5" and "restauradas" in s2.banner
    s2.handle_message(
        {
            "type": "submit",
            "step": 1,
            "seq": 2,
            "values": {"email": "ana@empresa.com.br", "satisfacao": "5", "recomendaria": "8"},
        }
    )
    assert s2.done and "Obrigado" in s2.notice
    s3 = SurveySession(settings=draft_settings)
    s3.start("ana@empresa.com.br")
    assert s3.done and not s3.started and "já foi respondida" in s3.notice


@pytest.mark.parametrize("email", ["", "sem-arroba"])
def test_survey_session_refuses_a_bad_email(draft_settings, store, email):
    s = SurveySession(settings=draft_settings)
    s.start(email)
    assert not s.started and s.notice_kind == "error"


def test_a_resent_sequence_is_not_saved_twice(draft_settings, users, store):
    author = users["autor"]
    w = wizard(draft_settings, author)
    message = {"type": "save", "values": {"razao_social": "Uma vez"}, "step": 0, "seq": 4}
    w.handle_message(message)
    w.handle_message(dict(message))  # the browser resent it before the acknowledgement arrived
    assert stored(draft_settings, author).version == 1 and w.component.ack_seq == 4
    w.handle_message({**message, "values": {"razao_social": "Outra"}, "seq": 5})
    assert stored(draft_settings, author).version == 2
