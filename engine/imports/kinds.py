"""What can be imported: each kind declares its target table, key, fields (type, checks, the headers that
auto-match them) and how its rows are merged. ``KINDS`` lists them; a new kind is one more declaration.

``validate_batch`` turns a chunk of raw cells into typed valid rows and a table of refusals (line, column,
reason, raw value), entirely with polars expressions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from engine.errors import ValidationFailed
from engine.imports import values
from engine.imports.reader import RawBatch, normalize_name

FIELD_TYPES = ("text", "decimal", "timestamp", "cnpj", "email")
MAX_RAW_IN_REPORT = 200


@dataclass(frozen=True)
class FieldSpec:
    """One field of a kind: its type and checks, and header names that map to it automatically."""

    name: str
    label: str
    type: str = "text"
    required: bool = False
    max_length: int = 200
    aliases: tuple[str, ...] = ()
    help: str = ""

    def matches(self, header: str) -> bool:
        wanted = {normalize_name(a) for a in (self.name, self.label, *self.aliases)}
        return normalize_name(header) in wanted


@dataclass(frozen=True)
class StageColumn:
    """A column of the staging table. ``dictionary`` text columns (few distinct values) travel as codes."""

    name: str
    type: str  # int4, float8, timestamptz, text
    dictionary: bool = False


@dataclass(frozen=True)
class ImportKind:
    name: str
    label: str
    table: str
    key: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    stage: tuple[StageColumn, ...]
    data_columns: tuple[str, ...]
    # target columns filled on insert only / on every write, as SQL expressions over bind parameters
    insert_extra: dict[str, str] = field(default_factory=dict)
    update_extra: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "key": list(self.key),
            "fields": [
                {
                    "name": f.name,
                    "label": f.label,
                    "type": f.type,
                    "required": f.required,
                    "max_length": f.max_length,
                    "help": f.help,
                }
                for f in self.fields
            ],
        }


LEITURAS = ImportKind(
    name="leituras",
    label="Leituras de sensores",
    description="Uma leitura por linha: sensor, data/hora, valor e unidade. Chave: sensor + data/hora.",
    table="leituras",
    key=("sensor_id", "ts"),
    fields=(
        FieldSpec(
            "sensor",
            "Sensor",
            required=True,
            max_length=64,
            aliases=(
                "codigo do sensor",
                "codigo",
                "cod sensor",
                "sensor id",
                "id sensor",
                "equipamento",
                "tag",
            ),
            help="código do sensor; sensores novos são criados",
        ),
        FieldSpec(
            "ts",
            "Data/Hora",
            "timestamp",
            required=True,
            aliases=(
                "data hora",
                "data",
                "timestamp",
                "datetime",
                "horario",
                "hora",
                "data da leitura",
                "data leitura",
                "momento",
                "instante",
                "ts",
            ),
            help="dd/mm/aaaa hh:mm[:ss] ou ISO 8601; sem fuso = horário de Brasília",
        ),
        FieldSpec(
            "valor",
            "Valor",
            "decimal",
            required=True,
            aliases=("value", "leitura", "medicao", "medida", "valor lido"),
            help="número",
        ),
        FieldSpec(
            "unidade",
            "Unidade",
            max_length=16,
            aliases=("unit", "un", "und", "unid"),
            help="opcional, até 16 caracteres",
        ),
    ),
    stage=(
        StageColumn("line", "int4"),
        StageColumn("sensor_id", "int4"),
        StageColumn("ts", "timestamptz"),
        StageColumn("valor", "float8"),
        StageColumn("unidade", "text", dictionary=True),
    ),
    data_columns=("valor", "unidade"),
)

CLIENTES = ImportKind(
    name="clientes",
    label="Clientes",
    description="Empresas clientes, uma por linha. Chave: CNPJ (com dígitos verificadores).",
    table="clientes",
    key=("cnpj",),
    fields=(
        FieldSpec(
            "cnpj", "CNPJ", "cnpj", required=True, aliases=("cnpj da empresa", "documento", "cnpj cpf")
        ),
        FieldSpec(
            "razao_social",
            "Razão Social",
            required=True,
            max_length=300,
            aliases=("razao", "nome empresarial", "empresa", "nome"),
        ),
        FieldSpec("nome_fantasia", "Nome Fantasia", max_length=300, aliases=("fantasia",)),
        FieldSpec(
            "email", "E-mail", "email", max_length=254, aliases=("email", "e mail", "correio eletronico")
        ),
        FieldSpec(
            "telefone", "Telefone", max_length=30, aliases=("fone", "tel", "celular", "telefone comercial")
        ),
    ),
    stage=(
        StageColumn("line", "int4"),
        StageColumn("cnpj", "text"),
        StageColumn("razao_social", "text"),
        StageColumn("nome_fantasia", "text"),
        StageColumn("email", "text"),
        StageColumn("telefone", "text"),
    ),
    data_columns=("razao_social", "nome_fantasia", "email", "telefone"),
    insert_extra={
        "endereco": ":empty_object",
        "contatos": ":empty_list",
        "created_at": ":now",
        "updated_at": ":now",
        "created_by_id": ":owner_id",
    },
    update_extra={"updated_at": ":now"},
)

KINDS: dict[str, ImportKind] = {k.name: k for k in (LEITURAS, CLIENTES)}


def get_kind(name: str) -> ImportKind:
    kind = KINDS.get(name)
    if kind is None:
        raise ValidationFailed(
            f"Tipo de importação desconhecido {name!r}; use {', '.join(KINDS)}.",
            errors=[{"field": "kind", "message": "tipo desconhecido"}],
        )
    return kind


# Mapping -----------------------------------------------------------------------------------------------


def suggest_mapping(
    kind: ImportKind, headers: list[str], saved: dict[str, str] | None = None
) -> dict[str, str]:
    """field -> header: a saved mapping first (for headers still present), then headers matched by name."""
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for fname, header in (saved or {}).items():
        if header in headers and header not in used and fname in {f.name for f in kind.fields}:
            mapping[fname] = header
            used.add(header)
    for spec in kind.fields:
        if spec.name in mapping:
            continue
        for header in headers:
            if header not in used and spec.matches(header):
                mapping[spec.name] = header
                used.add(header)
                break
    return mapping


def resolve_mapping(kind: ImportKind, headers: list[str], mapping: dict[str, str]) -> dict[str, int]:
    """field -> column index; refuses unknown fields and headers, reuse, duplicates and missing required."""
    errors = []
    indexes: dict[str, int] = {}
    known = {f.name for f in kind.fields}
    used: dict[str, str] = {}
    for fname, header in mapping.items():
        if not header:
            continue
        if fname not in known:
            errors.append(
                {
                    "field": fname,
                    "message": f"campo desconhecido; campos de {kind.name}: {', '.join(sorted(known))}",
                }
            )
            continue
        positions = [i for i, h in enumerate(headers) if h == header]
        if not positions:
            errors.append({"field": fname, "message": f"a coluna {header!r} não existe no arquivo"})
        elif len(positions) > 1:
            errors.append(
                {
                    "field": fname,
                    "message": f"há {len(positions)} colunas chamadas {header!r} "
                    f"(colunas {', '.join(str(p + 1) for p in positions)}); "
                    "renomeie-as no arquivo",
                }
            )
        elif header in used:
            errors.append({"field": fname, "message": f"a coluna {header!r} já está ligada a {used[header]}"})
        else:
            used[header] = fname
            indexes[fname] = positions[0]
    for fname in kind.required:
        if fname not in indexes and not any(e["field"] == fname for e in errors):
            errors.append(
                {"field": fname, "message": f"campo obrigatório sem coluna ({kind.field(fname).label})"}
            )
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationFailed(f"Mapeamento de colunas inválido — {summary}.", errors=errors)
    return indexes


# Validation --------------------------------------------------------------------------------------------


@dataclass
class Validated:
    valid: pl.DataFrame  # line + one typed column per field
    rejects: pl.DataFrame  # line, column, reason, value (one row per refused cell or ragged line)
    rows_read: int
    rows_rejected: int


REJECT_SCHEMA = {"line": pl.Int64, "column": pl.String, "reason": pl.String, "value": pl.String}


def _integral_text(series: pl.Series, *, pad: int = 0) -> pl.Series:
    """Numbers typed by a spreadsheet shown as the text a person typed (1042, not 1042.0)."""
    number = series.cast(pl.Float64)
    text = pl.select(
        pl.when(number == number.floor())
        .then(number.cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(number.cast(pl.String))
    ).to_series()
    return text.str.zfill(pad) if pad else text


def _cell_text(series: pl.Series, spec: FieldSpec) -> pl.Series:
    if series.dtype == pl.String:
        return series
    if series.dtype.is_numeric():
        return _integral_text(series, pad=14 if spec.type == "cnpj" else 0)
    return series.cast(pl.String)


def _is_temporal(dtype: pl.DataType) -> bool:
    return dtype == pl.Date or isinstance(dtype, pl.Datetime)


def _merge_typed(typed: values.Parsed, parsed: values.Parsed) -> values.Parsed:
    """Mixed spreadsheet column: cells the spreadsheet typed win, text cells are parsed."""
    has = typed.value.is_not_null()
    value = pl.select(pl.when(has).then(typed.value).otherwise(parsed.value)).to_series()
    error = pl.select(pl.when(has).then(pl.lit(None, pl.String)).otherwise(parsed.error)).to_series()
    return values.Parsed(value, error)


def _parse_field(
    frame: pl.DataFrame, column: str, spec: FieldSpec, *, decimal_comma: bool, tz: str
) -> values.Parsed:
    series = frame[column]
    typed = f"{column}__typed"
    if spec.type == "decimal":
        if series.dtype.is_numeric():
            return values.parse_float_cells(series, required=spec.required)
        parsed = values.parse_decimal(series, decimal_comma=decimal_comma, required=spec.required)
        if typed in frame.columns:
            return _merge_typed(values.parse_float_cells(frame[typed], required=False), parsed)
        return parsed
    if spec.type == "timestamp":
        if _is_temporal(series.dtype):
            return values.parse_datetime_cells(series, tz=tz)
        parsed = values.parse_timestamp(series, tz=tz)
        if typed in frame.columns:
            return _merge_typed(values.parse_datetime_cells(frame[typed], tz=tz), parsed)
        return parsed
    text = _cell_text(series, spec)
    if spec.type == "cnpj":
        return values.parse_cnpj(text)
    if spec.type == "email":
        return values.parse_email(text)
    return values.parse_text(text, required=spec.required, max_length=spec.max_length)


def validate_batch(
    kind: ImportKind,
    batch: RawBatch,
    *,
    headers: list[str],
    columns: dict[str, int],
    decimal_comma: bool,
    tz: str = values.DEFAULT_TZ,
) -> Validated:
    """Typed valid rows and the refusals of one chunk."""
    frame = batch.frame
    width = len(headers)
    n = frame.height
    parsed: dict[str, values.Parsed] = {}
    for spec in kind.fields:
        if spec.name in columns:
            parsed[spec.name] = _parse_field(
                frame, f"c{columns[spec.name]}", spec, decimal_comma=decimal_comma, tz=tz
            )
    checked = pl.DataFrame({"__line": pl.Series(batch.lines, dtype=pl.Int64)})
    for spec in kind.fields:
        if spec.name in parsed:
            checked = checked.with_columns(
                parsed[spec.name].value.alias(spec.name), parsed[spec.name].error.alias(f"__err_{spec.name}")
            )
        else:
            checked = checked.with_columns(pl.lit("", pl.String).alias(spec.name))
    bad = (
        pl.any_horizontal([pl.col(f"__err_{name}").is_not_null() for name in parsed])
        if parsed
        else pl.lit(False)
    )
    ragged = batch.field_counts is not None and bool((batch.field_counts != width).any())
    if ragged:
        checked = checked.with_columns(__fields=pl.Series(batch.field_counts.astype(np.int64)))
        bad = bad | (pl.col("__fields") != width)
    checked = checked.with_columns(__bad=bad)
    valid = checked.filter(~pl.col("__bad")).select(
        pl.col("__line").alias("line"), *[s.name for s in kind.fields]
    )
    bad_mask = checked["__bad"]
    rejected_rows = int(bad_mask.sum()) if n else 0
    rejects = pl.DataFrame(schema=REJECT_SCHEMA)
    if rejected_rows:
        raw = frame.filter(bad_mask)
        rejects = _rejects(kind, checked.filter(bad_mask), raw, headers, columns, ragged, width)
    return Validated(valid=valid, rejects=rejects, rows_read=n, rows_rejected=rejected_rows)


def _clip(expr: pl.Expr) -> pl.Expr:
    text = expr.cast(pl.String).fill_null("")
    return (
        pl.when(text.str.len_chars() > MAX_RAW_IN_REPORT)
        .then(text.str.slice(0, MAX_RAW_IN_REPORT) + pl.lit("…"))
        .otherwise(text)
    )


def _rejects(
    kind: ImportKind,
    checked: pl.DataFrame,
    raw: pl.DataFrame,
    headers: list[str],
    columns: dict[str, int],
    has_ragged: bool,
    width: int,
) -> pl.DataFrame:
    rows = pl.concat(
        [
            checked,
            raw.select(
                [pl.col(c).cast(pl.String) for c in raw.columns if c.startswith("c") and "__" not in c]
            ),
        ],
        how="horizontal",
    )
    parts = []
    cells = rows
    if has_ragged:
        is_ragged = pl.col("__fields") != width
        raw_line = pl.concat_str([pl.col(f"c{i}").fill_null("") for i in range(width)], separator=" | ")
        parts.append(
            rows.filter(is_ragged).select(
                pl.col("__line").alias("line"),
                pl.lit("").alias("column"),
                pl.format(
                    "a linha tem {} campos; o cabeçalho tem {}", pl.col("__fields"), pl.lit(width)
                ).alias("reason"),
                _clip(raw_line).alias("value"),
            )
        )
        cells = rows.filter(~is_ragged)
    for spec in kind.fields:
        if spec.name not in columns:
            continue
        index = columns[spec.name]
        parts.append(
            cells.filter(pl.col(f"__err_{spec.name}").is_not_null()).select(
                pl.col("__line").alias("line"),
                pl.lit(headers[index]).alias("column"),
                pl.col(f"__err_{spec.name}").alias("reason"),
                _clip(pl.col(f"c{index}")).alias("value"),
            )
        )
    return pl.concat(parts).sort("line", maintain_order=True) if parts else pl.DataFrame(schema=REJECT_SCHEMA)
