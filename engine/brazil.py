"""Brazilian identifiers and formats: CNPJ, CPF, CEP, CNJ process numbers, BRL money, dd/mm/aaaa dates.

Parsers accept what people type (masks, spaces, dots) and return a canonical value, or raise
``ValueError`` with a pt-BR message saying what is wrong. Formatters turn canonical values back into
the masks people read.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Context, Decimal, InvalidOperation

_NON_DIGITS = re.compile(r"\D")


def digits(value: str) -> str:
    return _NON_DIGITS.sub("", value or "")


# CNPJ / CPF ------------------------------------------------------------------------------------------

def _cnpj_digit(base: str) -> str:
    weights = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2][-len(base):]
    total = sum(int(d) * w for d, w in zip(base, weights, strict=True))
    rest = total % 11
    return "0" if rest < 2 else str(11 - rest)


def cnpj_check_digits(base12: str) -> str:
    first = _cnpj_digit(base12)
    return first + _cnpj_digit(base12 + first)


def parse_cnpj(value: str) -> str:
    """The 14 digits of a valid CNPJ."""
    d = digits(value)
    if len(d) != 14:
        raise ValueError(f"CNPJ deve ter 14 dígitos (recebido {len(d)}).")
    if d == d[0] * 14:
        raise ValueError("CNPJ inválido.")
    if cnpj_check_digits(d[:12]) != d[12:]:
        raise ValueError("CNPJ inválido: dígitos verificadores não conferem.")
    return d


def format_cnpj(value: str) -> str:
    d = digits(value)
    return f"{d[:2]}.{d[2:5]}.{d[5:8]}/{d[8:12]}-{d[12:14]}" if len(d) == 14 else value


def _cpf_digit(base: str) -> str:
    total = sum(int(d) * w for d, w in zip(base, range(len(base) + 1, 1, -1), strict=True))
    rest = (total * 10) % 11
    return "0" if rest == 10 else str(rest)


def cpf_check_digits(base9: str) -> str:
    first = _cpf_digit(base9)
    return first + _cpf_digit(base9 + first)


def parse_cpf(value: str) -> str:
    d = digits(value)
    if len(d) != 11:
        raise ValueError(f"CPF deve ter 11 dígitos (recebido {len(d)}).")
    if d == d[0] * 11 or cpf_check_digits(d[:9]) != d[9:]:
        raise ValueError("CPF inválido: dígitos verificadores não conferem.")
    return d


def format_cpf(value: str) -> str:
    d = digits(value)
    return f"{d[:3]}.{d[3:6]}.{d[6:9]}-{d[9:]}" if len(d) == 11 else value


# CEP -------------------------------------------------------------------------------------------------

def parse_cep(value: str) -> str:
    d = digits(value)
    if len(d) != 8 or not re.fullmatch(r"\d{5}-?\d{3}", (value or "").strip().replace(".", "")):
        raise ValueError("CEP deve ter 8 dígitos no formato 00000-000.")
    return d


def format_cep(value: str) -> str:
    d = digits(value)
    return f"{d[:5]}-{d[5:]}" if len(d) == 8 else value


# CNJ process numbers: NNNNNNN-DD.AAAA.J.TR.OOOO --------------------------------------------------------

CNJ_MASK = re.compile(r"^(\d{7})-?(\d{2})\.?(\d{4})\.?(\d)\.?(\d{2})\.?(\d{4})$")


def cnj_check_digits(sequencial: str, ano: str, segmento: str, tribunal: str, origem: str) -> str:
    """ISO 7064 mod 97-10 as CNJ Resolution 65/2008 defines it."""
    remainder = int(f"{sequencial}{ano}{segmento}{tribunal}{origem}00") % 97
    return f"{98 - remainder:02d}"


def parse_cnj(value: str) -> str:
    """The 20 digits of a valid CNJ number (accepts it masked or bare)."""
    raw = (value or "").strip()
    d = digits(raw)
    if len(d) != 20:
        raise ValueError("Número do processo deve ter 20 dígitos: NNNNNNN-DD.AAAA.J.TR.OOOO.")
    if not (CNJ_MASK.match(raw) or raw.isdigit()):
        raise ValueError("Formato do número do processo: NNNNNNN-DD.AAAA.J.TR.OOOO.")
    seq, dd, ano, j, tr, origem = d[:7], d[7:9], d[9:13], d[13], d[14:16], d[16:]
    if j == "0":
        raise ValueError("Segmento do Judiciário (J) inválido: 0.")
    if cnj_check_digits(seq, ano, j, tr, origem) != dd:
        raise ValueError("Número do processo inválido: dígitos verificadores não conferem.")
    return d


def format_cnj(value: str) -> str:
    d = digits(value)
    if len(d) != 20:
        return value
    return f"{d[:7]}-{d[7:9]}.{d[9:13]}.{d[13]}.{d[14:16]}.{d[16:]}"


def make_cnj(sequencial: int, ano: int, segmento: int, tribunal: int, origem: int) -> str:
    """A valid CNJ number (20 digits) from its parts, computing the check digits."""
    seq, a, j, tr, o = f"{sequencial:07d}", f"{ano:04d}", f"{segmento:d}", f"{tribunal:02d}", f"{origem:04d}"
    return f"{seq}{cnj_check_digits(seq, a, j, tr, o)}{a}{j}{tr}{o}"


# Numbers and money -----------------------------------------------------------------------------------

_BR_NUMBER = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$")
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def parse_decimal(value: str, *, decimal_comma: bool = True) -> Decimal:
    """A number as Brazilians write it (``1.234,56``, ``-0,5``, ``12``); with ``decimal_comma=False``
    the international form (``1234.56``). ``1.2.3`` and ``1,2,3`` are refused."""
    text = (value or "").strip().replace("\u00a0", "").replace(" ", "")
    if text.startswith("R$"):
        text = text[2:]
    if not text:
        raise ValueError("Número vazio.")
    if decimal_comma:
        if _BR_NUMBER.match(text):
            normalized = text.replace(".", "").replace(",", ".")
        elif _PLAIN_NUMBER.match(text) and text.count(".") == 1 and len(text.split(".")[1]) != 3:
            normalized = text  # "12.5" typed with a dot: unambiguous (not a thousands group)
        else:
            raise ValueError(f"Número inválido: {value!r} (use 1.234,56).")
    else:
        if not re.fullmatch(r"[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?", text):
            raise ValueError(f"Número inválido: {value!r} (use 1234.56).")
        normalized = text.replace(",", "")
    try:
        return Decimal(normalized)
    except InvalidOperation as exc:  # pragma: no cover - regexes already guard this
        raise ValueError(f"Número inválido: {value!r}.") from exc


MONEY_DIGITS = 26  # digits before the comma an amount may have (and rounded to cents in a context that holds them)
_MONEY_CONTEXT = Context(prec=MONEY_DIGITS + 2)
_CENTS = Decimal("0.01")


def parse_money(value: str) -> Decimal:
    """BRL amount with two decimals: ``R$ 1.234,56`` → Decimal('1234.56')."""
    return _cents(parse_decimal(value))


def money_of(value: int | float) -> Decimal:
    """A number sent as JSON (API, scripts) as a BRL amount, exactly as written (``str`` of a float is its
    shortest form: 12.34, not 12.339999...): more than two decimals are refused, never rounded away."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"Valor em reais deve ser um número, não {type(value).__name__}.")
    return _cents(Decimal(value) if isinstance(value, int) else Decimal(str(value)))


def _cents(amount: Decimal) -> Decimal:
    # Decimal raises InvalidOperation, not a reason, for what it cannot round to cents
    if not amount.is_finite():
        raise ValueError("Valor em reais deve ser um número finito.")
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("Valor em reais aceita no máximo 2 casas decimais.")
    if amount.adjusted() >= MONEY_DIGITS:
        raise ValueError(f"Valor em reais fora do alcance: {amount.adjusted() + 1} dígitos antes da vírgula (até "
                         f"{MONEY_DIGITS}).")
    return amount.quantize(_CENTS, context=_MONEY_CONTEXT)


def format_int(value: int) -> str:
    """``1234567`` -> ``1.234.567`` (Brazilian thousands separator)."""
    return f"{int(value):,}".replace(",", ".")


def format_money(value: Decimal | float | int, *, symbol: bool = True) -> str:
    amount = Decimal(str(value)).quantize(Decimal("0.01"))
    sign = "-" if amount < 0 else ""
    whole, cents = f"{abs(amount):.2f}".split(".")
    grouped = f"{int(whole):,}".replace(",", ".")
    return f"{sign}{'R$ ' if symbol else ''}{grouped},{cents}"


def format_decimal(value: Decimal | float | int, places: int = 2) -> str:
    text = f"{Decimal(str(value)):,.{places}f}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".")


# Dates -----------------------------------------------------------------------------------------------

_BR_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def parse_date(value: str) -> date:
    """``dd/mm/aaaa`` (or ISO ``aaaa-mm-dd``) → date; ``31/02/2024`` is refused with the reason."""
    text = (value or "").strip()
    if m := _BR_DATE.match(text):
        day, month, year = (int(x) for x in m.groups())
    elif m := _ISO_DATE.match(text):
        year, month, day = (int(x) for x in m.groups())
    else:
        raise ValueError(f"Data inválida: {value!r} (use dd/mm/aaaa).")
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise ValueError(f"Data inexistente: {value!r}.") from exc


def format_date(value: date | datetime | None) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


def format_datetime(value: datetime | None, *, tz: str = "America/Sao_Paulo") -> str:
    if value is None:
        return ""
    from zoneinfo import ZoneInfo

    if value.tzinfo is not None:
        value = value.astimezone(ZoneInfo(tz))
    return value.strftime("%d/%m/%Y %H:%M")
