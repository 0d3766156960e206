"""``pesquisa``: the public satisfaction survey, answered without an account (see ``engine.survey``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.forms.types import Field, Form, Step, get_path
from engine.models import Cliente
from engine.models.drafts import SurveyResponse

NOTAS = tuple((str(n), str(n)) for n in range(0, 11))
SATISFACAO = (
    ("1", "Muito insatisfeito"),
    ("2", "Insatisfeito"),
    ("3", "Neutro"),
    ("4", "Satisfeito"),
    ("5", "Muito satisfeito"),
)


def linked_cliente(session: Session, data: dict[str, Any]) -> Cliente | None:
    """The company whose guest code is ``data.guestCodeResponse.guestCode``, if any."""
    code = get_path(data, "guestCodeResponse.guestCode")
    if not isinstance(code, str) or not code.strip():
        return None
    return session.scalar(select(Cliente).where(Cliente.guest_code == code.strip()))


def _submit(
    session: Session,
    *,
    actor: Any,
    values: dict[str, Any],
    data: dict[str, Any],
    survey_id: str = "pesquisa",
    email: str = "",
) -> SurveyResponse:
    cliente = linked_cliente(session, data)
    response = SurveyResponse(
        survey_id=survey_id,
        email=email or values["email"],
        data=data,
        cliente_id=cliente.id if cliente else None,
    )
    session.add(response)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="survey.submit",
        entity_type="survey_response",
        entity_id=response.id,
        after={"survey_id": survey_id, "cliente_id": response.cliente_id},
        source="public",
    )
    return response


FORM = Form(
    slug="pesquisa",
    title="Pesquisa de satisfação",
    description="Conte como foi sua experiência. Seu progresso fica guardado por 30 dias.",
    public=True,
    permission="survey.answer",
    submit=_submit,
    steps=(
        Step(
            "identificacao",
            "Identificação",
            (
                Field("email", "Seu e-mail", "email", required=True),
                Field("nome", "Seu nome", "text", max_length=200),
                Field(
                    "guestCodeResponse.guestCode",
                    "Código de convidado",
                    "text",
                    max_length=64,
                    help="Se a sua empresa recebeu um código, informe-o aqui.",
                ),
            ),
        ),
        Step(
            "experiencia",
            "Experiência",
            (
                Field("satisfacao", "Satisfação geral", "choice", required=True, choices=SATISFACAO),
                Field(
                    "recomendaria", "De 0 a 10, quanto recomendaria?", "choice", required=True, choices=NOTAS
                ),
                Field("atendimento", "Como foi o atendimento?", "textarea", max_length=2000),
            ),
        ),
        Step(
            "comentarios",
            "Comentários",
            (
                Field("pontos_fortes", "O que fizemos bem?", "textarea", max_length=2000),
                Field("melhorias", "O que podemos melhorar?", "textarea", max_length=2000),
                Field("contato_autorizado", "Podemos entrar em contato?", "boolean"),
            ),
        ),
    ),
)
