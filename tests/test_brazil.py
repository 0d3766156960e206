from __future__ import annotations

from datetime import date
from decimal import Decimal, localcontext

import pytest

from engine import brazil


@pytest.mark.parametrize("value", ["11.222.333/0001-81", "11222333000181", " 11.222.333/0001-81 "])
def test_valid_cnpj_in_any_mask(value: str) -> None:
    assert brazil.parse_cnpj(value) == "11222333000181"


@pytest.mark.parametrize("value", ["11.222.333/0001-82", "11111111111111", "1122233300018", ""])
def test_invalid_cnpj_refused(value: str) -> None:
    with pytest.raises(ValueError, match="CNPJ"):
        brazil.parse_cnpj(value)


def test_cnpj_check_digits_and_format() -> None:
    assert brazil.cnpj_check_digits("112223330001") == "81"
    assert brazil.format_cnpj("11222333000181") == "11.222.333/0001-81"


def test_cpf() -> None:
    assert brazil.parse_cpf("529.982.247-25") == "52998224725"
    with pytest.raises(ValueError):
        brazil.parse_cpf("529.982.247-24")
    with pytest.raises(ValueError):
        brazil.parse_cpf("111.111.111-11")
    assert brazil.format_cpf("52998224725") == "529.982.247-25"


def test_cep() -> None:
    assert brazil.parse_cep("01310-100") == "01310100"
    assert brazil.format_cep("01310100") == "01310-100"
    with pytest.raises(ValueError):
        brazil.parse_cep("0131-0100")


def test_cnj_known_number() -> None:
    # A published example: 0000001-45.2020.8.26.0001 is not valid; build one and check the round trip.
    numero = brazil.make_cnj(1234567, 2023, 8, 26, 100)
    assert len(numero) == 20
    assert brazil.parse_cnj(brazil.format_cnj(numero)) == numero
    # mod 97 of the reordered digits is 1 for every valid number
    d = numero
    assert int(d[:7] + d[9:] + d[7:9]) % 97 == 1


def test_cnj_every_generated_number_passes_the_iso7064_check() -> None:
    for seq in (0, 1, 999_999, 5_555_555, 9_999_999):
        numero = brazil.make_cnj(seq, 2019, 5, 2, 461)
        assert int(numero[:7] + numero[9:] + numero[7:9]) % 97 == 1
        assert brazil.parse_cnj(numero) == numero


@pytest.mark.parametrize("value", ["1234567-00.2023.8.26.0100", "123", "1234567-89.2023.0.26.0100"])
def test_cnj_invalid(value: str) -> None:
    with pytest.raises(ValueError):
        brazil.parse_cnj(value)


@pytest.mark.parametrize(("text", "expected"), [
    ("1.234,56", Decimal("1234.56")), ("-0,5", Decimal("-0.5")), ("12", Decimal("12")),
    ("R$ 1.000.000,00", Decimal("1000000.00")), ("12.5", Decimal("12.5")), ("1.234", Decimal("1234")),
])
def test_parse_decimal_brazilian(text: str, expected: Decimal) -> None:
    assert brazil.parse_decimal(text) == expected


@pytest.mark.parametrize("text", ["1.2.3", "1,2,3", "abc", "", "1.23.4", "12,"])
def test_parse_decimal_refuses_ambiguous(text: str) -> None:
    with pytest.raises(ValueError):
        brazil.parse_decimal(text)


def test_money() -> None:
    assert brazil.parse_money("1.234,5") == Decimal("1234.50")
    assert brazil.format_money(Decimal("1234.5")) == "R$ 1.234,50"
    assert brazil.format_money(-3) == "-R$ 3,00"
    with pytest.raises(ValueError):
        brazil.parse_money("1,234")
    assert brazil.money_of(12.5) == Decimal("12.50") and brazil.money_of(3) == Decimal("3.00")
    assert brazil.money_of(12.34) == Decimal("12.34") and brazil.money_of(1e20) == Decimal("100000000000000000000.00")
    for beyond, said in (("9" * 27, "fora do alcance"), (1e300, "fora do alcance"), (10**40, "fora do alcance"),
                         (10**5000, "5001 dígitos"), (float("inf"), "finito"), (float("nan"), "finito"),
                         (True, "número"), (10.125, "2 casas"), (0.1 + 0.2, "2 casas")):  # never rounded away
        with pytest.raises(ValueError, match=said):
            brazil.parse_money(beyond) if isinstance(beyond, str) else brazil.money_of(beyond)
    with localcontext(prec=6):  # the caller's decimal context does not matter
        assert brazil.money_of(12345678.91) == Decimal("12345678.91")


def test_dates() -> None:
    assert brazil.parse_date("05/03/2024") == date(2024, 3, 5)
    assert brazil.parse_date("2024-03-05") == date(2024, 3, 5)
    with pytest.raises(ValueError, match="inexistente"):
        brazil.parse_date("31/02/2024")
    with pytest.raises(ValueError):
        brazil.parse_date("2024/03/05")
    assert brazil.format_date(date(2024, 3, 5)) == "05/03/2024"
