"""The vectorised parsers read cells exactly as the row-at-a-time references do (engine.brazil and
values.parse_timestamp_value): same values accepted, same messages for refusals."""

from __future__ import annotations

import polars as pl
import pytest

from engine import brazil
from engine.imports import values

NUMBERS = [
    "1.234,56",
    "-0,5",
    "12",
    "12.5",
    "1.234",
    "1.2.3",
    "1,2,3",
    "R$ 1.234,56",
    " 7 ",
    "abc",
    "+3,0",
    "1e5",
    "1.23",
    "0,001",
    "12.3456",
    "1234,5",
    "1 234,5",
    "\u00a012,5",
    "1.234.567,891",
    "-1.000",
    "1,234.5",
    "1,234",
    ".5",
    "5.",
    "--1",
    "nan",
    "inf",
    "12,",
    "١٢",
]


@pytest.mark.parametrize("decimal_comma", [True, False])
def test_decimal_matches_engine_brazil(decimal_comma: bool) -> None:
    parsed = values.parse_decimal(pl.Series(NUMBERS), decimal_comma=decimal_comma)
    for raw, value, error in zip(NUMBERS, parsed.value, parsed.error, strict=True):
        if raw == "١٢":  # documented difference: only ASCII digits are accepted here
            assert value is None and error.startswith("Número inválido")
            continue
        try:
            expected = float(brazil.parse_decimal(raw, decimal_comma=decimal_comma))
        except ValueError as exc:
            assert value is None, raw
            # engine.brazil quotes the cell with repr(); the vectorised message shows it as typed
            assert error == str(exc).replace(repr(raw), f"'{raw}'"), raw
        else:
            assert error is None, (raw, error)
            assert value == expected, raw


def test_empty_number_is_required_or_optional() -> None:
    required = values.parse_decimal(pl.Series(["", None]), decimal_comma=True)
    assert required.error.to_list() == ["campo obrigatório vazio"] * 2
    optional = values.parse_decimal(pl.Series(["", None]), decimal_comma=True, required=False)
    assert optional.error.to_list() == [None, None] and optional.value.to_list() == [None, None]


CNPJS = [
    "11.222.333/0001-81",
    "11222333000181",
    "11.222.333/0001-82",
    "1122233300018",
    "00000000000000",
    "11111111111111",
    "abc",
    "",
    "11.222.333/0001-81x",
    "04.252.011/0001-10",
    "04252011000110",
    "4.252.011/0001-10",
    "11.444.777/0001-61",
    " 11 444 777 0001 61 ",
]


def test_cnpj_matches_engine_brazil() -> None:
    parsed = values.parse_cnpj(pl.Series(CNPJS))
    for raw, value, error in zip(CNPJS, parsed.value, parsed.error, strict=True):
        try:
            expected = brazil.parse_cnpj(raw)
        except ValueError as exc:
            assert value is None and error == str(exc), raw
        else:
            assert error is None and value == expected, raw


TIMESTAMPS = [
    "31/01/2024",
    "1/2/2024 3:04",
    "31/02/2024",
    "29/02/2024 23:59:59",
    "29/02/2023",
    "2024-01-31",
    "2024-01-31T10:00:00Z",
    "2024-01-31 10:00:00-03:00",
    "2024-01-31T10:00:00.5+0130",
    "15/10/2017 00:30",
    "17/02/2018 23:30",
    "2024-13-01",
    "abc",
    "",
    "31/12/2024 24:00",
    "18/02/2018 23:30",
    "01/01/2024 10:00:00,123",
    "2024-01-31 10:00:60",
    "31/01/2024 10:00",
    "31/01/2024 10:00:05",
    "2024-01-31 10:00:05",
    "2024-01-31T10:00:05",
    " 31/01/2024 ",
    "31-01-2024",
    "2024/01/31",
    "10:00",
    "31/01/24",
]


@pytest.mark.parametrize("tz", ["America/Sao_Paulo", "UTC", "America/Manaus"])
def test_timestamps_match_the_reference(tz: str) -> None:
    parsed = values.parse_timestamp(pl.Series(TIMESTAMPS), tz=tz)
    for raw, value, error in zip(TIMESTAMPS, parsed.value, parsed.error, strict=True):
        try:
            expected = values.parse_timestamp_value(raw, tz=tz)
        except ValueError as exc:
            assert value is None and error == str(exc), raw
        else:
            assert error is None and value == expected, raw


def test_timestamp_dates_agree_with_engine_brazil_parse_date() -> None:
    dates = ["31/01/2024", "1/2/2024", "31/02/2024", "2024-02-29", "2023-02-29", "32/01/2024", "00/01/2024"]
    parsed = values.parse_timestamp(pl.Series(dates), tz="UTC")
    for raw, value in zip(dates, parsed.value, strict=True):
        try:
            expected = brazil.parse_date(raw)
        except ValueError:
            assert value is None, raw
        else:
            assert value is not None and value.date() == expected, raw


def test_daylight_saving_gap_is_refused_and_overlap_takes_the_earlier_instant() -> None:
    parsed = values.parse_timestamp(pl.Series(["15/10/2017 00:30", "17/02/2018 23:30"]))
    assert parsed.error[0] == "Horário inexistente no fuso America/Sao_Paulo: '15/10/2017 00:30'."
    assert parsed.value[1].isoformat() == "2018-02-18T01:30:00+00:00"  # the first 23:30, still at -02:00


def test_text_email_and_formula_neutralising() -> None:
    text = values.parse_text(pl.Series(["  abc ", "", "x" * 11]), required=True, max_length=10)
    assert text.value.to_list() == ["abc", None, None]
    assert text.error.to_list() == [None, "campo obrigatório vazio", "texto com 11 caracteres; o máximo é 10"]
    email = values.parse_email(pl.Series(["A@B.com", "", "nope", "a b@c.d"]))
    assert email.value.to_list() == ["a@b.com", "", None, None]
    assert email.error.to_list() == [None, None, "e-mail inválido", "e-mail inválido"]
    cells = pl.DataFrame({"x": ["=1+1", "+55", "-3", "@SUM(A1)", "\tx", "ok", "a=b"]})
    out = cells.select(values.neutralize_formula(pl.col("x"))).to_series().to_list()
    assert out == ["'=1+1", "'+55", "'-3", "'@SUM(A1)", "'\tx", "ok", "a=b"]
