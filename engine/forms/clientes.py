"""``clientes``: a client company (CNPJ with check digits, address with CEP, contacts)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.errors import Conflict
from engine.forms.types import UFS, Field, Form, Step
from engine.models import Cliente


def _submit(session: Session, *, actor: Any, values: dict[str, Any], data: dict[str, Any]) -> Cliente:
    cnpj = values["cnpj"]
    existing = session.scalar(select(Cliente).where(Cliente.cnpj == cnpj))
    if existing is not None:
        raise Conflict(
            f"Já existe um cliente com o CNPJ {cnpj} ({existing.razao_social}).",
            entity="cliente",
            key=cnpj,
            errors=[{"field": "cnpj", "message": "CNPJ já cadastrado"}],
        )
    guest_code = values["guest_code"]
    if guest_code and session.scalar(select(Cliente.id).where(Cliente.guest_code == guest_code)):
        raise Conflict(
            f"O código de convidado {guest_code} já pertence a outro cliente.",
            entity="cliente",
            key=guest_code,
            errors=[{"field": "guest_code", "message": "código já usado"}],
        )
    contatos = [
        {
            "nome": values["contato_nome"],
            "email": values["contato_email"],
            "telefone": values["contato_telefone"] or "",
            "cpf": values["contato_cpf"] or "",
        }
    ]
    if values["contato2_nome"]:
        contatos.append(
            {
                "nome": values["contato2_nome"],
                "email": values["contato2_email"] or "",
                "telefone": "",
                "cpf": "",
            }
        )
    cliente = Cliente(
        cnpj=cnpj,
        razao_social=values["razao_social"],
        nome_fantasia=values["nome_fantasia"] or "",
        email=values["email"] or "",
        telefone=values["telefone"] or "",
        guest_code=guest_code or None,
        endereco={
            k: values[k] or ""
            for k in ("cep", "logradouro", "numero", "complemento", "bairro", "cidade", "uf")
        },
        contatos=contatos,
        created_by_id=getattr(actor, "id", None),
    )
    session.add(cliente)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="cliente.create",
        entity_type="cliente",
        entity_id=cliente.id,
        after={"cnpj": cnpj, "razao_social": cliente.razao_social},
    )
    return cliente


def _contact_email_needs_name(values: dict[str, Any]) -> list[dict[str, str]]:
    if values["contato2_email"] and not values["contato2_nome"]:
        return [{"field": "contato2_nome", "message": "Informe o nome do segundo contato."}]
    return []


FORM = Form(
    slug="clientes",
    title="Cliente",
    description="Cadastro de empresa cliente.",
    schema_version=2,
    permission="clientes.create",
    submit=_submit,
    checks=(_contact_email_needs_name,),
    steps=(
        Step(
            "empresa",
            "Empresa",
            (
                Field("cnpj", "CNPJ", "cnpj", required=True, placeholder="00.000.000/0000-00"),
                Field("razao_social", "Razão social", "text", required=True, min_length=2, max_length=300),
                Field("nome_fantasia", "Nome fantasia", "text", max_length=300),
                Field("email", "E-mail da empresa", "email"),
                Field("telefone", "Telefone", "phone", placeholder="(11) 91234-5678"),
                Field(
                    "guest_code",
                    "Código de convidado (pesquisas)",
                    "text",
                    max_length=64,
                    help="Código que a empresa informa ao responder a pesquisa.",
                ),
            ),
        ),
        Step(
            "endereco",
            "Endereço",
            (
                Field("cep", "CEP", "cep", required=True, placeholder="00000-000"),
                Field("logradouro", "Logradouro", "text", required=True, min_length=3, max_length=200),
                Field("numero", "Número", "text", required=True, max_length=10),
                Field("complemento", "Complemento", "text", max_length=100),
                Field("bairro", "Bairro", "text", max_length=100),
                Field("cidade", "Cidade", "text", required=True, min_length=2, max_length=100),
                Field("uf", "UF", "choice", required=True, choices=tuple((uf, uf) for uf in UFS)),
            ),
        ),
        Step(
            "contatos",
            "Contatos",
            (
                Field(
                    "contato_nome",
                    "Nome do contato principal",
                    "text",
                    required=True,
                    min_length=2,
                    max_length=200,
                ),
                Field("contato_email", "E-mail do contato", "email", required=True),
                Field("contato_telefone", "Telefone do contato", "phone"),
                Field("contato_cpf", "CPF do contato", "cpf", sensitive=True, placeholder="000.000.000-00"),
                Field("contato2_nome", "Segundo contato (opcional)", "text", max_length=200),
                Field("contato2_email", "E-mail do segundo contato", "email"),
            ),
        ),
    ),
)


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had one free-text ``endereco`` and the contact's phone as ``telefone_contato``."""
    migrated = dict(data)
    if "telefone_contato" in migrated:
        migrated["contato_telefone"] = migrated.pop("telefone_contato")
    endereco = migrated.pop("endereco", None)
    if isinstance(endereco, str) and endereco.strip() and not migrated.get("logradouro"):
        migrated["logradouro"] = endereco.strip()[:200]
    return migrated


FORM.migrations[1] = _v1_to_v2
