"""``processos``: a legal process (CNJ number with mod-97 check digits, court, parties, linked cliente)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, brazil
from engine.errors import Conflict, ValidationFailed
from engine.forms.types import Field, Form, Step
from engine.models import Cliente, Processo

# Courts by the J.TR segment of the CNJ number (a few common ones; others are typed freely).
TRIBUNAIS = (
    ("TJSP", "TJSP"),
    ("TJRJ", "TJRJ"),
    ("TJMG", "TJMG"),
    ("TJRS", "TJRS"),
    ("TJPR", "TJPR"),
    ("TRF1", "TRF1"),
    ("TRF2", "TRF2"),
    ("TRF3", "TRF3"),
    ("TRF4", "TRF4"),
    ("TRT2", "TRT2"),
    ("TRT15", "TRT15"),
    ("STJ", "STJ"),
    ("STF", "STF"),
)


def find_cliente(session: Session, cnpj: str) -> Cliente | None:
    return session.scalar(select(Cliente).where(Cliente.cnpj == cnpj))


def require_cliente(session: Session, cnpj: str, field: str = "cliente") -> Cliente:
    cliente = find_cliente(session, cnpj)
    if cliente is None:
        raise ValidationFailed(
            f"Nenhum cliente cadastrado com o CNPJ {brazil.format_cnpj(cnpj)}; cadastre-o antes.",
            errors=[{"field": field, "message": "cliente não encontrado"}],
        )
    return cliente


def _submit(session: Session, *, actor: Any, values: dict[str, Any], data: dict[str, Any]) -> Processo:
    numero = values["numero"]
    if session.scalar(select(Processo.id).where(Processo.numero == numero)) is not None:
        raise Conflict(
            f"O processo {brazil.format_cnj(numero)} já está cadastrado.",
            entity="processo",
            key=numero,
            errors=[{"field": "numero", "message": "processo já cadastrado"}],
        )
    cliente = require_cliente(session, values["cliente"])
    partes = [
        {"polo": "ativo", "nome": values["autor_nome"], "documento": values["autor_documento"] or ""},
        {"polo": "passivo", "nome": values["reu_nome"], "documento": values["reu_documento"] or ""},
    ]
    if values["advogado"]:
        partes.append({"polo": "advogado", "nome": values["advogado"], "documento": ""})
    processo = Processo(
        numero=numero,
        tribunal=values["tribunal"],
        classe=values["classe"] or "",
        assunto=values["assunto"] or "",
        partes=partes,
        cliente_id=cliente.id,
    )
    session.add(processo)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="processo.create",
        entity_type="processo",
        entity_id=processo.id,
        after={"numero": numero, "cliente_id": cliente.id},
    )
    return processo


FORM = Form(
    slug="processos",
    title="Processo",
    description="Cadastro de processo judicial vinculado a um cliente.",
    permission="processos.create",
    submit=_submit,
    steps=(
        Step(
            "identificacao",
            "Identificação",
            (
                Field("numero", "Número CNJ", "cnj", required=True, placeholder="0000000-00.0000.0.00.0000"),
                Field("tribunal", "Tribunal", "choice", required=True, choices=TRIBUNAIS),
                Field("classe", "Classe", "text", max_length=200),
                Field("assunto", "Assunto", "text", max_length=300),
            ),
        ),
        Step(
            "partes",
            "Partes",
            (
                Field(
                    "autor_nome", "Autor (polo ativo)", "text", required=True, min_length=2, max_length=200
                ),
                Field("autor_documento", "CPF/CNPJ do autor", "cpf_cnpj", sensitive=True),
                Field("reu_nome", "Réu (polo passivo)", "text", required=True, min_length=2, max_length=200),
                Field("reu_documento", "CPF/CNPJ do réu", "cpf_cnpj", sensitive=True),
                Field("advogado", "Advogado responsável", "text", max_length=200),
            ),
        ),
        Step(
            "vinculo",
            "Cliente",
            (
                Field(
                    "cliente",
                    "CNPJ do cliente",
                    "cnpj",
                    required=True,
                    help="O cliente precisa estar cadastrado.",
                ),
            ),
        ),
    ),
)
