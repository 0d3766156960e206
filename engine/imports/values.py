"""Vectorised parsers for the values of imported rows, with the semantics of ``engine.brazil``.

Each ``parse_*`` function takes a polars Series of raw cells and returns a ``Parsed`` pair of Series:
the typed value (null when the cell is refused) and the reason it was refused (null when it is good).
They work step by step on Series (each intermediate computed once) and send only the rare odd cells down
the slow general paths. Millions of cells go through these in Rust; ``engine.brazil`` stays the
row-at-a-time reference and the tests check both on the same inputs (same values accepted, same messages
for refusals).

The one deliberate difference: digits are ASCII ``0-9`` here, while Python's ``\\d`` in ``engine.brazil``
also accepts other Unicode decimal digits (``٣``); such cells are refused as invalid numbers.

``parse_timestamp_value`` is the row-at-a-time reference for date-times, which ``engine.brazil`` lacks: a
cell without an offset is a wall-clock time in ``tz`` (America/Sao_Paulo by default); a time that does not
exist there (a daylight-saving gap) is refused, an ambiguous one takes the earlier instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from engine.accounts import EMAIL_RE
from engine.errors import NUL_CHARACTER

DEFAULT_TZ = "America/Sao_Paulo"


@dataclass(frozen=True)
class Parsed:
    value: pl.Series
    error: pl.Series


def _frame(series: pl.Series) -> pl.DataFrame:
    return series.rename("x").to_frame()


def _nulls(n: int, dtype: pl.DataType = pl.String) -> pl.Series:
    return pl.repeat(None, n, dtype=dtype, eager=True).alias("x")


def _as_text(series: pl.Series) -> pl.Series:
    return series if series.dtype == pl.String else series.cast(pl.String)


# Text ------------------------------------------------------------------------------------------------


def parse_text(series: pl.Series, *, required: bool, max_length: int) -> Parsed:
    """Trimmed text; empty is refused when ``required``; longer than ``max_length`` characters is refused."""
    text = _as_text(series).str.strip_chars().fill_null("")
    out = (
        _frame(text)
        .with_columns(n=pl.col("x").str.len_chars())
        .select(
            error=pl.when(pl.col("x") == "")
            .then(pl.lit("campo obrigatório vazio") if required else pl.lit(None))
            .when(pl.col("n") > max_length)
            .then(pl.format("texto com {} caracteres; o máximo é {}", pl.col("n"), pl.lit(max_length)))
            .when(pl.col("x").str.contains("\x00", literal=True))
            .then(pl.lit(f"{NUL_CHARACTER}, que não pode ser guardado"))
            .otherwise(pl.lit(None, pl.String))
            .cast(pl.String),
            value=pl.col("x"),
        )
    )
    value = out.select(pl.when(pl.col("error").is_null()).then(pl.col("value"))).to_series()
    return Parsed(value, out["error"])


def parse_email(series: pl.Series) -> Parsed:
    """Optional e-mail, lower-cased, checked like ``engine.accounts`` checks user e-mails."""
    text = _as_text(series).str.strip_chars().str.to_lowercase().fill_null("")
    out = _frame(text).select(
        value=pl.col("x"),
        error=pl.when(pl.col("x") == "")
        .then(pl.lit(None, pl.String))
        .when(pl.col("x").str.len_chars() > 254)
        .then(pl.lit("e-mail com mais de 254 caracteres"))
        .when(~pl.col("x").str.contains(EMAIL_RE.pattern))
        .then(pl.lit("e-mail inválido"))
        .otherwise(pl.lit(None, pl.String)),
    )
    value = out.select(pl.when(pl.col("error").is_null()).then(pl.col("value"))).to_series()
    return Parsed(value, out["error"])


# Numbers ---------------------------------------------------------------------------------------------

_BR_NUMBER = r"^[+-]?([0-9]{1,3}(\.[0-9]{3})+|[0-9]+)(,[0-9]+)?$"
_DOT_UNAMBIGUOUS = r"^[+-]?[0-9]+\.([0-9]{1,2}|[0-9]{4,})$"
_INTL_NUMBER = r"^[+-]?([0-9]{1,3}(,[0-9]{3})+|[0-9]+)(\.[0-9]+)?$"


def _number_text(series: pl.Series) -> pl.Series:
    # As parse_decimal: strip, drop no-break and plain spaces, then an "R$" prefix.
    text = _as_text(series).str.strip_chars()
    if text.str.contains(r"[\u00a0 R]").any():
        text = text.str.replace_all("\u00a0", "", literal=True).str.replace_all(" ", "", literal=True)
        text = (
            _frame(text)
            .select(
                pl.when(pl.col("x").str.starts_with("R$"))
                .then(pl.col("x").str.slice(2))
                .otherwise(pl.col("x"))
            )
            .to_series()
        )
    return text


_PLAIN = r"^[+-]?[0-9]+(\.[0-9]+)?$"


def parse_decimal(series: pl.Series, *, decimal_comma: bool, required: bool = True) -> Parsed:
    """A number as ``engine.brazil.parse_decimal`` reads it, as a float64."""
    raw = _as_text(series)
    text = _number_text(raw)
    n = len(text)
    # Fast path: plain digits with an optional dot part cast directly (with a decimal comma, only when the
    # dot cannot be a thousands separator: not exactly three digits after it).
    plain = text.str.contains(_DOT_UNAMBIGUOUS if decimal_comma else _PLAIN)
    if decimal_comma:
        plain = plain | text.str.contains(r"^[+-]?[0-9]+$")
    number = pl.select(pl.when(plain).then(text.cast(pl.Float64, strict=False))).to_series()
    rest = ~plain.fill_null(False) & text.is_not_null() & (text != "")
    hint = "1.234,56" if decimal_comma else "1234.56"
    if rest.any():
        idx = rest.arg_true()
        frame = _frame(text.gather(idx))
        if decimal_comma:
            normalized = frame.select(
                pl.when(pl.col("x").str.contains(_BR_NUMBER))
                .then(pl.col("x").str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True))
                .otherwise(pl.lit(None, pl.String))
            ).to_series()
        else:
            normalized = frame.select(
                pl.when(pl.col("x").str.contains(_INTL_NUMBER))
                .then(pl.col("x").str.replace_all(",", "", literal=True))
                .otherwise(pl.lit(None, pl.String))
            ).to_series()
        number = number.scatter(idx, normalized.cast(pl.Float64, strict=False))
    bad = number.is_null() | number.is_infinite()
    if not bad.any():
        return Parsed(number, _nulls(n))
    df = pl.DataFrame({"raw": raw, "text": text, "number": number}).filter(bad)
    reasons = df.select(
        pl.when(pl.col("text").is_null() | (pl.col("text") == ""))
        .then(pl.lit("campo obrigatório vazio") if required else pl.lit(None, pl.String))
        .when(pl.col("number").is_null())
        .then(pl.format("Número inválido: '{}' (use {}).", pl.col("raw"), pl.lit(hint)))
        .otherwise(pl.lit("número fora do intervalo"))
        .cast(pl.String)
    ).to_series()
    errors = _nulls(n).scatter(bad.arg_true(), reasons)
    return Parsed(pl.select(pl.when(errors.is_null() & ~bad).then(number)).to_series(), errors)


def parse_float_cells(series: pl.Series, *, required: bool = True) -> Parsed:
    """Numbers already typed by the spreadsheet."""
    out = _frame(series.cast(pl.Float64)).select(
        value=pl.col("x"),
        error=pl.when(pl.col("x").is_null())
        .then(pl.lit("campo obrigatório vazio") if required else pl.lit(None, pl.String))
        .when(pl.col("x").is_nan() | pl.col("x").is_infinite())
        .then(pl.lit("número fora do intervalo"))
        .otherwise(pl.lit(None, pl.String))
        .cast(pl.String),
    )
    value = out.select(pl.when(pl.col("error").is_null()).then(pl.col("value"))).to_series()
    return Parsed(value, out["error"])


# Date-times ------------------------------------------------------------------------------------------

_BR_DATETIME = (
    r"^([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})"
    r"(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,6}))?)?)?$"
)
_ISO_DATETIME = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,6}))?)?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
_BR_RE = re.compile(_BR_DATETIME)
_ISO_RE = re.compile(_ISO_DATETIME)
TIMESTAMP_HINT = "use dd/mm/aaaa hh:mm[:ss] ou aaaa-mm-dd hh:mm[:ss]"
# The usual shapes, parsed directly; everything else goes through the general path.
_FAST_FORMATS = (
    (r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-5][0-9]:[0-5][0-9]$", "%Y-%m-%d %H:%M:%S"),
    (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-5][0-9]:[0-5][0-9]$", "%Y-%m-%dT%H:%M:%S"),
    (r"^[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-5][0-9]:[0-5][0-9]$", "%d/%m/%Y %H:%M:%S"),
    (r"^[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-5][0-9]$", "%d/%m/%Y %H:%M"),
    (r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$", "%d/%m/%Y"),
    (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "%Y-%m-%d"),
)


def parse_timestamp_value(value: str, *, tz: str = DEFAULT_TZ) -> datetime:
    """Reference parser for one cell: an aware UTC datetime, or ``ValueError`` with the reason."""
    text = (value or "").strip()
    offset: str | None = None
    if not text:
        raise ValueError("campo obrigatório vazio")
    if m := _BR_RE.match(text):
        day, month, year, hh, mi, ss, frac = m.groups()
    elif m := _ISO_RE.match(text):
        year, month, day, hh, mi, ss, frac, offset = m.groups()
    else:
        raise ValueError(f"Data/hora inválida: '{value}' ({TIMESTAMP_HINT}).")
    try:
        naive = datetime(
            int(year),
            int(month),
            int(day),
            int(hh or 0),
            int(mi or 0),
            int(ss or 0),
            int((frac or "0").ljust(6, "0")),
        )
    except ValueError:
        raise ValueError(f"Data/hora inexistente: '{value}'.") from None
    if offset:
        if offset == "Z":
            delta = timedelta(0)
        else:
            digits = offset[1:].replace(":", "")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            delta = -delta if offset[0] == "-" else delta
        return (naive - delta).replace(tzinfo=UTC)
    zone = ZoneInfo(tz)
    local = naive.replace(tzinfo=zone, fold=0)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise ValueError(f"Horário inexistente no fuso {tz}: '{value}'.")
    return local.astimezone(UTC)


def _general_timestamps(text: pl.Series) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(naive datetime, offset minutes or null, matched) for any accepted shape (slow: capture groups)."""
    df = _frame(text).with_columns(
        br=pl.col("x").str.extract_groups(_BR_DATETIME), iso=pl.col("x").str.extract_groups(_ISO_DATETIME)
    )
    df = df.with_columns(
        is_br=pl.col("br").struct.field("1").is_not_null(),
        is_iso=pl.col("iso").struct.field("1").is_not_null(),
    )

    def part(br: str | None, iso: str) -> pl.Expr:
        if br is None:
            return pl.col("iso").struct.field(iso)
        return (
            pl.when(pl.col("is_br"))
            .then(pl.col("br").struct.field(br))
            .otherwise(pl.col("iso").struct.field(iso))
        )

    df = df.with_columns(
        y=part("3", "1"),
        mo=part("2", "2"),
        d=part("1", "3"),
        h=part("4", "4"),
        mi=part("5", "5"),
        s=part("6", "6"),
        f=part("7", "7"),
        off=part(None, "8"),
    )
    pad = [pl.col(c).fill_null("0").str.zfill(2) for c in ("mo", "d", "h", "mi", "s")]
    df = df.with_columns(
        canonical=pl.concat_str(
            [
                pl.col("y"),
                pl.lit("-"),
                pad[0],
                pl.lit("-"),
                pad[1],
                pl.lit(" "),
                pad[2],
                pl.lit(":"),
                pad[3],
                pl.lit(":"),
                pad[4],
                pl.lit("."),
                pl.col("f").fill_null("0").str.pad_end(6, "0"),
            ]
        )
    )
    df = df.with_columns(
        naive=pl.when(pl.col("s").cast(pl.Int32, strict=False).fill_null(0) <= 59).then(
            pl.col("canonical").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False)
        )
    )
    digits = pl.col("off").str.slice(1).str.replace(":", "", literal=True)
    sign = pl.when(pl.col("off").str.starts_with("-")).then(-1).otherwise(1)
    df = df.with_columns(
        offset=pl.when(pl.col("off") == "Z")
        .then(0)
        .otherwise(
            sign
            * (
                digits.str.slice(0, 2).cast(pl.Int64, strict=False) * 60
                + digits.str.slice(2, 2).cast(pl.Int64, strict=False)
            )
        )
    )
    return df["naive"], df["offset"], df["is_br"] | df["is_iso"]


def _fast_timestamps(text: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(naive datetimes, matched) for cells in one of the usual shapes. Shapes are tried in the order
    the data suggests (a column usually has one), each only on the cells no earlier shape took."""
    n = len(text)
    naive = _nulls(n, pl.Datetime("us"))
    matched = pl.repeat(False, n, dtype=pl.Boolean, eager=True).alias("x")
    pending = text.is_not_null() & (text != "")
    first = text.filter(pending).head(1).to_list()
    order = sorted(_FAST_FORMATS, key=lambda f: 0 if first and re.match(f[0], first[0]) else 1)
    for pattern, fmt in order:
        if not pending.any():
            break
        idx = pending.arg_true()
        subset = text.gather(idx)
        hit = subset.str.contains(pattern)
        if not hit.any():
            continue
        parsed = subset.str.strptime(pl.Datetime("us"), fmt, strict=False)
        taken = idx.filter(hit)
        naive = naive.scatter(taken, parsed.filter(hit))
        matched = matched.scatter(taken, True)
        pending = pending.scatter(taken, False)
    return naive, matched


def parse_timestamp(series: pl.Series, *, tz: str = DEFAULT_TZ) -> Parsed:
    """Date-times as ``parse_timestamp_value`` reads them, as ``Datetime('us', 'UTC')``."""
    raw = _as_text(series)
    text = raw.str.strip_chars()
    n = len(text)
    naive, matched = _fast_timestamps(text)
    offset = _nulls(n, pl.Int64)
    slow = ~matched & text.is_not_null() & (text != "")
    if slow.any():  # odd shapes: one-digit days, fractions, offsets...
        idx = slow.arg_true()
        s_naive, s_offset, s_matched = _general_timestamps(text.gather(idx))
        naive = naive.scatter(idx, s_naive)
        offset = offset.scatter(idx, s_offset)
        matched = matched.scatter(idx, s_matched)
    if offset.null_count() == n:
        value = naive.dt.replace_time_zone(
            tz, ambiguous="earliest", non_existent="null"
        ).dt.convert_time_zone("UTC")
    else:
        value = (
            pl.DataFrame({"naive": naive, "offset": offset})
            .select(
                pl.when(pl.col("offset").is_not_null())
                .then((pl.col("naive") - pl.duration(minutes=pl.col("offset"))).dt.replace_time_zone("UTC"))
                .otherwise(
                    pl.col("naive")
                    .dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
                    .dt.convert_time_zone("UTC")
                )
            )
            .to_series()
        )
    bad = value.is_null()
    if not bad.any():
        return Parsed(value, _nulls(n))
    df = pl.DataFrame({"raw": raw, "text": text, "naive": naive, "matched": matched, "value": value}).filter(
        bad
    )
    reasons = df.select(
        pl.when(pl.col("text").is_null() | (pl.col("text") == ""))
        .then(pl.lit("campo obrigatório vazio"))
        .when(~pl.col("matched"))
        .then(pl.format("Data/hora inválida: '{}' ({}).", pl.col("raw"), pl.lit(TIMESTAMP_HINT)))
        .when(pl.col("naive").is_null())
        .then(pl.format("Data/hora inexistente: '{}'.", pl.col("raw")))
        .otherwise(pl.format("Horário inexistente no fuso {}: '{}'.", pl.lit(tz), pl.col("raw")))
    ).to_series()
    return Parsed(value, _nulls(n).scatter(bad.arg_true(), reasons))


def parse_datetime_cells(series: pl.Series, *, tz: str = DEFAULT_TZ) -> Parsed:
    """Date-times already typed by the spreadsheet (wall-clock times in ``tz``)."""
    df = _frame(series.cast(pl.Datetime("us"))).with_columns(
        value=pl.col("x")
        .dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )
    df = df.with_columns(
        error=pl.when(pl.col("x").is_null())
        .then(pl.lit("campo obrigatório vazio"))
        .when(pl.col("value").is_null())
        .then(pl.format("Horário inexistente no fuso {}.", pl.lit(tz)))
        .otherwise(pl.lit(None, pl.String))
    )
    value = df.select(pl.when(pl.col("error").is_null()).then(pl.col("value"))).to_series()
    return Parsed(value, df["error"])


# CNPJ ------------------------------------------------------------------------------------------------

_CNPJ_W1 = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
_CNPJ_W2 = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]


def _check_digit(weights: list[int]) -> pl.Expr:
    total = pl.sum_horizontal([pl.col(f"d{i}") * w for i, w in enumerate(weights)])
    rest = total % 11
    return pl.when(rest < 2).then(0).otherwise(11 - rest)


def parse_cnpj(series: pl.Series) -> Parsed:
    """The 14 digits of a valid CNPJ, with ``engine.brazil.parse_cnpj``'s messages for refusals."""
    digits = _as_text(series).str.replace_all(r"[^0-9]", "").fill_null("")
    df = _frame(digits).with_columns(n=pl.col("x").str.len_bytes())
    df = df.with_columns(
        [pl.col("x").str.slice(i, 1).cast(pl.Int64, strict=False).alias(f"d{i}") for i in range(14)]
    )
    df = df.with_columns(first=_check_digit(_CNPJ_W1))
    df = df.with_columns(
        second=pl.sum_horizontal([pl.col(f"d{i}") * w for i, w in enumerate(_CNPJ_W2[:12])])
        + pl.col("first") * _CNPJ_W2[12]
    )
    df = df.with_columns(
        second=pl.when(pl.col("second") % 11 < 2).then(0).otherwise(11 - pl.col("second") % 11)
    )
    df = df.with_columns(
        error=pl.when(pl.col("n") != 14)
        .then(pl.format("CNPJ deve ter 14 dígitos (recebido {}).", pl.col("n")))
        .when(pl.col("x").str.slice(0, 13) == pl.col("x").str.slice(1, 13))
        .then(pl.lit("CNPJ inválido."))
        .when((pl.col("first") != pl.col("d12")) | (pl.col("second") != pl.col("d13")))
        .then(pl.lit("CNPJ inválido: dígitos verificadores não conferem."))
        .otherwise(pl.lit(None, pl.String))
    )
    value = df.select(pl.when(pl.col("error").is_null()).then(pl.col("x"))).to_series()
    return Parsed(value, df["error"])


def neutralize_formula(expr: pl.Expr) -> pl.Expr:
    """Prefix cells a spreadsheet would run as a formula (``= + - @``, tab, CR) with an apostrophe."""
    text = expr.cast(pl.String)
    return pl.when(text.str.contains(r"^[=+\-@\t\r]")).then(pl.lit("'") + text).otherwise(text)
