"""Form declarations: steps of typed fields with bounds and Brazilian formats.

A ``Form`` is declared once and used everywhere: the wizard renders it, the REST API and scripts validate
against it, drafts are checked with it. Two levels of validation:

* ``Form.check_partial(data)``: what a draft may hold. Values must have the right JSON type and fit the
  field's hard length bound, otherwise the save is refused (``ValidationFailed``); a value that is present
  but wrong (bad CNPJ check digits, amount out of range, impossible date) is kept, so nothing typed is lost,
  and reported as ``invalid`` in ``fields_status``.
* ``Form.clean(data)``: what a submission needs: every required field present and every value valid; returns
  the canonical values (digits of a CNPJ, ``Decimal`` money, ``date``) or raises ``ValidationFailed`` with
  one entry per field.

Field names may be dotted (``guestCodeResponse.guestCode``): the value then lives in nested objects of
``data``. Values in drafts are kept as typed (``"1.234,56"``, ``"31/12/2025"``), so a restored form shows
exactly what the person wrote.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from engine import brazil
from engine.errors import NUL_CHARACTER, ValidationFailed

FIELD_STATUSES = ("filled", "invalid", "missing")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]{2,}$")
PHONE_RE = re.compile(r"^\(?\d{2}\)?\s?9?\d{4}-?\d{4}$")
UFS = (
    "AC",
    "AL",
    "AP",
    "AM",
    "BA",
    "CE",
    "DF",
    "ES",
    "GO",
    "MA",
    "MT",
    "MS",
    "MG",
    "PA",
    "PB",
    "PR",
    "PE",
    "PI",
    "RJ",
    "RN",
    "RS",
    "RO",
    "RR",
    "SC",
    "SP",
    "SE",
    "TO",
)

# Hard length bound per kind: a draft value longer than this is refused outright (the browser inputs carry
# the same maxlength, so only scripts and hostile clients ever hit it).
_KIND_MAX_LENGTH = {
    "text": 300,
    "textarea": 5000,
    "email": 254,
    "phone": 20,
    "cnpj": 18,
    "cpf": 14,
    "cpf_cnpj": 18,
    "cep": 9,
    "cnj": 25,
    "money": 20,
    "integer": 12,
    "date": 10,
    "choice": 60,
}
KINDS = (*_KIND_MAX_LENGTH, "boolean")
# Input masks the browser applies while typing (9 = digit).
MASKS = {
    "cnpj": "99.999.999/9999-99",
    "cpf": "999.999.999-99",
    "cep": "99999-999",
    "cnj": "9999999-99.9999.9.99.9999",
    "date": "99/99/9999",
}


_NOT_TEXT = {  # what a field takes, said to whoever sent a list, an object or a boolean instead
    "integer": "deve ser um número inteiro",
    "money": "deve ser um valor em reais (número, ou texto como 1.234,56)",
}


@dataclass(frozen=True)
class Field:
    """One typed input. ``required`` is checked on submit only; ``sensitive`` values never leave the server
    side (no browser buffer, no metadata, no audit)."""

    name: str
    label: str
    kind: str = "text"
    required: bool = False
    sensitive: bool = False
    min_length: int = 0
    max_length: int | None = None
    min_value: Decimal | int | date | None = None
    max_value: Decimal | int | date | None = None
    choices: tuple[tuple[str, str], ...] = ()
    help: str = ""
    placeholder: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown field kind {self.kind!r} for {self.name}")

    @property
    def hard_max_length(self) -> int:
        return self.max_length or _KIND_MAX_LENGTH.get(self.kind, 300)

    @property
    def mask(self) -> str:
        return MASKS.get(self.kind, "")

    def is_empty(self, value: Any) -> bool:
        if value is None:
            return True
        if isinstance(value, str):
            return not value.strip()
        return self.kind == "boolean" and value is False and not self.required

    def check_type(self, value: Any) -> str | None:
        """Why ``value`` cannot even be stored in a draft (wrong JSON type, too long), or None."""
        if value is None:
            return None
        if self.kind == "boolean":
            return None if isinstance(value, bool) else "deve ser verdadeiro ou falso"
        if self.kind in ("integer", "money") and isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, int):
                return None
            if self.kind == "integer":
                return "deve ser um número inteiro"
            # NaN and infinities have no JSON form (a script can send them; the draft could not be stored)
            return None if math.isfinite(value) else "deve ser um número finito"
        if not isinstance(value, str):
            return _NOT_TEXT.get(self.kind, "deve ser texto")
        if len(value) > self.hard_max_length:
            return f"tem {len(value)} caracteres; o máximo é {self.hard_max_length}"
        if "\x00" in value:  # the save would fail half-way, in the database
            return f"{NUL_CHARACTER}, que não pode ser guardado; remova-o"
        return None

    def clean(self, value: Any) -> Any:
        """The canonical value, or ``ValueError`` with a pt-BR reason. ``value`` must not be empty."""
        problem = self.check_type(value)
        if problem:
            raise ValueError(f"{self.label} {problem}.")
        kind = self.kind
        if kind == "boolean":
            return bool(value)
        if kind == "integer":
            number = _parse_int(value)
            _bounds(self, number, str(number))
            return number
        if kind == "money":
            amount = brazil.parse_money(value) if isinstance(value, str) else brazil.money_of(value)
            _bounds(self, amount, brazil.format_money(amount))
            return amount
        text = value.strip()
        if kind in {"text", "textarea"}:
            if len(text) < self.min_length:
                raise ValueError(f"{self.label} precisa de ao menos {self.min_length} caracteres.")
            return text
        if kind == "email":
            if not EMAIL_RE.match(text):
                raise ValueError("E-mail inválido: use nome@dominio.com.br.")
            return text.lower()
        if kind == "phone":
            if not PHONE_RE.match(text.replace(" ", "")):
                raise ValueError("Telefone inválido: use (11) 91234-5678.")
            return brazil.digits(text)
        if kind == "cnpj":
            return brazil.parse_cnpj(text)
        if kind == "cpf":
            return brazil.parse_cpf(text)
        if kind == "cpf_cnpj":
            digits = brazil.digits(text)
            return brazil.parse_cpf(text) if len(digits) == 11 else brazil.parse_cnpj(text)
        if kind == "cep":
            return brazil.parse_cep(text)
        if kind == "cnj":
            return brazil.parse_cnj(text)
        if kind == "date":
            if not re.fullmatch(r"\d{2}/\d{2}/\d{4}", text):
                raise ValueError(f"{self.label}: use dd/mm/aaaa.")
            day = brazil.parse_date(text)
            _bounds(self, day, brazil.format_date(day))
            return day
        if kind == "choice":
            allowed = {v for v, _ in self.choices}
            if text not in allowed:
                raise ValueError(f"{self.label}: escolha uma das opções.")
            return text
        raise ValueError(f"{self.label}: tipo desconhecido.")  # pragma: no cover - kinds checked on init

    def describe(self) -> dict[str, Any]:
        """The field as JSON (OpenAPI examples, the browser component)."""
        return {
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "required": self.required,
            "sensitive": self.sensitive,
            "max_length": self.hard_max_length,
            "mask": self.mask,
            "choices": [list(c) for c in self.choices],
            "help": self.help,
            "placeholder": self.placeholder,
        }


def _parse_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip().replace(".", "")
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"Número inteiro inválido: {value!r}.")
    return int(text)


def _bounds(f: Field, value: Any, shown: str) -> None:
    if f.min_value is not None and value < f.min_value:
        raise ValueError(f"{f.label}: {shown} é menor que o mínimo ({_show(f.min_value)}).")
    if f.max_value is not None and value > f.max_value:
        raise ValueError(f"{f.label}: {shown} é maior que o máximo ({_show(f.max_value)}).")


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        return brazil.format_money(value)
    if isinstance(value, date):
        return brazil.format_date(value)
    return str(value)


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    fields: tuple[Field, ...]
    description: str = ""


Submitter = Callable[..., Any]
_VERDICTS_KEPT = 20_000  # per form; past that the memo starts again
_VERDICT_MAX_TEXT = 256  # longer texts are checked every time (the memo stays a few MB at most)
Check = Callable[[dict[str, Any]], list[dict[str, str]]]


@dataclass
class Form:
    """A declared form. ``submit(session, actor=..., values=..., data=...)`` creates the real records from
    the cleaned ``values``; ``checks`` add cross-field errors on submit."""

    slug: str
    title: str
    steps: tuple[Step, ...]
    schema_version: int = 1
    submit: Submitter | None = None
    permission: str = "drafts.save"
    public: bool = False
    description: str = ""
    checks: tuple[Check, ...] = ()
    migrations: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [f.name for s in self.steps for f in s.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"form {self.slug} declares a field twice")
        self._by_name = {f.name: f for s in self.steps for f in s.fields}
        # Verdicts of ``Field.clean`` (a pure function of the declaration and the value) by (field, type,
        # value): an autosave re-checks a whole form in which one value changed since the last save.
        self._verdicts: dict[tuple[str, type, Any], str | None] = {}

    @property
    def fields(self) -> list[Field]:
        return [f for s in self.steps for f in s.fields]

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    @property
    def sensitive_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.sensitive)

    def step_of(self, name: str) -> int:
        for index, step in enumerate(self.steps):
            if any(f.name == name for f in step.fields):
                return index
        raise KeyError(name)

    # Validation --------------------------------------------------------------------------------------

    def check_structure(self, data: Any) -> dict[str, Any]:
        """Refuse what no draft may hold: a non-object, unknown fields, wrong types, over-long values.
        Returns the data flattened (dotted names)."""
        if not isinstance(data, Mapping):
            raise ValidationFailed(
                "Os dados do formulário devem ser um objeto JSON.",
                errors=[{"field": "data", "message": "deve ser um objeto"}],
            )
        errors = []
        flat = flatten(data)
        for name, value in flat.items():
            f = self._by_name.get(name)
            if f is None:
                errors.append({"field": name, "message": "campo desconhecido neste formulário"})
                continue
            problem = f.check_type(value)
            if problem:
                errors.append({"field": name, "message": f"{f.label} {problem}"})
        if errors:
            shown = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
            raise ValidationFailed(f"Rascunho recusado: {shown}.", errors=errors)
        return flat

    def fields_status(self, data: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
        """``{field: filled|invalid|missing}`` and the messages of invalid fields (types already checked)."""
        return self._status(flatten(data))

    def _status(self, flat: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
        status: dict[str, str] = {}
        errors: list[dict[str, str]] = []
        verdicts = self._verdicts
        for f in self.fields:
            value = flat.get(f.name)
            if f.is_empty(value):
                status[f.name] = "missing"
                continue
            memo = isinstance(value, int | float) or (isinstance(value, str) and len(value) <= _VERDICT_MAX_TEXT)
            key = (f.name, type(value), value) if memo else None
            if key is not None and key in verdicts:
                problem = verdicts[key]
            else:
                try:
                    f.clean(value)
                except ValueError as exc:
                    problem = str(exc)
                else:
                    problem = None
                if key is not None:
                    if len(verdicts) >= _VERDICTS_KEPT:
                        verdicts.clear()
                    verdicts[key] = problem
            if problem is None:
                status[f.name] = "filled"
            else:
                status[f.name] = "invalid"
                errors.append({"field": f.name, "message": problem})
        return status, errors

    def check_partial(self, data: Any) -> tuple[dict[str, str], list[dict[str, str]]]:
        return self._status(self.check_structure(data))

    def clean(self, data: Any) -> dict[str, Any]:
        """Every rule, for submission: canonical values by field name, or ``ValidationFailed``."""
        self.check_structure(data)
        flat = flatten(data)
        values: dict[str, Any] = {}
        errors: list[dict[str, str]] = []
        for f in self.fields:
            raw = flat.get(f.name)
            if f.is_empty(raw):
                if f.required:
                    errors.append({"field": f.name, "message": f"{f.label} é obrigatório."})
                values[f.name] = False if f.kind == "boolean" else None
                continue
            try:
                values[f.name] = f.clean(raw)
            except ValueError as exc:
                errors.append({"field": f.name, "message": str(exc)})
        if not errors:
            for check in self.checks:
                errors.extend(check(values))
        if errors:
            first = errors[0]
            more = f" (e mais {len(errors) - 1})" if len(errors) > 1 else ""
            raise ValidationFailed(
                f"Corrija o formulário antes de enviar: {first['message']}{more}", errors=errors
            )
        return values

    def next_field(self, data: Mapping[str, Any], *, from_step: int = 0,
                   status: Mapping[str, str] | None = None) -> str | None:
        """The first field to fill (invalid, or required and missing) from ``from_step`` on, then before.
        ``status`` is ``fields_status(data)`` when the caller already has it."""
        if status is None:
            status, _ = self.fields_status(data)
        ordered = (
            self.fields[sum(len(s.fields) for s in self.steps[:from_step]) :]
            + self.fields[: sum(len(s.fields) for s in self.steps[:from_step])]
        )
        for f in ordered:
            if status[f.name] == "invalid" or (status[f.name] == "missing" and f.required):
                return f.name
        for f in ordered:
            if status[f.name] == "missing":
                return f.name
        return None

    # Schema versions ---------------------------------------------------------------------------------

    def migrate(self, data: dict[str, Any], from_version: int) -> dict[str, Any] | None:
        """``data`` brought from ``from_version`` to the current schema, or None when a step has no
        registered migration (the draft is then shown read-only)."""
        current = dict(data)
        for version in range(from_version, self.schema_version):
            fn = self.migrations.get(version)
            if fn is None:
                return None
            current = fn(current)
        return current

    def describe(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "title": self.title,
            "schema_version": self.schema_version,
            "public": self.public,
            "description": self.description,
            "steps": [
                {
                    "key": s.key,
                    "title": s.title,
                    "description": s.description,
                    "fields": [f.describe() for f in s.fields],
                }
                for s in self.steps
            ],
        }


# Dotted names <-> nested data ---------------------------------------------------------------------------


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))  # an empty group holds nothing
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return data


def get_path(data: Mapping[str, Any], name: str) -> Any:
    node: Any = data
    for part in name.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node
