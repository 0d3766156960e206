"""The public survey: progress by e-mail kept 30 days, ALREADY_SUBMITTED, guest-code link, rate limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from engine import survey
from engine.db import session_scope
from engine.errors import Conflict, IntegrityError, LimitExceeded, NotFound, ValidationFailed
from engine.models import Cliente
from engine.models.drafts import QuarantinedDraft, SurveyProgress, SurveyResponse
from tests.forms.conftest import pesquisa_data

EMAIL = "resp@empresa.com.br"


def save(settings, data, *, step=0, email=EMAIL, **kw):
    with session_scope(settings) as s:
        return survey.save_progress(
            s, email=email, survey_id="pesquisa", data=data, step=step, settings=settings, **kw
        )


def load(settings, *, email=EMAIL, **kw):
    with session_scope(settings) as s:
        return survey.load_progress(s, email=email, survey_id="pesquisa", settings=settings, **kw)


def test_progress_is_kept_by_email_and_resumes_at_the_screen(draft_settings, store):
    assert load(draft_settings) is None
    saved = save(draft_settings, {"satisfacao": "4", "nome": "Carla"}, step=1, email="  Resp@Empresa.COM.BR ")
    assert saved.email == EMAIL and saved.version == 1
    state = load(draft_settings)
    assert state.step == 1 and state.data == {"satisfacao": "4", "nome": "Carla", "email": EMAIL}
    assert state.next_field == "recomendaria"
    assert state.expires_at - state.updated_at == timedelta(days=30)
    assert save(draft_settings, {"satisfacao": "5"}, step=2, version=1).version == 2
    with pytest.raises(Conflict):
        save(draft_settings, {"satisfacao": "1"}, step=2, version=1)


def test_progress_expires_after_30_days_and_is_swept(draft_settings, store):
    save(draft_settings, {"satisfacao": "4"})
    later = datetime.now(UTC) + timedelta(days=30, seconds=1)
    assert load(draft_settings, now=later - timedelta(days=1)) is not None
    assert load(draft_settings, now=later) is None
    with session_scope(draft_settings) as s:
        assert survey.sweep_expired(s, now=later - timedelta(days=1)) == 0
        assert survey.sweep_expired(s, now=later) == 1
        assert s.scalars(select(SurveyProgress)).all() == []


def test_saving_after_submission_is_already_submitted(draft_settings, store):
    save(draft_settings, pesquisa_data(EMAIL), step=2)
    with session_scope(draft_settings) as s:
        response = survey.submit_survey(s, email=EMAIL, survey_id="pesquisa", settings=draft_settings)
        assert response.email == EMAIL
    with pytest.raises(survey.AlreadySubmitted) as info:
        save(draft_settings, {"satisfacao": "1"})
    assert info.value.code == "ALREADY_SUBMITTED" and info.value.status == 400
    assert info.value.to_dict()["error"] == "ALREADY_SUBMITTED"
    with session_scope(draft_settings) as s, pytest.raises(survey.AlreadySubmitted):
        survey.submit_survey(
            s, email=EMAIL, survey_id="pesquisa", data=pesquisa_data(EMAIL), settings=draft_settings
        )
    with session_scope(draft_settings) as s:
        assert s.scalars(select(SurveyProgress)).all() == []
        assert len(s.scalars(select(SurveyResponse)).all()) == 1


def test_company_is_linked_from_the_guest_code(draft_settings, store):
    with session_scope(draft_settings) as s:
        s.add(Cliente(cnpj="11222333000181", razao_social="Convidada", guest_code="CONVITE-1"))
    with session_scope(draft_settings) as s:
        linked = survey.submit_survey(
            s,
            email="a@empresa.com.br",
            survey_id="pesquisa",
            data=pesquisa_data("a@empresa.com.br"),
            settings=draft_settings,
        )
        unlinked = survey.submit_survey(
            s,
            email="b@empresa.com.br",
            survey_id="pesquisa",
            data=pesquisa_data("b@empresa.com.br", guestCodeResponse={"guestCode": "OUTRO"}),
            settings=draft_settings,
        )
        cliente_id = s.scalar(select(Cliente.id))
        assert linked.cliente_id == cliente_id and unlinked.cliente_id is None


def test_submission_checks_every_answer(draft_settings, store):
    with session_scope(draft_settings) as s, pytest.raises(ValidationFailed) as info:
        survey.submit_survey(
            s, email=EMAIL, survey_id="pesquisa", data={"nome": "X"}, settings=draft_settings
        )
    assert {e["field"] for e in info.value.errors} == {"satisfacao", "recomendaria"}
    with session_scope(draft_settings) as s, pytest.raises(NotFound):
        survey.submit_survey(s, email=EMAIL, survey_id="pesquisa", settings=draft_settings)
    with pytest.raises(NotFound):
        survey.survey_form("clientes")


def test_rate_limited_by_email_and_by_client_address(draft_settings, store, monkeypatch):
    monkeypatch.setattr(survey, "EMAIL_LIMIT_PER_MINUTE", 3)
    monkeypatch.setattr(survey, "CLIENT_LIMIT_PER_MINUTE", 5)
    for _ in range(3):
        load(draft_settings, client="198.51.100.7")
    with pytest.raises(LimitExceeded) as info:
        load(draft_settings, client="198.51.100.8")
    assert info.value.retry_after >= 1
    for n in range(2):
        load(draft_settings, email=f"outro{n}@empresa.com.br", client="198.51.100.7")
    with pytest.raises(LimitExceeded):
        load(draft_settings, email="terceiro@empresa.com.br", client="198.51.100.7")


def test_tampered_progress_is_refused_and_quarantined(draft_settings, store):
    save(draft_settings, {"satisfacao": "4"})
    with session_scope(draft_settings) as s:
        s.execute(update(SurveyProgress).values(body=SurveyProgress.body + " "))
    with pytest.raises(IntegrityError):
        load(draft_settings)
    with session_scope(draft_settings) as s:
        assert s.scalars(select(QuarantinedDraft.store)).all() == ["survey"]
    assert load(draft_settings) is None


def test_hostile_input_is_refused(draft_settings, store):
    for data in ({"satisfacao": 5}, {"desconhecido": "x"}, {"melhorias": "x" * 2001}, ["lista"]):
        with pytest.raises(ValidationFailed):
            save(draft_settings, data)
    with pytest.raises(ValidationFailed):
        save(draft_settings, {}, step=99)
    for email in ("", "sem-arroba", "a" * 250 + "@x.com", None):
        with pytest.raises(ValidationFailed):
            save(draft_settings, {}, email=email)
