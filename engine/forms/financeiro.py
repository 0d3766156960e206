"""``financeiro``: a billing entry (type, BRL amount with decimal comma, due date, installments, cliente).

Submitting creates one ``Lancamento`` per installment, due a month apart; the amount is split in cents so
that the installments add up exactly to the total."""

from __future__ import annotations

import calendar
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from engine import audit
from engine.forms.processos import require_cliente
from engine.forms.types import Field, Form, Step
from engine.models.drafts import Lancamento

CATEGORIAS = (
    ("honorarios", "Honorários"),
    ("custas", "Custas processuais"),
    ("consultoria", "Consultoria"),
    ("equipamentos", "Equipamentos"),
    ("outros", "Outros"),
)


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def split_amount(total: Decimal, parts: int) -> list[Decimal]:
    cents = int(total * 100)
    base, extra = divmod(cents, parts)
    return [Decimal(base + (1 if i < extra else 0)) / 100 for i in range(parts)]


def _submit(
    session: Session, *, actor: Any, values: dict[str, Any], data: dict[str, Any]
) -> list[Lancamento]:
    cliente = require_cliente(session, values["cliente"])
    grupo = uuid.uuid4().hex
    parcelas = values["parcelas"]
    rows = [
        Lancamento(
            grupo=grupo,
            tipo=values["tipo"],
            descricao=values["descricao"],
            categoria=values["categoria"] or "",
            valor=amount,
            vencimento=add_months(values["vencimento"], i),
            parcela=i + 1,
            parcelas=parcelas,
            observacoes=values["observacoes"] or "",
            cliente_id=cliente.id,
            created_by_id=getattr(actor, "id", None),
        )
        for i, amount in enumerate(split_amount(values["valor"], parcelas))
    ]
    session.add_all(rows)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="lancamento.create",
        entity_type="lancamento",
        entity_id=grupo,
        after={
            "tipo": values["tipo"],
            "valor": str(values["valor"]),
            "parcelas": parcelas,
            "cliente_id": cliente.id,
        },
    )
    return rows


def _installment_not_below_a_cent(values: dict[str, Any]) -> list[dict[str, str]]:
    valor, parcelas = values["valor"], values["parcelas"]
    if valor is not None and parcelas and valor < Decimal("0.01") * parcelas:
        return [{"field": "parcelas", "message": "Cada parcela precisa de ao menos R$ 0,01."}]
    return []


FORM = Form(
    slug="financeiro",
    title="Lançamento financeiro",
    description="Receita ou despesa, à vista ou parcelada, vinculada a um cliente.",
    permission="financeiro.create",
    submit=_submit,
    checks=(_installment_not_below_a_cent,),
    steps=(
        Step(
            "lancamento",
            "Lançamento",
            (
                Field(
                    "tipo",
                    "Tipo",
                    "choice",
                    required=True,
                    choices=(("receita", "Receita"), ("despesa", "Despesa")),
                ),
                Field("descricao", "Descrição", "text", required=True, min_length=3, max_length=300),
                Field("categoria", "Categoria", "choice", choices=CATEGORIAS),
            ),
        ),
        Step(
            "valores",
            "Valores",
            (
                Field(
                    "valor",
                    "Valor (R$)",
                    "money",
                    required=True,
                    min_value=Decimal("0.01"),
                    max_value=Decimal("999999999.99"),
                    placeholder="1.234,56",
                ),
                Field(
                    "vencimento",
                    "Vencimento",
                    "date",
                    required=True,
                    min_value=date(2000, 1, 1),
                    max_value=date(2100, 12, 31),
                    placeholder="dd/mm/aaaa",
                ),
                Field("parcelas", "Parcelas", "integer", required=True, min_value=1, max_value=120),
            ),
        ),
        Step(
            "vinculo",
            "Cliente e pagamento",
            (
                Field("cliente", "CNPJ do cliente", "cnpj", required=True),
                Field("chave_pix", "Chave PIX para pagamento", "text", sensitive=True, max_length=140),
                Field("observacoes", "Observações", "textarea", max_length=2000),
            ),
        ),
    ),
)
