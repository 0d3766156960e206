"""The public survey: answered without an account, identified by e-mail + survey.

Progress (current screen + data) is kept 30 days from the last save, signed like drafts, and swept when
expired. Once a survey is submitted, saving again answers ``ALREADY_SUBMITTED``. The respondent's company is
linked from ``data.guestCodeResponse.guestCode`` when it matches a cliente's guest code. Every call is
rate-limited by e-mail and by client address (shared through Redis when drafts use Redis).

A survey id is the slug of a public form (``pesquisa``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError as DatabaseIntegrityError
from sqlalchemy.orm import Session

from engine import audit, forms
from engine.draft_stores import get_store
from engine.errors import (
    BadRequest,
    IntegrityError,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from engine.forms import Form
from engine.forms.types import EMAIL_RE
from engine.models.drafts import QuarantinedDraft, SurveyProgress, SurveyResponse
from engine.security import sign, verify_signature
from engine.settings import Settings, get_settings

PURPOSE = "survey"
PROGRESS_DAYS = 30
EMAIL_LIMIT_PER_MINUTE = 30
CLIENT_LIMIT_PER_MINUTE = 120


class AlreadySubmitted(BadRequest):
    code = "ALREADY_SUBMITTED"


@dataclass
class SurveyState:
    survey_id: str
    email: str
    step: int
    data: dict[str, Any]
    version: int
    updated_at: datetime
    expires_at: datetime
    fields_status: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    next_field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "survey_id": self.survey_id,
            "email": self.email,
            "step": self.step,
            "data": self.data,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "fields_status": self.fields_status,
            "errors": self.errors,
            "next_field": self.next_field,
        }


def survey_form(survey_id: Any) -> Form:
    form = forms.get_form(survey_id) if isinstance(survey_id, str) else None
    if form is None or not form.public:
        raise NotFound(f"Pesquisa {survey_id!r} não encontrada.", entity="survey", key=str(survey_id)[:60])
    return form


def normalize_email(email: Any) -> str:
    text = email.strip().lower() if isinstance(email, str) else ""
    if len(text) > 254 or not EMAIL_RE.match(text):
        raise BadRequest(
            "Informe um e-mail válido (nome@dominio.com.br).",
            errors=[{"field": "email", "message": "e-mail inválido"}],
        )
    return text


def _email_hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:32]


def _limit(settings: Settings, email: str, client: str) -> None:
    store = get_store(settings)
    buckets = [(f"survey-email:{_email_hash(email)}", EMAIL_LIMIT_PER_MINUTE)]
    if client:  # an unknown address must not become one bucket shared by every respondent
        buckets.append((f"survey-client:{client}", CLIENT_LIMIT_PER_MINUTE))
    for bucket, limit in buckets:
        wait = store.hit(bucket, limit=limit, window=60)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise LimitExceeded(
                f"Muitas tentativas em pouco tempo; tente de novo em {seconds} s.", retry_after=seconds
            )


def _body(survey_id: str, email: str, step: int, data: dict[str, Any], version: int) -> str:
    return json.dumps(
        {"survey_id": survey_id, "email": email, "step": step, "data": data, "version": version},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _signature(settings: Settings, body: str) -> str:
    return sign(settings.secret_key, body.encode(), purpose=PURPOSE)


def _submitted(session: Session, survey_id: str, email: str) -> bool:
    return (
        session.scalar(
            select(SurveyResponse.id).where(
                SurveyResponse.survey_id == survey_id, SurveyResponse.email == email
            )
        )
        is not None
    )


def _refuse_if_submitted(session: Session, form: Form, email: str) -> None:
    if _submitted(session, form.slug, email):
        raise AlreadySubmitted(
            f"A pesquisa {form.title} já foi respondida com o e-mail {email}. Obrigado!", survey_id=form.slug
        )


def _row(session: Session, survey_id: str, email: str) -> SurveyProgress | None:
    return session.scalar(
        select(SurveyProgress).where(SurveyProgress.survey_id == survey_id, SurveyProgress.email == email)
    )


def _state(form: Form, row: SurveyProgress, payload: dict[str, Any]) -> SurveyState:
    status, errors = form.fields_status(payload["data"])
    return SurveyState(
        survey_id=row.survey_id,
        email=row.email,
        step=payload["step"],
        data=payload["data"],
        version=row.version,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        fields_status=status,
        errors=errors,
        next_field=form.next_field(payload["data"], from_step=payload["step"]),
    )


def _verified(session: Session, settings: Settings, row: SurveyProgress) -> dict[str, Any]:
    ok = verify_signature(settings.secret_key, row.body.encode(), row.signature, purpose=PURPOSE)
    payload: dict[str, Any] = {}
    if ok:
        try:
            payload = json.loads(row.body)
            ok = (payload.get("survey_id"), payload.get("email"), payload.get("version")) == (
                row.survey_id,
                row.email,
                row.version,
            ) and isinstance(payload.get("data"), dict)
        except ValueError:
            ok = False
    if ok:
        return payload
    quarantine = QuarantinedDraft(
        user_id=None,
        form_slug=row.survey_id,
        object_id=_email_hash(row.email),
        store="survey",
        raw=row.body[:1_000_000],
        signature=row.signature,
        reason="assinatura HMAC não confere",
    )
    session.add(quarantine)
    session.flush()
    audit.record(
        session,
        actor=None,
        action="survey.tampered",
        entity_type="survey_progress",
        entity_id=row.id,
        after={"quarantine_id": quarantine.id},
        source="public",
    )
    session.delete(row)
    session.commit()  # the quarantine copy and its audit row must outlive the error below
    raise IntegrityError(
        "O progresso salvo desta pesquisa não passou na verificação de integridade e não foi "
        "aplicado; recomece a pesquisa.",
        quarantine_id=quarantine.id,
    )


def load_progress(
    session: Session,
    *,
    email: Any,
    survey_id: Any,
    client: str = "",
    settings: Settings | None = None,
    now: datetime | None = None,
) -> SurveyState | None:
    """The respondent's saved progress, or None. ``ALREADY_SUBMITTED`` once the survey was sent."""
    settings = settings or get_settings()
    form = survey_form(survey_id)
    email = normalize_email(email)
    _limit(settings, email, client)
    _refuse_if_submitted(session, form, email)
    row = _row(session, form.slug, email)
    if row is None or row.expires_at <= (now or datetime.now(UTC)):
        return None
    return _state(form, row, _verified(session, settings, row))


def save_progress(
    session: Session,
    *,
    email: Any,
    survey_id: Any,
    data: Any,
    step: Any = 0,
    version: Any = None,
    client: str = "",
    settings: Settings | None = None,
    now: datetime | None = None,
) -> SurveyState:
    """Save the current screen and answers (kept 30 days). With ``version``, refuses a stale save."""
    settings = settings or get_settings()
    form = survey_form(survey_id)
    email = normalize_email(email)
    _limit(settings, email, client)
    _refuse_if_submitted(session, form, email)
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < len(form.steps):
        raise ValidationFailed(
            f"Tela inválida: {step!r}.", errors=[{"field": "step", "message": "fora do intervalo"}]
        )
    if isinstance(data, dict):
        data = {**data, "email": email}
    form.check_partial(data)
    now = now or datetime.now(UTC)
    row = _row(session, form.slug, email)
    current = row.version if row is not None and row.expires_at > now else 0
    if version is not None and version != current:
        from engine.errors import Conflict

        raise Conflict(
            f"Esta pesquisa foi salva em outra janela (versão {current}); recarregue.",
            current=current,
            attempted=version,
        )
    new_version = current + 1
    body = _body(form.slug, email, step, data, new_version)
    limit = settings.checkpoint_max_payload_kb * 1024
    if len(body.encode()) > limit:
        raise PayloadTooLarge(
            f"As respostas passam do limite de {settings.checkpoint_max_payload_kb} KB.",
            size=len(body.encode()),
            limit=limit,
        )
    if row is None:
        row = SurveyProgress(survey_id=form.slug, email=email, created_at=now)
        session.add(row)
    row.step, row.body, row.signature, row.version = step, body, _signature(settings, body), new_version
    row.updated_at, row.expires_at = now, now + timedelta(days=PROGRESS_DAYS)
    session.flush()
    audit.record(
        session,
        actor=None,
        action="survey.save",
        entity_type="survey_progress",
        entity_id=row.id,
        after={"survey_id": form.slug, "step": step, "version": new_version},
        source="public",
    )
    return _state(form, row, json.loads(body))


def clear_progress(
    session: Session, *, email: Any, survey_id: Any, client: str = "", settings: Settings | None = None
) -> bool:
    settings = settings or get_settings()
    form = survey_form(survey_id)
    email = normalize_email(email)
    _limit(settings, email, client)
    row = _row(session, form.slug, email)
    if row is None:
        return False
    audit.record(
        session,
        actor=None,
        action="survey.clear",
        entity_type="survey_progress",
        entity_id=row.id,
        after={"survey_id": form.slug},
        source="public",
    )
    session.delete(row)
    session.flush()
    return True


def submit_survey(
    session: Session,
    *,
    email: Any,
    survey_id: Any,
    data: Any = None,
    client: str = "",
    settings: Settings | None = None,
) -> SurveyResponse:
    """Validate every answer, store the response (linked to the company of the guest code, if any) and
    delete the progress. ``data`` defaults to the saved progress."""
    settings = settings or get_settings()
    form = survey_form(survey_id)
    email = normalize_email(email)
    _limit(settings, email, client)
    _refuse_if_submitted(session, form, email)
    row = _row(session, form.slug, email)
    if data is None:
        if row is None:
            raise NotFound("Não há respostas salvas para enviar.", entity="survey_progress", key=form.slug)
        data = _verified(session, settings, row)["data"]
    if isinstance(data, dict):
        data = {**data, "email": email}
    values = form.clean(data)
    assert form.submit is not None
    try:
        response = form.submit(
            session, actor=None, values=values, data=data, survey_id=form.slug, email=email
        )
    except DatabaseIntegrityError as exc:  # a concurrent submission won the race (unique survey + e-mail)
        raise AlreadySubmitted(
            f"A pesquisa {form.title} já foi respondida com o e-mail {email}.", survey_id=form.slug
        ) from exc
    if row is not None:
        session.delete(row)
    session.flush()
    return response


def sweep_expired(session: Session, *, now: datetime | None = None) -> int:
    """Delete progress not saved for 30 days."""
    now = now or datetime.now(UTC)
    return session.execute(
        delete(SurveyProgress)
        .where(SurveyProgress.expires_at <= now)
        .execution_options(synchronize_session=False)
    ).rowcount


def clock() -> float:
    return time.time()
