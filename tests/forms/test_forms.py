"""The four declared forms: formats, bounds, required-on-submit, and the records their submission creates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from engine import drafts, forms
from engine.db import session_scope
from engine.errors import ValidationFailed
from engine.forms import flatten, unflatten
from engine.forms.financeiro import add_months, split_amount
from engine.models import Processo
from engine.models.drafts import Lancamento
from tests.forms.conftest import (
    CNPJ_OK,
    add_users,
    clientes_data,
    financeiro_data,
    pesquisa_data,
    processos_data,
)


def test_every_form_declares_steps_fields_and_a_submit():
    for form in forms.all_forms():
        assert form.steps and all(step.fields for step in form.steps), form.slug
        assert form.submit is not None and form.schema_version >= 1
        described = form.describe()
        assert [s["key"] for s in described["steps"]] == [s.key for s in form.steps]
    assert forms.get_form("pesquisa").public and not forms.get_form("clientes").public
    assert forms.get_form("clientes").sensitive_fields == {"contato_cpf"}
    assert forms.get_form("processos").sensitive_fields == {"autor_documento", "reu_documento"}


@pytest.mark.parametrize(
    ("slug", "field", "typed", "expected"),
    [
        ("clientes", "cnpj", "11.222.333/0001-81", "11222333000181"),
        ("clientes", "cep", "01310-100", "01310100"),
        ("clientes", "contato_cpf", "529.982.247-25", "52998224725"),
        ("clientes", "telefone", "(11) 91234-5678", "11912345678"),
        ("clientes", "email", "Contato@Empresa.COM.br", "contato@empresa.com.br"),
        ("processos", "numero", "0001234-55.2024.8.26.0100", None),
        ("financeiro", "valor", "1.234,56", Decimal("1234.56")),
        ("financeiro", "valor", "12,5", Decimal("12.50")),
        ("financeiro", "vencimento", "31/12/2025", date(2025, 12, 31)),
        ("financeiro", "parcelas", "12", 12),
    ],
)
def test_brazilian_formats_are_accepted(slug, field, typed, expected):
    f = forms.get_form(slug).field(field)
    if expected is None:
        from engine import brazil

        typed = brazil.format_cnj(brazil.make_cnj(1234, 2024, 8, 26, 100))
        expected = brazil.digits(typed)
    assert f.clean(typed) == expected


@pytest.mark.parametrize(
    ("slug", "field", "typed", "reason"),
    [
        ("clientes", "cnpj", "11.222.333/0001-82", "verificadores"),
        ("clientes", "cnpj", "11.111.111/1111-11", "inválido"),
        ("clientes", "cep", "0131-100", "CEP"),
        ("clientes", "contato_cpf", "529.982.247-26", "verificadores"),
        ("clientes", "uf", "XX", "opções"),
        ("processos", "numero", "0001234-00.2024.8.26.0100", "verificadores"),
        ("financeiro", "valor", "1,234.56", "1.234,56"),
        ("financeiro", "valor", "0,00", "mínimo"),
        ("financeiro", "valor", "1.000.000.000,00", "máximo"),
        ("financeiro", "valor", "10,123", "2 casas"),
        ("financeiro", "vencimento", "31/02/2025", "inexistente"),
        ("financeiro", "vencimento", "2025-12-31", "dd/mm/aaaa"),
        ("financeiro", "vencimento", "01/01/1999", "mínimo"),
        ("financeiro", "parcelas", "0", "mínimo"),
        ("financeiro", "parcelas", "121", "máximo"),
        ("financeiro", "parcelas", "dois", "inteiro"),
        ("financeiro", "valor", 1e300, "fora do alcance"),
        ("financeiro", "valor", 10**40, "fora do alcance"),
        ("financeiro", "valor", "9" * 20, "máximo"),
        ("financeiro", "valor", float("nan"), "finito"),
        ("financeiro", "valor", 10.125, "2 casas"),  # a JSON number is not rounded either
    ],
)
def test_bad_formats_and_bounds_say_what_is_wrong(slug, field, typed, reason):
    with pytest.raises(ValueError) as info:
        forms.get_form(slug).field(field).clean(typed)
    assert reason in str(info.value)


def test_submit_requires_every_required_field_with_one_error_each():
    with pytest.raises(ValidationFailed) as info:
        forms.get_form("clientes").clean({"cnpj": "123"})
    fields = [e["field"] for e in info.value.errors]
    assert fields[0] == "cnpj" and {
        "razao_social",
        "cep",
        "logradouro",
        "numero",
        "cidade",
        "uf",
        "contato_nome",
        "contato_email",
    } <= set(fields)
    assert "nome_fantasia" not in fields


def test_cross_field_checks_run_on_submit():
    with pytest.raises(ValidationFailed) as info:
        forms.get_form("clientes").clean(clientes_data(contato2_email="b@empresa.com.br"))
    assert info.value.errors == [{"field": "contato2_nome", "message": "Informe o nome do segundo contato."}]
    with pytest.raises(ValidationFailed) as info:
        forms.get_form("financeiro").clean(financeiro_data(valor="0,02", parcelas="3"))
    assert info.value.errors[0]["field"] == "parcelas"


def test_dotted_fields_live_in_nested_objects():
    data = pesquisa_data()
    assert flatten(data)["guestCodeResponse.guestCode"] == "CONVITE-1"
    assert unflatten({"a.b": 1, "c": 2}) == {"a": {"b": 1}, "c": 2}
    status, _ = forms.get_form("pesquisa").check_partial(data)
    assert status["guestCodeResponse.guestCode"] == "filled"


def test_installments_split_exactly_and_fall_on_month_ends():
    assert split_amount(Decimal("1000.00"), 3) == [Decimal("333.34"), Decimal("333.33"), Decimal("333.33")]
    assert sum(split_amount(Decimal("0.05"), 4)) == Decimal("0.05")
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert add_months(date(2024, 12, 15), 14) == date(2026, 2, 15)


def test_processos_and_financeiro_create_linked_records(settings):
    users = add_users(settings)
    author = users["autor"]
    with session_scope(settings) as s:
        drafts.submit_draft(
            s, actor=author, form_slug="clientes", object_id="c", data=clientes_data(), settings=settings
        )
    with session_scope(settings) as s:
        processo = drafts.submit_draft(
            s, actor=author, form_slug="processos", object_id="p", data=processos_data(), settings=settings
        )
        rows = drafts.submit_draft(
            s, actor=author, form_slug="financeiro", object_id="f", data=financeiro_data(), settings=settings
        )
        assert len(rows) == 3
    with session_scope(settings) as s:
        p = s.scalars(select(Processo)).one()
        assert p.tribunal == "TJSP" and p.cliente_id is not None and p.id == processo.id
        assert [pt["polo"] for pt in p.partes] == ["ativo", "passivo", "advogado"]
        lancs = s.scalars(select(Lancamento).order_by(Lancamento.parcela)).all()
        assert [lc.valor for lc in lancs] == [Decimal("333.34"), Decimal("333.33"), Decimal("333.33")]
        assert [lc.vencimento for lc in lancs] == [date(2025, 1, 31), date(2025, 2, 28), date(2025, 3, 31)]
        assert {lc.cliente_id for lc in lancs} == {p.cliente_id} and lancs[0].parcelas == 3
    with session_scope(settings) as s, pytest.raises(ValidationFailed) as info:
        drafts.submit_draft(
            s,
            actor=author,
            form_slug="financeiro",
            object_id="g",
            data=financeiro_data(cliente="45.723.174/0001-10"),
            settings=settings,
        )
    assert info.value.errors == [{"field": "cliente", "message": "cliente não encontrado"}]
    assert CNPJ_OK
